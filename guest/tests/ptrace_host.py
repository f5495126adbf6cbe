"""A stand-in host that catches the real x86_64 hypercalls with ptrace.

It runs an unmodified guest binary (the musl build in guest/build/x86_64)
as a native process, plants an int3 over the CPUID stub at
GPM_HC_ADDR_X86_64 (0x10000000, read from gpm/abi.h) and,
at every stop there, does what the stock-QEMU host does: reads RAX (magic),
RBX (op), RCX (channel), RDX (arg1), RDI (arg2), serves the op from
in-memory channels, writes the result to RAX and resumes at 0x10000002,
the stub's "ret". So the binaries' hypercall path (registers, red zone,
clobbers, page touching) is exercised for real, without an emulator.

Like the real host it refuses with GPM_HC_EAGAIN to write into a page that
is not present (checked through /proc/PID/pagemap), and it can take at most
`max_transfer` bytes per hypercall so the guest's loops are exercised.

Only the traced process is served; its children are not traced (the
daemon's plugins would execute a real CPUID), so for the daemon load
programs that need no hypercalls, e.g. /bin/sh.

Command line, for poking at a binary by hand:
    python3 guest/tests/ptrace_host.py [--send NAME=TEXT]...
        [--send-u32 NAME=N]... BINARY [ARG]...
prints what the guest wrote on each channel.
"""

import ctypes
import os
import re
import signal
import struct
import sys
import time
from collections import defaultdict, deque
from pathlib import Path

ABI_H = Path(__file__).resolve().parents[2] / "csrc/include/gpm/abi.h"


def hc_addr(arch):
    """GPM_HC_ADDR_<ARCH> from gpm/abi.h (the address's only home)."""
    m = re.search(rf"#define\s+GPM_HC_ADDR_{arch.upper()}\s+(0x[0-9a-fA-F]+)",
                  ABI_H.read_text())
    if not m:
        raise LookupError(f"{ABI_H} has no GPM_HC_ADDR_{arch.upper()}")
    return int(m.group(1), 16)


HC_ADDR = hc_addr("x86_64")
MAGIC = 0x1337C0D3
PAGE = 4096
MASK64 = (1 << 64) - 1

OP_START, OP_STOP, OP_READ, OP_WRITE = 1, 2, 3, 4
OP_ERROR, OP_GET_MANAGER, OP_GET_CHANNEL = 5, 6, 7
NOT_FOUND, EBADF, EAGAIN, EINVAL, ENOSYS = -1, -9, -11, -22, -38

PTRACE_TRACEME = 0
PTRACE_PEEKTEXT = 1
PTRACE_POKETEXT = 4
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_EXITKILL = 0x100000
WALL = 0x40000000  # __WALL: Python's os module lacks it

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                         ctypes.c_void_p]

REG_NAMES = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi "
             "orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs"
             ).split()


class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulong) for n in REG_NAMES]


