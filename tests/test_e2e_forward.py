"""End-to-end tests of TCP forwarding (issue 15 item 2) against the real
x86_64 guest under stock QEMU: busybox httpd in the guest reached from the
host through a forward, half-close, resets, teardown, and the reverse
direction (a guest client reaching a host service).

The acceptance run (16 concurrent clients each fetching a 64 MiB file) moves
1 GiB through the emulator and takes minutes, so the regular suite runs
the same test with 4 MiB per client; ``GPM_FWD_FULL=1`` (``make
test-forward-full``) runs it at full size. Every wait is bounded.
"""

import concurrent.futures
import errno
import hashlib
import http.server
import os
import shutil
import socket
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

_MISSING = [t for t in ("musl-gcc", "qemu-system-x86_64")
            if shutil.which(t) is None]
if _MISSING:
    pytest.skip(f"needs {' and '.join(_MISSING)}", allow_module_level=True)

from pandagpm.tools import forward, procs  # noqa: E402
from tools_session import built, panda, session, wait_for  # noqa

pytestmark = pytest.mark.e2e

SHORT = 30.0
LONG = 120.0
FULL = os.environ.get("GPM_FWD_FULL") == "1"
CLIENTS = 16
FILE_MIB = 64 if FULL else 4
# Bounds how long the concurrent fetch may take before the test fails;
# about 10 times what it takes on the 2-core CI machine.
FETCH_TIMEOUT = 1800.0 if FULL else 300.0


def sh(session, cmd, timeout=SHORT):
    return session.panda.run_serial_cmd(cmd, timeout=timeout)


def start_httpd(session, port, mib=0):
    """busybox httpd serving /tmp/www (with a random ``big`` file of
    ``mib`` MiB); returns (pid, sha256 of big as the guest computed it)."""
    sh(session, "mkdir -p /tmp/www && echo hello > /tmp/www/index.html")
    digest = None
    if mib:
        out = sh(session, f"dd if=/dev/urandom of=/tmp/www/big bs=1M "
                 f"count={mib} 2>/dev/null && sha256sum /tmp/www/big",
                 timeout=LONG)
        digest = out.split()[0]
    pid = int(sh(session, f"httpd -f -p {port} -h /tmp/www >/dev/null 2>&1 "
                 "& echo $!").split()[-1])
    return pid, digest


def fetch(port, path, timeout=LONG):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                timeout=timeout) as r:
        return r.read()


def test_httpd_concurrent_clients(session):
    """16 host clients fetch one file from guest httpd at once through one
    forward; every body is the guest's file, byte for byte."""
    _, digest = start_httpd(session, 8080, FILE_MIB)
    with forward.forward(session, 8080) as fwd:
        assert fetch(fwd.host_port, "/index.html", SHORT) == b"hello\n"

        def get(_):
            h = hashlib.sha256()
            n = 0
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{fwd.host_port}/big",
                    timeout=FETCH_TIMEOUT) as r:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    n += len(chunk)
            return n, h.hexdigest()

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as ex:
            results = list(ex.map(get, range(CLIENTS),
                                  timeout=FETCH_TIMEOUT))
        assert results == [(FILE_MIB << 20, digest)] * CLIENTS
        assert fwd.connections == CLIENTS + 1 and not fwd.resets
    assert fwd.closed.is_set() and fwd.reason == "closed by the host"


def test_half_close(session):
    """The host client shuts its sending side; the guest program sees end
    of file, and its answer still comes back, then end of file."""
    sh(session, "printf '#!/bin/sh\\nsha256sum\\necho done\\n' > /tmp/sum.sh"
       " && chmod +x /tmp/sum.sh")
    sh(session, "nc -l -p 9000 -e /tmp/sum.sh >/dev/null 2>&1 &")
    wait_for(lambda: "9000" in sh(session, "netstat -tln"), SHORT,
             "nc listening")
    data = os.urandom(3 << 20)
    with forward.forward(session, 9000, watch=False) as fwd:
        with socket.create_connection(("127.0.0.1", fwd.host_port),
                                      timeout=LONG) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    assert got.split() == [hashlib.sha256(data).hexdigest().encode(), b"-",
                           b"done"]


