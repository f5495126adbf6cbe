"""A minimal GDB remote-protocol client for the baseline measurements.

Independent of pandagpm's C client on purpose: the baseline is "what a
bare gdbstub stop and continue costs", measured with the least work a
client can do per stop (no register reads, one continue packet that sets
RIP). Ack mode, one packet in flight, a unix socket.
"""

import socket
import time


class RspError(Exception):
    pass


def _checksum(payload):
    return sum(payload) & 0xFF


class RawGdb:
    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_more(self, timeout):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise RspError("gdbstub closed the connection")
        self.buf += data

    def send(self, payload, timeout=10.0):
        """Sends one packet and waits for its '+'."""
        if isinstance(payload, str):
            payload = payload.encode()
        pkt = b"$" + payload + b"#" + b"%02x" % _checksum(payload)
        self.sock.sendall(pkt)
        deadline = time.monotonic() + timeout
        while True:
            # QEMU acks a packet as soon as it has read it, before any
            # reply, so the ack is the first byte that arrives.
            if self.buf[:1] == b"+":
                self.buf = self.buf[1:]
                return
            if self.buf[:1] == b"-":
                self.buf = self.buf[1:]
                self.sock.sendall(pkt)
                continue
            if self.buf:
                raise RspError(f"expected an ack, got {self.buf[:40]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RspError(f"no ack for {payload[:20]!r}")
            self._recv_more(left)

    def recv(self, timeout=10.0):
        """Waits for one packet, acks it, returns its payload (bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.buf.find(b"$")
            if s >= 0:
                e = self.buf.find(b"#", s)
                if e >= 0 and len(self.buf) >= e + 3:
                    payload = self.buf[s + 1:e]
                    self.buf = self.buf[e + 3:]
                    self.sock.sendall(b"+")
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no packet from the gdbstub")
            self._recv_more(left)

    def command(self, payload, timeout=10.0):
        self.send(payload, timeout)
        return self.recv(timeout)

    def interrupt(self):
        self.sock.sendall(b"\x03")