def _ptrace(req, pid, addr=0, data=0):
    ctypes.set_errno(0)
    ret = _libc.ptrace(req, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    err = ctypes.get_errno()
    if ret == -1 and err:
        raise OSError(err, f"ptrace({req}): {os.strerror(err)}")
    return ret


def ptrace_works():
    """True if this process may trace its children."""
    pid = os.fork()
    if pid == 0:
        try:
            _ptrace(PTRACE_TRACEME, 0)
            os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    ok = os.WIFSTOPPED(status)
    if ok:
        _ptrace(PTRACE_CONT, pid)
        os.waitpid(pid, 0)
    return ok


class PtraceHost:
    """Runs one guest binary and serves its hypercalls.

    inbox: channel name -> list of messages (bytes) the host has queued for
    the guest; only these names (and anonymous channels) exist.
    After run(): outbox[name] is the list of writes the guest made, errors
    the ERROR messages, refused the number of EAGAIN answers.
    """

    def __init__(self, inbox, max_transfer=1 << 20, env=None):
        self.queues = {name: deque(msgs) for name, msgs in inbox.items()}
        self.ids = {}
        self.names = {}
        self.outbox = defaultdict(list)
        self.errors = []
        self.started = set()
        self.stopped = set()
        self.refused = 0
        self.hypercalls = 0
        self.max_transfer = max_transfer
        self.env = env
        self.pid = None
        self.status = None

    # Guest memory.
    def _mem(self, mode):
        return open(f"/proc/{self.pid}/mem", mode, buffering=0)

    def read_mem(self, addr, length):
        with self._mem("rb") as f:
            f.seek(addr)
            return f.read(length)

    def write_mem(self, addr, data):
        with self._mem("r+b") as f:
            f.seek(addr)
            f.write(data)

    def pages_present(self, addr, length):
        if length == 0:
            return True
        with open(f"/proc/{self.pid}/pagemap", "rb", buffering=0) as f:
            for page in range(addr // PAGE, (addr + length - 1) // PAGE + 1):
                f.seek(page * 8)
                (entry,) = struct.unpack("<Q", f.read(8))
                if not entry >> 63 & 1:
                    return False
        return True

    # Channels.
    def _channel(self, name):
        if name not in self.ids:
            cid = len(self.ids) + 1
            self.ids[name] = cid
            self.names[cid] = name
        return self.ids[name]

    def messages(self, name):
        return self.outbox.get(name, [])

    def received(self, name):
        return b"".join(self.messages(name))

    def send(self, name, msg):
        """Queue one more message (e.g. from a stop callback)."""
        self.queues[name].append(msg)

    def _serve(self, op, chan, a1, a2):
        if op == OP_GET_CHANNEL:
            if a2 == 0 or a2 > 255:
                return EINVAL
            name = self.read_mem(a1, a2).decode(errors="replace")
            if name not in self.queues:
                return NOT_FOUND
            return self._channel(name)
        if op == OP_GET_MANAGER:
            name = f"anon{len(self.ids) + 1}"
            self.queues[name] = deque()
            return self._channel(name)
        # Unknown ops first, as the real core dispatches (no doorbell).
        if op not in (OP_START, OP_STOP, OP_READ, OP_WRITE, OP_ERROR):
            return ENOSYS
        name = self.names.get(chan)
        if name is None:
            return EBADF
        if op == OP_START:
            self.started.add(name)
            return 0
        if op == OP_STOP:
            self.stopped.add(name)
            return 0
        if op == OP_READ:
            queue = self.queues[name]
            if not queue:
                return 0
            n = min(len(queue[0]), a2, self.max_transfer)
            if not self.pages_present(a1, n):
                self.refused += 1
                return EAGAIN
            self.write_mem(a1, queue[0][:n])
            if n < len(queue[0]):
                queue[0] = queue[0][n:]
            else:
                queue.popleft()
            return n
        if op == OP_WRITE:
            n = min(a2, self.max_transfer)
            self.outbox[name].append(self.read_mem(a1, n))
            return n
        if op == OP_ERROR:
            self.errors.append(self.read_mem(a1, min(a2, 4096)))
            return 0
        return ENOSYS

    # The tracing loop.
    def start(self, argv):
        pid = os.fork()
        if pid == 0:
            try:
                _ptrace(PTRACE_TRACEME, 0)
                os.execve(argv[0], argv, self.env or os.environ)
            finally:
                os._exit(127)
        self.pid = pid
        _, status = os.waitpid(pid, 0)
        if not os.WIFSTOPPED(status):
            raise RuntimeError(f"{argv[0]} did not stop at exec")
        _ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL)
        word = _ptrace(PTRACE_PEEKTEXT, pid, HC_ADDR) & MASK64
        word = (word & ~0xFF) | 0xCC
        _ptrace(PTRACE_POKETEXT, pid, HC_ADDR, word)
        _ptrace(PTRACE_CONT, pid)

    def _on_stop(self, sig):
        if sig != signal.SIGTRAP:
            _ptrace(PTRACE_CONT, self.pid, 0, sig)
            return
        regs = Regs()
        _ptrace(PTRACE_GETREGS, self.pid, 0, ctypes.addressof(regs))
        if regs.rip != HC_ADDR + 1:
            _ptrace(PTRACE_CONT, self.pid)
            return
        if regs.rax & 0xFFFFFFFF == MAGIC:
            self.hypercalls += 1
            ret = self._serve(regs.rbx, regs.rcx, regs.rdx, regs.rdi)
            regs.rax = ret & MASK64
        regs.rip = HC_ADDR + 2
        _ptrace(PTRACE_SETREGS, self.pid, 0, ctypes.addressof(regs))
        _ptrace(PTRACE_CONT, self.pid)

    def step(self, timeout):
        """Serve stops for up to @timeout s; True once the guest exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG | WALL)
            if pid == 0:
                time.sleep(0.0005)
                continue
            if os.WIFSTOPPED(status):
                self._on_stop(os.WSTOPSIG(status))
                continue
            self.status = status
            return True
        return False

    def run(self, argv, timeout=30.0, until=None):
        """Run to exit (or until until(self) is true, then kill)."""
        self.start(argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.step(0.05):
                return os.waitstatus_to_exitcode(self.status)
            if until is not None and until(self):
                self.kill()
                return None
        self.kill()
        raise TimeoutError(f"{argv[0]} still running after {timeout} s")

    def kill(self):
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            while True:
                _, status = os.waitpid(self.pid, WALL)
                if not os.WIFSTOPPED(status):
                    self.status = status
                    break


def main(args):
    inbox = defaultdict(list)
    while len(args) >= 2 and args[0] in ("--send", "--send-u32"):
        name, _, text = args[1].partition("=")
        if args[0] == "--send":
            inbox[name].append(text.encode())
        else:
            inbox[name].append(struct.pack("<I", int(text, 0)))
        args = args[2:]
    if not args:
        print(__doc__)
        return 2
    name = os.path.basename(args[0])
    inbox.setdefault(name, [])
    host = PtraceHost(dict(inbox))
    code = host.run(args)
    for chan, msgs in host.outbox.items():
        for msg in msgs:
            print(f"{chan}: {msg!r}")
    for msg in host.errors:
        print(f"ERROR: {msg!r}")
    print(f"exit status {code}, {host.hypercalls} hypercalls, "
          f"{host.refused} refused (page not present)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
