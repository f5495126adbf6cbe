"""An in-process fake guest, for tests and examples.

:class:`FakeCPU` is a Python host CPU for ``Manager.dispatch()``: numbered
registers and a sparse guest memory of 4 KiB pages, each mapped writable
or read-only (like the kernel's shared zero page). :class:`FakeGuest` plays
the guest library's side of the hypercall ABI on top of it.

Nothing here runs a real guest: the real hosts are the stock-QEMU gdbstub
host and PANDA.
"""

import struct

from . import _gpm, wire
from .errors import GuestMemoryFault, GuestPageReadOnly

__all__ = ["FakeCPU", "FakeGuest", "PAGE_SIZE", "make_plugin_elf",
           "DFRAME_LOAD", "DFRAME_HELLO", "DFRAME_STARTED", "DFRAME_EXITED",
           "DFRAME_FAILED"]

PAGE_SIZE = 4096


class FakeCPU:
    """A stopped guest CPU: registers by GDB number, paged memory.

    ``read_mem`` raises GuestMemoryFault for an unmapped byte;
    ``write_mem`` raises GuestMemoryFault for an unmapped page and
    GuestPageReadOnly for a read-only one, writing nothing in either case.
    """

    def __init__(self, arch="x86_64"):
        self.arch = arch
        self.info = _gpm.arch_info(arch)
        self.word_bits = self.info["word_bits"]
        self.regs = {}
        self.pages = {}
        self.calls = []

    def map(self, addr, size, writable=True):
        """Maps the pages covering ``[addr, addr + size)``, zero-filled."""
        for pno in self._span(addr, size):
            self.pages.setdefault(pno, [bytearray(PAGE_SIZE), writable])
            self.pages[pno][1] = writable

    def protect(self, addr, size, writable):
        """Changes the host-visible writability of mapped pages."""
        for pno in self._span(addr, size):
            self.pages[pno][1] = writable

    def unmap(self, addr, size):
        """Unmaps the pages covering the range."""
        for pno in self._span(addr, size):
            self.pages.pop(pno, None)

    @staticmethod
    def _span(addr, size):
        if size <= 0:
            return range(0)
        return range(addr // PAGE_SIZE, (addr + size - 1) // PAGE_SIZE + 1)

    def poke(self, addr, data):
        """The guest writes its own memory (permissions ignored)."""
        for i, byte in enumerate(bytes(data)):
            a = addr + i
            self.pages[a // PAGE_SIZE][0][a % PAGE_SIZE] = byte

    def peek(self, addr, n):
        """The guest reads its own memory."""
        return bytes(
            self.pages[(addr + i) // PAGE_SIZE][0][(addr + i) % PAGE_SIZE]
            for i in range(n)
        )

    # The host ops Manager.dispatch() calls.

    def read_reg(self, n):
        self.calls.append(("read_reg", n))
        return self.regs.get(n, 0)

    def write_reg(self, n, value):
        self.calls.append(("write_reg", n, value))
        self.regs[n] = value

    def read_mem(self, addr, n):
        self.calls.append(("read_mem", addr, n))
        for pno in self._span(addr, n):
            if pno not in self.pages:
                raise GuestMemoryFault(f"guest address 0x{addr:x} not mapped")
        return self.peek(addr, n)

    def write_mem(self, addr, data):
        self.calls.append(("write_mem", addr, len(data)))
        for pno in self._span(addr, len(data)):
            page = self.pages.get(pno)
            if page is None:
                raise GuestMemoryFault(f"guest address 0x{addr:x} not mapped")
            if not page[1]:
                raise GuestPageReadOnly(
                    f"guest page 0x{pno * PAGE_SIZE:x} not writable")
        self.poke(addr, data)

    # Playing the guest.

    def hypercall(self, manager, op, chan=0, a1=0, a2=0, magic=None,
                  tgid=-1):
        """Executes one hypercall through ``manager.dispatch``, made by
        guest process ``tgid`` (-1: unknown, ownership is not checked).

        Returns the result register read as a signed value of the guest's
        word size, or None if the dispatcher did not take it.
        """
        magic = _gpm.HC_MAGIC if magic is None else magic
        hc = self.info["hc_regs"]
        for reg, val in zip(hc, (magic, op, chan, a1, a2)):
            self.regs[reg] = val
        if tgid == -1:
            taken = manager.dispatch(self)
        else:
            taken = manager.dispatch(self, tgid=tgid)
        if not taken:
            return None
        return self.signed(self.regs[self.info["ret_reg"]])

    def signed(self, value):
        """``value`` as a signed integer of the guest's word size."""
        bits = self.word_bits
        value &= (1 << bits) - 1
        return value - (1 << bits) if value >> (bits - 1) else value


class FakeGuest:
    """The guest library's calls, over a FakeCPU and a scratch buffer."""

    def __init__(self, manager, cpu=None, buf_addr=0x400000,
                 buf_size=64 * PAGE_SIZE, tgid=-1):
        self.manager = manager
        # The guest process these calls come from (-1: unknown).
        self.tgid = tgid
        self.cpu = cpu if cpu is not None else FakeCPU(
            getattr(manager, "arch", "x86_64"))
        self.buf = buf_addr
        self.buf_size = buf_size
        self.cpu.map(buf_addr, buf_size)

    def call(self, op, chan=0, a1=0, a2=0):
        return self.cpu.hypercall(self.manager, op, chan, a1, a2,
                                  tgid=self.tgid)

    def start(self, chan):
        return self.call(_gpm.HC_OP_START, chan)

    def stop(self, chan):
        return self.call(_gpm.HC_OP_STOP, chan)

    def write(self, chan, data):
        """WRITE ``data`` on ``chan``; returns the result."""
        self.cpu.poke(self.buf, data)
        return self.call(_gpm.HC_OP_WRITE, chan, self.buf, len(data))

    def read(self, chan, n):
        """READ up to ``n`` bytes; returns bytes, or the negative result."""
        r = self.call(_gpm.HC_OP_READ, chan, self.buf, n)
        return self.cpu.peek(self.buf, r) if r >= 0 else r

    def error(self, chan, text):
        data = text.encode() if isinstance(text, str) else text
        self.cpu.poke(self.buf, data)
        return self.call(_gpm.HC_OP_ERROR, chan, self.buf, len(data))

    def get_manager(self):
        return self.call(_gpm.HC_OP_GET_MANAGER)

    def get_channel(self, name):
        data = name.encode() if isinstance(name, str) else name
        self.cpu.poke(self.buf, data)
        return self.call(_gpm.HC_OP_GET_CHANNEL, 0, self.buf, len(data))

    # The guest daemon's framed protocol (gpm/daemon_proto.h).

    def read_frame(self, chan, chunk=4096):
        """READs one whole frame; returns (type, seq, payload) or None."""
        data = bytearray()
        while len(data) < 16:
            piece = self.read(chan, 16 - len(data))
            if not piece:
                return None if not data else self._short(data)
            data += piece
        magic, _, ftype, seq, length = wire.unpack(data)
        if magic != DFRAME_MAGIC:
            raise ValueError(f"bad frame magic 0x{magic:x}")
        payload = bytearray()
        while len(payload) < length:
            piece = self.read(chan, min(chunk, length - len(payload)))
            if not piece:
                return self._short(payload)
            payload += piece
        return ftype, seq, bytes(payload)

    @staticmethod
    def _short(data):
        raise ValueError(f"frame cut short after {len(data)} bytes")

    def send_frame(self, chan, ftype, seq, payload=b""):
        """WRITEs one frame; returns the WRITE result."""
        return self.write(chan, wire.daemon_frame(ftype, seq, payload))

    def daemon_take_load(self):
        """Plays the guest daemon: reads one LOAD and returns its parts,
        as a dict with seq, name, args and elf."""
        chan = self.get_channel(_gpm.DAEMON_CHANNEL)
        frame = self.read_frame(chan)
        if frame is None or frame[0] != DFRAME_LOAD:
            raise ValueError(f"expected a LOAD frame, got {frame!r}")
        _, seq, p = frame
        name_len, argc, elf_len = struct.unpack_from("<HHI", p)
        off = 8
        name = p[off:off + name_len].decode()
        off += name_len
        args = []
        for _ in range(argc):
            end = p.index(b"\0", off)
            args.append(p[off:end].decode())
            off = end + 1
        return {"chan": chan, "seq": seq, "name": name, "args": args,
                "elf": p[off:off + elf_len]}

    def daemon_reply(self, load, ftype, pid=100, status=0, err=0, stage=0,
                     text=""):
        """Sends the reply ``ftype`` (DFRAME_STARTED, _EXITED or _FAILED)
        for a LOAD returned by :meth:`daemon_take_load`."""
        name = load["name"].encode()
        if ftype == DFRAME_STARTED:
            payload = struct.pack("<I", pid) + name
        elif ftype == DFRAME_EXITED:
            payload = struct.pack("<Ii", pid, status) + name
        else:
            payload = struct.pack("<iI", err, stage) + text.encode()
        return self.send_frame(load["chan"], ftype, load["seq"], payload)


# Frame constants of gpm/daemon_proto.h, through pandagpm.wire.
DFRAME_MAGIC = wire.MAGIC_DAEMON
DFRAME_LOAD = wire.DFRAME_LOAD
DFRAME_PING = wire.DFRAME_PING
DFRAME_HELLO = wire.DFRAME_HELLO
DFRAME_STARTED = wire.DFRAME_STARTED
DFRAME_EXITED = wire.DFRAME_EXITED
DFRAME_FAILED = wire.DFRAME_FAILED


def make_plugin_elf(path, name, version="1.0.0", description="a test plugin",
                    arch="x86_64", desc_abi=1, note=True, elf_type=2):
    """Writes a minimal ELF "plugin" carrying a pandagpm descriptor note.

    The file has an ELF header and a section table with one SHT_NOTE
    section, enough for the inventory; it does not run. ``arch`` sets the
    machine, class and byte order. Returns ``path``.
    """
    info = _gpm.arch_info(arch)
    is64 = info["elf_class"] == 2
    end = ">" if info["big_endian"] else "<"
    desc = struct.pack(end + "I", desc_abi)
    desc += name.encode().ljust(64, b"\0")[:64]
    desc += version.encode().ljust(32, b"\0")[:32]
    desc += description.encode().ljust(160, b"\0")[:160]
    notes = struct.pack(end + "III", 9, len(desc), 0x47504D01)
    notes += b"pandagpm\0".ljust(12, b"\0") + desc
    ehsize, shentsize = (64, 64) if is64 else (52, 40)
    note_off = ehsize
    sh_off = note_off + len(notes)
    sh_off += -sh_off % 8
    ident = b"\x7fELF" + bytes([info["elf_class"],
                                2 if info["big_endian"] else 1, 1])
    ident = ident.ljust(16, b"\0")
    if is64:
        ehdr = ident + struct.pack(end + "HHIQQQIHHHHHH", elf_type,
                                   info["elf_machine"], 1, 0, 0, sh_off, 0,
                                   ehsize, 0, 0, shentsize, 2, 0)
        sect = struct.pack(end + "IIQQQQIIQQ", 0, 7, 0, 0, note_off,
                           len(notes), 0, 0, 4, 0)
    else:
        ehdr = ident + struct.pack(end + "HHIIIIIHHHHHH", elf_type,
                                   info["elf_machine"], 1, 0, 0, sh_off, 0,
                                   ehsize, 0, 0, shentsize, 2, 0)
        sect = struct.pack(end + "IIIIIIIIII", 0, 7, 0, 0, note_off,
                           len(notes), 0, 0, 4, 0)
    if not note:
        sect = sect[:4] + struct.pack(end + "I", 1) + sect[8:]  # PROGBITS
    body = ehdr + (notes if note else b"\0" * len(notes))
    body = body.ljust(sh_off, b"\0") + b"\0" * shentsize + sect
    with open(path, "wb") as f:
        f.write(body)
    return path