def test_refused_connection_is_reset_and_reported(session):
    """A guest port with no listener: the host client's connection ends at
    once and the Forward reports ECONNREFUSED."""
    with forward.forward(session, 9999, watch=False) as fwd:
        with socket.create_connection(("127.0.0.1", fwd.host_port),
                                      timeout=LONG) as s:
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        wait_for(lambda: fwd.resets, SHORT, "the reset to be reported")
        assert fwd.resets[0][1] == errno.ECONNREFUSED


def test_forward_ends_when_guest_service_stops(session):
    """Killing httpd ends the forward (watch): its host port stops
    accepting, and the reason says why."""
    pid, _ = start_httpd(session, 8081)
    fwd = forward.forward(session, 8081)
    assert fetch(fwd.host_port, "/index.html", SHORT) == b"hello\n"
    sh(session, f"kill {pid}; wait {pid}")
    assert fwd.wait_closed(SHORT)
    assert fwd.reason == "the guest service stopped listening"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", fwd.host_port),
                                 timeout=SHORT).close()


def test_forwards_end_when_the_plugin_dies(session):
    """The guest plugin killed: every forward ends, its clients get their
    connections closed, and the next forward loads a new plugin."""
    pid, _ = start_httpd(session, 8080)
    fwd = forward.forward(session, 8080)
    assert fetch(fwd.host_port, "/index.html", SHORT) == b"hello\n"
    held = socket.create_connection(("127.0.0.1", fwd.host_port),
                                    timeout=LONG)
    plugin = [p.pid for p in procs.list_processes(session)
              if p.cmdline[:1] == ("tcp_fwd",)]
    assert len(plugin) == 1
    sh(session, f"kill -9 {plugin[0]}")
    assert fwd.wait_closed(SHORT), "the forward did not end"
    assert "plugin" in fwd.reason
    try:
        assert held.recv(1) == b""
    except ConnectionResetError:
        pass
    held.close()
    fwd2 = forward.forward(session, 8080)
    assert fetch(fwd2.host_port, "/index.html", SHORT) == b"hello\n"
    fwd2.close()


class _Blob(http.server.BaseHTTPRequestHandler):
    blob = os.urandom(2 << 20)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.blob)))
        self.end_headers()
        self.wfile.write(self.blob)

    def log_message(self, *args):
        pass


def test_reverse_forward_to_host_service(session):
    """A guest client (busybox wget) reaches a host HTTP server through a
    guest port; the guest's sha256 of the body is the host's."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blob)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        rev = forward.reverse_forward(session, 7000, srv.server_address[1])
        out = sh(session, "wget -q -O - http://127.0.0.1:7000/blob | "
                 "sha256sum", timeout=LONG)
        assert out.split()[0] == hashlib.sha256(_Blob.blob).hexdigest()
        assert rev.connections == 1 and not rev.resets
        rev.close()
        assert rev.closed.is_set()
        # The guest port is closed again.
        out = sh(session, "wget -q -O - http://127.0.0.1:7000/ 2>&1; "
                 "echo rc=$?")
        assert "rc=0" not in out
    finally:
        srv.shutdown()
        srv.server_close()


def test_forward_command(session):
    """``pandagpm forward 8080 PORT --duration S``: the host port reaches
    httpd while the command runs, and it says when the forward ended."""
    from tools_session import run_command

    start_httpd(session, 8080)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = {}

    def run():
        result["ret"] = run_command(forward, session, [
            "forward", "8080", str(port), "--duration", "20"])

    t = threading.Thread(target=run)
    t.start()
    try:
        def fetched():
            try:
                return fetch(port, "/index.html", SHORT)
            except OSError:
                return None

        assert wait_for(fetched, SHORT, "the forwarded port") == b"hello\n"
    finally:
        t.join(LONG)
    assert not t.is_alive()
    status, out = result["ret"]
    assert status == 0
    assert out.splitlines()[0] == f"127.0.0.1:{port} -> guest 127.0.0.1:8080"
    assert out.splitlines()[-1] == "forward ended: closed by the host"
