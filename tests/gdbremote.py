"""A small GDB remote-protocol client for tests that inspect a guest
through QEMU's gdbstub (registers by name from the target description,
virtual memory, breakpoints, stop and continue).

Test-only: the product's client is the C one in pandagpm._gpm.  Every
wait is bounded by the socket timeout.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET


class GdbError(Exception):
    """The stub answered with an error or not at all."""


class GdbRemote:
    """One connection to a gdbstub on a unix socket (no-ack mode off)."""

    def __init__(self, path: str, timeout: float = 30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.regs: dict[str, tuple[int, int, str]] = {}

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- packets -----------------------------------------------------------

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise GdbError("the gdbstub closed the connection")
        return data

    def send(self, payload: str) -> None:
        cs = sum(payload.encode()) & 0xFF
        self.sock.sendall(f"${payload}#{cs:02x}".encode())

    def reply(self) -> str:
        """The next packet's payload (acked); '+' acks are skipped."""
        while True:
            start = self.buf.find(b"$")
            if start >= 0:
                end = self.buf.find(b"#", start)
                if end >= 0 and len(self.buf) >= end + 3:
                    payload = self.buf[start + 1:end]
                    self.buf = self.buf[end + 3:]
                    self.sock.sendall(b"+")
                    return _unescape(payload).decode("latin-1")
            self.buf += self._recv()

    def cmd(self, payload: str) -> str:
        self.send(payload)
        return self.reply()

    # -- target description -------------------------------------------------

    def _xfer(self, annex: str) -> str:
        out, off = "", 0
        while True:
            r = self.cmd(f"qXfer:features:read:{annex}:{off:x},4000")
            if not r or r[0] not in "lm":
                raise GdbError(f"qXfer {annex}: {r!r}")
            out += r[1:]
            off += len(r) - 1
            if r[0] == "l":
                return out

    def load_target(self) -> dict[str, tuple[int, int, str]]:
        """Read target.xml and its includes: ``{name: (regnum, bits,
        feature)}`` (names as QEMU spells them)."""
        docs: dict[str, str] = {}
        todo = ["target.xml"]
        while todo:
            name = todo.pop(0)
            if name in docs:
                continue
            docs[name] = self._xfer(name)
            todo += re.findall(r'<xi:include href="([^"]+)"', docs[name])
        regnum = 0
        regs: dict[str, tuple[int, int, str]] = {}

        def walk(name: str) -> None:
            nonlocal regnum
            text = re.sub(r"<!DOCTYPE[^>]*>", "", docs[name])
            text = re.sub(r"<xi:include[^>]*/>", "", text)
            root = ET.fromstring(text)
            feats = [root] if root.tag == "feature" else list(root.iter(
                "feature"))
            for inc in re.findall(r'<xi:include href="([^"]+)"', docs[name]):
                walk(inc)
            for feat in feats:
                for r in feat.iter("reg"):
                    if "regnum" in r.attrib:
                        regnum = int(r.attrib["regnum"])
                    regs[r.attrib["name"]] = (regnum, int(r.attrib["bitsize"]),
                                              feat.attrib.get("name", ""))
                    regnum += 1
        walk("target.xml")
        self.regs = regs
        self.docs = docs
        return regs

    # -- registers and memory ------------------------------------------------

    def read_reg(self, name: str) -> int:
        num, bits, _ = self.regs[name]
        r = self.cmd(f"p{num:x}")
        if not r or r.startswith("E") or len(r) < bits // 4:
            raise GdbError(f"p {name}: {r!r}")
        return int.from_bytes(bytes.fromhex(r[:bits // 4]), "little")

    def write_reg(self, name: str, value: int) -> str:
        num, bits, _ = self.regs[name]
        return self.cmd(f"P{num:x}="
                        + value.to_bytes(bits // 8, "little").hex())

    def read_mem(self, addr: int, size: int) -> bytes:
        r = self.cmd(f"m{addr:x},{size:x}")
        if not r or r.startswith("E"):
            raise GdbError(f"m {addr:#x}: {r!r}")
        return bytes.fromhex(r)

    # -- execution ------------------------------------------------------------

    def stop(self) -> str:
        """Interrupt the running guest; the stop reply."""
        self.sock.sendall(b"\x03")
        return self.reply()

    def cont(self) -> None:
        """Resume (the stop reply comes with :meth:`reply` or :meth:`stop`)."""
        self.send("c")

    def set_bp(self, addr: int, kind: int = 4) -> None:
        r = self.cmd(f"Z0,{addr:x},{kind:x}")
        if r != "OK":
            raise GdbError(f"Z0 {addr:#x}: {r!r}")

    def clear_bp(self, addr: int, kind: int = 4) -> None:
        self.cmd(f"z0,{addr:x},{kind:x}")


def _unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for c in it:
        if c == 0x7D:
            out.append(next(it) ^ 0x20)
        else:
            out.append(c)
    return bytes(out)
