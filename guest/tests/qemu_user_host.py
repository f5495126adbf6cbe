"""A stand-in host for cross-built guest binaries: qemu-user's gdbstub.

It runs one unmodified aarch64, arm, mipsel or mips64el guest binary
(guest/build/<arch>) under Debian's qemu-user (``qemu-aarch64``,
``qemu-arm``, ``qemu-mipsel``, ``qemu-mips64el``) with its
gdbstub on a Unix socket, puts a breakpoint on the hypercall stub at
GPM_HC_ADDR_<ARCH> (read from csrc/include/gpm/abi.h) and, at every stop
there, does what the stock-QEMU host does: reads magic, op, channel,
arg1 and arg2 from x0-x4 (r0-r4; MIPS: v0, a0-a3), serves the op from
in-memory channels (ptrace_host.PtraceHost's), writes the result to x0
(r0, v0) and moves the
PC 4 bytes on, to the stub's return. The trap instruction itself, which
only PANDA knows, is never executed. So the cross-built hypercall path
(registers, the call to the far stub, 32-bit truncation on arm) runs
for real on the guest's instruction set.

Differences from the real host: guest memory is read and written through
the gdbstub (a page the guest cannot access fails the access, answered
GPM_HC_EFAULT), and pages are not checked for presence (qemu-user has no
guest page tables), so GPM_HC_EAGAIN is never answered. Only the started
process is served: a child it forks runs without the breakpoint.

Command line, for poking at a binary by hand:
    python3 guest/tests/qemu_user_host.py --arch aarch64 [--send NAME=TEXT]...
        [--send-u32 NAME=N]... BINARY [ARG]...
prints what the guest wrote on each channel.
"""

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ptrace_host  # noqa: E402  (the channel logic)

# Per arch: qemu-user binary, word size, GDB numbers of the hypercall
# registers (magic, op, chan, a1, a2) and of the PC, the trap's length.
ARCHES = {
    "aarch64": {"qemu": "qemu-aarch64", "word": 8, "hc": (0, 1, 2, 3, 4),
                "pc": 32, "insn_len": 4},
    "arm": {"qemu": "qemu-arm", "word": 4, "hc": (0, 1, 2, 3, 4),
            "pc": 15, "insn_len": 4},
    # MIPS: v0, a0-a3; QEMU's mips gdbstub has no target.xml, its 'g'
    # reply is r0-r31, sr, lo, hi, bad, cause, pc (37), then the FPU's.
    "mipsel": {"qemu": "qemu-mipsel", "word": 4, "hc": (2, 4, 5, 6, 7),
               "pc": 37, "insn_len": 4},
    "mips64el": {"qemu": "qemu-mips64el", "word": 8, "hc": (2, 4, 5, 6, 7),
                 "pc": 37, "insn_len": 4},
}
EFAULT = -14
hc_addr = ptrace_host.hc_addr


def qemu_user(arch):
    """Path of the qemu-user binary for @arch, or None."""
    name = ARCHES[arch]["qemu"]
    return shutil.which(name) or shutil.which(name + "-static")


class GdbError(RuntimeError):
    """The gdbstub answered an error or broke the protocol."""


class Gdb:
    """A minimal GDB remote protocol client (acknowledged mode)."""

    def __init__(self, sock, timeout):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    def _byte(self):
        if not self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise GdbError("gdbstub closed the connection")
            self.buf = data
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def send(self, payload):
        data = payload.encode()
        pkt = b"$" + data + b"#%02x" % (sum(data) & 0xFF)
        for _ in range(3):
            self.sock.sendall(pkt)
            ack = self._byte()
            if ack == b"+":
                return
        raise GdbError(f"gdbstub did not acknowledge {payload!r}")

    def recv(self):
        while self._byte() != b"$":
            pass
        data = b""
        while True:
            b = self._byte()
            if b == b"#":
                break
            data += b
        self._byte()
        self._byte()
        self.sock.sendall(b"+")
        return data.decode("latin-1")

    def cmd(self, payload):
        self.send(payload)
        return self.recv()


