"""TCP forwarding through the tcp_fwd guest plugin (pandagpm.tools.forward)
against direct loopback connections, in the same run.

* Throughput: host clients fetch a random file from busybox httpd in the
  guest through a forward (one client, then 8 at once). Baseline: the same
  fetch over the guest's own loopback (busybox wget in the guest, timed on
  the host clock around the serial command).
* Connection setup: connect, GET /index.html (6 bytes), read to end of
  file, through the forward. Baselines: the same request to a Python HTTP
  server over the host's loopback, and busybox wget over the guest's
  loopback.
"""

import concurrent.futures
import http.server
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

FILE_MIB = int(os.environ.get("GPM_BENCH_FWD_MIB", "32"))
REPS = int(os.environ.get("GPM_BENCH_FWD_REPS", "3"))
RTT_N = int(os.environ.get("GPM_BENCH_FWD_RTT_N", "30"))
CLIENTS = 8


def http_get(port, path, timeout=600):
    """Bytes of the body of GET path (HTTP/1.0, read to end of file)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            chunks.append(b)
    data = b"".join(chunks)
    return data[data.index(b"\r\n\r\n") + 4:]


class _Small(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"hello\n")

    def log_message(self, *args):
        pass


def main():
    from pandagpm.tools import forward

    res = C.Results("bench_forward", "TCP forwarding vs direct loopback")
    p = C.start_panda()
    try:
        res.context["other_qemus"] = C.other_qemus(p.machine.pid)
        p.revert_sync("root")
        p.ensure_daemon()
        sh = p.run_serial_cmd
        sh("mkdir -p /tmp/www && echo hello > /tmp/www/index.html")
        sh(f"dd if=/dev/urandom of=/tmp/www/big bs=1M count={FILE_MIB} "
           "2>/dev/null", timeout=300)
        sh("httpd -f -p 8080 -h /tmp/www >/dev/null 2>&1 &")
        fwd = forward.forward(p, 8080)
        size = FILE_MIB << 20
        assert len(http_get(fwd.host_port, "/index.html")) == 6

        one, par, guest = [], [], []
        for _ in range(REPS):
            t = time.monotonic()
            assert len(http_get(fwd.host_port, "/big")) == size
            one.append(size / (time.monotonic() - t) / 1e6)
            t = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as ex:
                lens = list(ex.map(lambda _: len(http_get(fwd.host_port,
                                                          "/big")),
                                   range(CLIENTS)))
            assert lens == [size] * CLIENTS
            par.append(CLIENTS * size / (time.monotonic() - t) / 1e6)
            t = time.monotonic()
            sh("wget -q -O /dev/null http://127.0.0.1:8080/big", timeout=300)
            guest.append(size / (time.monotonic() - t) / 1e6)
            C.progress(f"forward {one[-1]:.1f} MB/s, x{CLIENTS} "
                       f"{par[-1]:.1f} MB/s, guest loopback {guest[-1]:.1f}")
        base = f"guest loopback wget {C.median(guest):.1f} MB/s same run"
        res.figure("forward_1_client_MBps", C.median(one), "MB/s", base,
                   f"median of {REPS} x {FILE_MIB} MiB from guest httpd "
                   f"(min {min(one):.1f}, max {max(one):.1f})")
        res.figure(f"forward_{CLIENTS}_clients_MBps", C.median(par), "MB/s",
                   base, f"aggregate, median of {REPS} rounds of {CLIENTS} x "
                   f"{FILE_MIB} MiB at once")

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Small)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        fwd_rtt, host_rtt = [], []
        for _ in range(RTT_N):
            t = time.monotonic()
            assert http_get(fwd.host_port, "/index.html") == b"hello\n"
            fwd_rtt.append((time.monotonic() - t) * 1e3)
            t = time.monotonic()
            assert http_get(srv.server_address[1], "/") == b"hello\n"
            host_rtt.append((time.monotonic() - t) * 1e3)
        srv.shutdown()
        srv.server_close()
        t = time.monotonic()
        sh(f"i=0; while [ $i -lt {RTT_N} ]; do wget -q -O /dev/null "
           "http://127.0.0.1:8080/index.html; i=$((i+1)); done", timeout=300)
        guest_rtt = (time.monotonic() - t) * 1e3 / RTT_N
        res.figure("forward_connect_request_median_ms", C.median(fwd_rtt),
                   "ms", f"host loopback {C.median(host_rtt):.2f} ms, guest "
                   f"loopback wget {guest_rtt:.1f} ms (mean incl. process "
                   "start) same run",
                   f"connect + GET 6 bytes + EOF, n={RTT_N}; p90 "
                   f"{C.percentile(fwd_rtt, 0.9):.1f} ms")
        res.note("Forwarded bytes cross the channel in hypercalls of up to "
                 "1 MiB (tcp_fwd batches every connection's data of a poll "
                 "round into one write); each hypercall stops the VM, and "
                 "what costs most is the guest running slowly after each "
                 "stop (QEMU re-translates its code), not the copy.")
        res.note("A connection's setup is a CONNECT frame to the guest, the "
                 "guest's connect() and a CONNECTED frame back: two channel "
                 "messages, each woken through the doorbell page.")
        fwd.close()
    finally:
        C.close_panda(p)
    res.save()


if __name__ == "__main__":
    main()