class QemuUserHost(ptrace_host.PtraceHost):
    """Runs one cross-built guest binary under qemu-user and serves its
    hypercalls; the same results as ptrace_host.PtraceHost (outbox,
    errors, started, stopped, hypercalls, status)."""

    def __init__(self, arch, inbox, max_transfer=1 << 20, env=None):
        super().__init__(inbox, max_transfer=max_transfer, env=env)
        if arch not in ARCHES:
            raise ValueError(f"no qemu-user host for {arch}")
        self.arch = arch
        self.info = ARCHES[arch]
        self.addr = hc_addr(arch)
        self.proc = None
        self.gdb = None
        self.exit_code = None
        self._tmp = None

    # Guest memory, through the gdbstub.
    def read_mem(self, addr, length):
        out = b""
        while len(out) < length:
            n = min(length - len(out), 2048)
            r = self.gdb.cmd(f"m{addr + len(out):x},{n:x}")
            if r.startswith("E") or not r:
                raise GdbError(f"cannot read {n} bytes at {addr:#x}")
            out += bytes.fromhex(r)
        return out

    def write_mem(self, addr, data):
        for off in range(0, len(data), 2048):
            chunk = data[off:off + 2048]
            r = self.gdb.cmd(f"M{addr + off:x},{len(chunk):x}:{chunk.hex()}")
            if r != "OK":
                raise GdbError(f"cannot write {len(chunk)} bytes at "
                               f"{addr + off:#x}")

    def pages_present(self, addr, length):
        return True

    def _serve(self, op, chan, a1, a2):
        try:
            return super()._serve(op, chan, a1, a2)
        except GdbError:
            return EFAULT

    # Registers.
    def _reg(self, regs_hex, num):
        w = self.info["word"] * 2
        return int.from_bytes(bytes.fromhex(regs_hex[num * w:(num + 1) * w]),
                              "little")

    def _set_reg(self, regs_hex, num, value):
        """@regs_hex with register @num replaced (for a "G" packet: QEMU
        answers "p"/"P" only to clients that read its target.xml)."""
        w = self.info["word"]
        data = (value & ((1 << (8 * w)) - 1)).to_bytes(w, "little").hex()
        return regs_hex[:num * 2 * w] + data + regs_hex[(num + 1) * 2 * w:]

    # Running.
    def _command(self, sock_path, argv):
        """The emulator's command line, its gdbstub on @sock_path."""
        qemu = qemu_user(self.arch)
        if qemu is None:
            raise FileNotFoundError(f"{self.info['qemu']} not found "
                                    "(Debian package qemu-user)")
        return [qemu, "-g", sock_path] + list(argv)

    def start(self, argv):
        self._tmp = tempfile.mkdtemp(prefix="gpm-qemu-user-")
        path = os.path.join(self._tmp, "gdb.sock")
        cmd = self._command(path, argv)
        self.proc = subprocess.Popen(cmd, env=self.env or os.environ)
        deadline = time.monotonic() + 10
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sock.close()
                    raise RuntimeError(f"{cmd[0]} did not open its gdbstub")
                time.sleep(0.02)
        self.gdb = Gdb(sock, timeout=30)
        self.gdb.cmd("?")
        if self.gdb.cmd(f"Z0,{self.addr:x},4") != "OK":
            raise GdbError("the gdbstub refused the breakpoint")
        self.gdb.send("c")

    def _on_reply(self, reply):
        """Handles one stop reply; True once the guest is gone."""
        if reply[:1] in ("W", "X"):
            code = int(reply[1:3], 16)
            self.exit_code = code if reply[0] == "W" else -code
            return True
        if reply[:1] not in ("T", "S"):
            raise GdbError(f"unexpected stop reply {reply!r}")
        sig = int(reply[1:3], 16)
        regs = self.gdb.cmd("g")
        pc = self._reg(regs, self.info["pc"])
        if sig != 5 or pc != self.addr:
            # Not ours (e.g. SIGSEGV): deliver the signal.
            self.gdb.send(f"C{sig:02x}" if sig != 5 else "c")
            return False
        vals = [self._reg(regs, n) for n in self.info["hc"]]
        if vals[0] == ptrace_host.MAGIC:
            self.hypercalls += 1
            ret = self._serve(*vals[1:])
            regs = self._set_reg(regs, self.info["hc"][0], ret)
        regs = self._set_reg(regs, self.info["pc"],
                             self.addr + self.info["insn_len"])
        if self.gdb.cmd("G" + regs) != "OK":
            raise GdbError("the gdbstub refused to write the registers")
        self.gdb.send("c")
        return False

    def step(self, timeout):
        """Serve stops for up to @timeout s; True once the guest exited."""
        self.gdb.sock.settimeout(timeout)
        try:
            reply = self.gdb.recv()
        except socket.timeout:
            return False
        finally:
            self.gdb.sock.settimeout(30)
        return self._on_reply(reply)

    def run(self, argv, timeout=60.0, until=None):
        """Run to exit (or until until(self) is true, then kill); returns
        the exit status, -signal, or None when stopped by @until."""
        self.start(argv)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.step(0.2):
                    return self.exit_code
                if until is not None and until(self):
                    return None
            raise TimeoutError(f"{argv[0]} still running after {timeout} s")
        finally:
            self.kill()

    def kill(self):
        if self.gdb is not None:
            self.gdb.sock.close()
            self.gdb = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class QemuSystemHost(QemuUserHost):
    """The same for a bare-metal program on stock QEMU's ``virt`` machine
    (qemu-system-aarch64 / qemu-system-arm, stopped with -S until the
    breakpoint is set): the stock-QEMU host's way, on whole-system QEMU.
    @addr is the program's stub address; its UART goes to @serial_path.
    The machine never exits: stop it with run(until=...)."""

    CPUS = {"aarch64": "cortex-a57", "arm": "cortex-a15"}

    def __init__(self, arch, inbox, addr, serial_path, **kw):
        super().__init__(arch, inbox, **kw)
        self.addr = addr
        self.serial_path = serial_path

    def _command(self, sock_path, argv):
        name = f"qemu-system-{self.arch}"
        qemu = shutil.which(name)
        if qemu is None:
            raise FileNotFoundError(f"{name} not found")
        return [qemu, "-machine", "virt", "-cpu", self.CPUS[self.arch],
                "-m", "128M", "-nodefaults", "-display", "none",
                "-monitor", "none", "-serial", f"file:{self.serial_path}",
                "-S", "-gdb", f"unix:{sock_path},server=on,wait=off",
                "-kernel", str(argv[0])]


def main(args):
    p = argparse.ArgumentParser(
        description="Run a cross-built pandagpm guest binary under "
        "qemu-user and serve its hypercalls.")
    p.add_argument("--arch", required=True, choices=sorted(ARCHES))
    p.add_argument("--send", action="append", default=[],
                   metavar="NAME=TEXT", help="queue TEXT on channel NAME")
    p.add_argument("--send-u32", action="append", default=[],
                   metavar="NAME=N", help="queue a little-endian u32")
    p.add_argument("argv", nargs=argparse.REMAINDER,
                   help="the binary and its arguments")
    o = p.parse_args(args)
    if not o.argv:
        p.error("no binary given")
    inbox = {}
    for item in o.send:
        name, _, text = item.partition("=")
        inbox.setdefault(name, []).append(text.encode())
    for item in o.send_u32:
        name, _, text = item.partition("=")
        inbox.setdefault(name, []).append(struct.pack("<I", int(text, 0)))
    inbox.setdefault(os.path.basename(o.argv[0]), [])
    host = QemuUserHost(o.arch, inbox)
    code = host.run(o.argv)
    for chan, msgs in host.outbox.items():
        for msg in msgs:
            print(f"{chan}: {msg!r}")
    for msg in host.errors:
        print(f"ERROR: {msg!r}")
    print(f"exit status {code}, {host.hypercalls} hypercalls")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
