"""pandagpm.panda_host: the pypanda integration.

The first part needs neither PANDA nor pandare. The tests marked ``panda``
use pandare's cffi type definitions, which load without libpanda: they
build real ``CPUState``/``CPUArchState`` structs with pandare's layouts,
derive the register and ``env_ptr`` offsets from them, and run whole
hypercalls through ``PandaCPU`` with a stand-in for libpanda's memory
functions. Runs of the guest under real PANDA are in
tests/test_panda_real_pypanda.py.
"""

import importlib
import struct
import sys
import warnings

import pytest

import pandagpm
from pandagpm import _gpm, panda_host
from pandagpm.panda_host import PandaCPU, register_map, x86_64_check_user_write

ARCHES = ("x86_64", "i386", "arm", "aarch64", "mips", "mipsel", "mips64",
          "mips64el", "ppc")

# pandare's type modules per gpm architecture.
PANDARE_TYPES = {
    "x86_64": "panda_x86_64_64", "i386": "panda_i386_32",
    "arm": "panda_arm_32", "aarch64": "panda_aarch64_64",
    "mips": "panda_mips_32", "mipsel": "panda_mipsel_32",
    "mips64": "panda_mips64_64", "mips64el": "panda_mips64el_64",
    "ppc": "panda_ppc_32",
}


def pandare_ffi(arch):
    """pandare's cffi types for ``arch``, or skip saying why."""
    try:
        mod = importlib.import_module("pandare.autogen." +
                                      PANDARE_TYPES[arch])
    except ImportError as err:
        pytest.skip(f"pandare is not installed ({err}); "
                    "pip install pandare to run this test")
    return mod.ffi


# Register maps against the core's own table.

@pytest.mark.parametrize("arch", ARCHES)
def test_register_map_covers_the_core(arch):
    info = _gpm.arch_info(arch)
    regs = register_map(arch)
    for n in (*info["hc_regs"], info["ret_reg"], info["pc_reg"]):
        assert n in regs, f"{arch}: GDB register {n} unmapped"


def test_register_map_x86_64_order():
    regs = register_map("x86_64")
    # rax rbx rcx rdx rsi rdi rbp rsp -> R_EAX R_EBX R_ECX R_EDX ...
    assert [regs[n][1] for n in range(8)] == [0, 3, 1, 2, 6, 7, 5, 4]
    assert regs[16] == (("eip",), None)
    with pytest.raises(ValueError):
        register_map("sparc")


# The x86_64 page-table walk, on a fake physical memory.

P, RW, US, PS = 1, 2, 4, 0x80


class PhysMem:
    def __init__(self, pages=64):
        self.mem = bytearray(pages * 4096)
        self.reads = 0

    def set_pte(self, table, idx, val):
        struct.pack_into("<Q", self.mem, table + 8 * idx, val)

    def read(self, paddr, n):
        self.reads += 1
        if paddr + n > len(self.mem):
            return None
        return bytes(self.mem[paddr:paddr + n])


@pytest.fixture
def tables():
    m = PhysMem()
    pml4, pdpt, pd, pt, pd1, pt2 = (i * 4096 for i in range(1, 7))
    m.set_pte(pml4, 0, pdpt | P | RW | US)
    m.set_pte(pdpt, 0, pd | P | RW | US)
    m.set_pte(pdpt, 1, pd1 | P | RW | US)
    m.set_pte(pd, 2, pt | P | RW | US)
    m.set_pte(pd, 3, pt2 | P | RW | US)
    m.set_pte(pt, 0, 10 * 4096 | P | RW | US)
    m.set_pte(pt, 1, 11 * 4096 | P | US)  # the zero page: read-only
    m.set_pte(pt, 3, 12 * 4096 | P | RW | US)
    m.set_pte(pt2, 0, 13 * 4096 | P | RW)  # supervisor only
    m.set_pte(pd1, 0, (16 << 21) | P | RW | US | PS)
    return m


@pytest.mark.parametrize("va,n,want", [
    (0x400000, 4096, 0),
    (0x400FF0, 32, _gpm.EROFS),
    (0x401000, 1, _gpm.EROFS),
    (0x402000, 1, _gpm.EFAULT),
    (0x403000, 4096, 0),
    (0x600010, 8, _gpm.EFAULT),  # supervisor: never the guest's to name
    (0x40000000, 2 << 20, 0),
    (0x401FFFFF, 2, _gpm.EFAULT),
    (0x7F0000000000, 1, _gpm.EFAULT),
    (0x0000800000000000, 1, _gpm.EFAULT),
    ((1 << 64) - 2, 16, _gpm.EFAULT),
])
def test_page_walk(tables, va, n, want):
    assert x86_64_check_user_write(4096 | 5, False, va, n, tables.read) == \
        want


@pytest.mark.parametrize("va,n,want", [
    (0x400000, 4096, 0),
    (0x401000, 1, 0),            # read-only is readable
    (0x402000, 1, _gpm.EFAULT),  # not present
    (0x600010, 8, _gpm.EFAULT),  # supervisor only: kernel memory
    (0x5FFFF8, 16, _gpm.EFAULT),  # crosses into it
    (0x40000000, 2 << 20, 0),
])
def test_page_walk_read(tables, va, n, want):
    from pandagpm.panda_host import x86_64_check_user_read
    assert x86_64_check_user_read(4096 | 5, False, va, n, tables.read) == \
        want


def test_page_walk_empty_reads_nothing(tables):
    assert x86_64_check_user_write(4096, False, 0x402000, 0, tables.read) == 0
    assert tables.reads == 0


# load_guest_plugin() on hosts that are not pypanda.

class OwnLoader:
    def __init__(self):
        self.calls = []

    def load_guest_plugin(self, name, callback=None, path=None, **kw):
        self.calls.append((name, callback, path, kw))
        return "channel"


def test_load_guest_plugin_delegates_to_the_host():
    host = OwnLoader()
    cb = object()
    assert panda_host.load_guest_plugin(host, "etc_count", cb) == "channel"
    assert host.calls == [("etc_count", cb, None, {})]
    assert not panda_host.is_pandare(host)


def test_load_guest_plugin_on_a_manager_host(tmp_path):
    class Host:
        manager = _gpm.Manager("x86_64", 0, 0, 0, 0)

    host = Host()
    with pytest.raises(pandagpm.PluginNotFound):
        panda_host.load_guest_plugin(host, "no_such_plugin_xyz")
    assert isinstance(host._pandagpm_gpm, pandagpm.GuestPluginManager)


# With pandare's real cffi types (no libpanda needed).

class FakeLibpanda:
    """libpanda's *_external memory functions over a flat guest memory.

    Virtual addresses [base, base + size) map 1:1; writes to pages in
    ``read_only`` fail as libpanda never would (it writes anyway), which
    the tests use to see that PandaCPU checks before writing.
    """

    def __init__(self, ffi, base=0x400000, size=8 * 4096):
        self.ffi, self.base = ffi, base
        self.mem = bytearray(size)
        self.phys = PhysMem()
        self.writes = 0

    def _ok(self, addr, n):
        return self.base <= addr and addr + n <= self.base + len(self.mem)

    def panda_virtual_memory_read_external(self, cpu, addr, buf, n):
        if not self._ok(addr, n):
            return -1
        off = addr - self.base
        self.ffi.memmove(buf, bytes(self.mem[off:off + n]), n)
        return 0

    def panda_virtual_memory_write_external(self, cpu, addr, buf, n):
        if not self._ok(addr, n):
            return -1
        off = addr - self.base
        self.mem[off:off + n] = self.ffi.buffer(buf, n)[:]
        self.writes += 1
        return 0

    def panda_physical_memory_read_external(self, paddr, buf, n):
        data = self.phys.read(paddr, n)
        if data is None:
            return -1
        self.ffi.memmove(buf, data, n)
        return 0


class FakePanda:
    """The parts of pandare.Panda that PandaHost uses, with real ffi."""

    def __init__(self, arch, plugin_dir):
        self.arch_name = arch
        self.ffi = pandare_ffi(arch)
        self.libpanda = FakeLibpanda(self.ffi)
        self.plugin_dir = plugin_dir
        self.callbacks = {}
        self.loaded = []

    def _register(self, name):
        def register(fn):
            self.callbacks[name] = fn
            return fn
        return register

    cb_guest_hypercall = cb_after_loadvm = _register

    def delete_callback(self, name):
        del self.callbacks[name]

    def get_plugin_path(self):
        return str(self.plugin_dir)

    def load_plugin(self, name, args):
        self.loaded.append((name, args))


def make_cpu(ffi):
    cpu = ffi.new("CPUState *")
    env = ffi.new(ffi.typeof(cpu.env_ptr).cname.replace(" *", "") + " *")
    cpu.env_ptr = env
    return cpu, env


@pytest.mark.panda
def test_pandare_offsets_derived_from_its_types():
    ffi = pandare_ffi("x86_64")
    # What a C hot path would need: where env_ptr and the registers live.
    env_ptr = ffi.offsetof("CPUState", "env_ptr")
    regs = ffi.offsetof("CPUX86State", "regs")
    eip = ffi.offsetof("CPUX86State", "eip")
    assert env_ptr > 0 and env_ptr % ffi.alignof("void *") == 0
    assert ffi.sizeof(ffi.typeof("CPUX86State").fields[0][1].type) == 16 * 8
    assert eip >= regs + 16 * 8
    print(f"\npandare x86_64: CPUState.env_ptr at {env_ptr}, "
          f"CPUX86State.regs at {regs}, eip at {eip}")
    for arch in ARCHES:
        f = pandare_ffi(arch)
        assert f.offsetof("CPUState", "env_ptr") == env_ptr, arch


@pytest.mark.panda
@pytest.mark.parametrize("arch", ARCHES)
def test_registers_land_at_pandare_offsets(arch):
    """Each GDB register PandaCPU writes is the field at its offset."""
    ffi = pandare_ffi(arch)
    cpu, env = make_cpu(ffi)
    panda = type("P", (), {"ffi": ffi, "libpanda": None})()
    pc = PandaCPU(panda, arch)
    pc.bind(cpu)
    env_type = ffi.typeof(cpu.env_ptr).item
    raw = ffi.buffer(env, ffi.sizeof(env_type))
    word = _gpm.arch_info(arch)["word_bits"] // 8
    info = _gpm.arch_info(arch)
    if arch == "aarch64":
        env.aarch64 = 1
    for n in sorted(set(info["hc_regs"]) | {info["ret_reg"],
                                            info["pc_reg"]}):
        path, index = register_map(arch)[n]
        # The offset of the field, from pandare's types alone.
        outer = env_type
        off = 0
        for name in path:
            field = dict(outer.fields)[name]
            off += field.offset
            outer = field.type
        size = word
        if index is not None:
            size = ffi.sizeof(outer.item)
            off += index * size
        value = 0x1122334455667788 & ((1 << (8 * size)) - 1)
        value = (value & ~0xFF) | n
        assert pc.write_reg(n, value) == 0
        # QEMU keeps registers in host byte order, whatever the guest's.
        assert int.from_bytes(raw[off:off + size], sys.byteorder) == value, \
            (arch, n, off)
        assert pc.read_reg(n) == value
    assert pc.read_reg(200) == _gpm.EINVAL
    assert pc.write_reg(200, 1) == _gpm.EINVAL


@pytest.mark.panda
def test_hypercalls_through_pandare_types(tmp_path):
    """Whole hypercalls: the callback PandaHost registers, real layouts."""
    panda = FakePanda("x86_64", tmp_path)
    with pytest.warns(RuntimeWarning, match="panda_linjector.so"):
        host = panda_host.PandaHost(panda)
    ffi, lib = panda.ffi, panda.libpanda
    hc = panda.callbacks[panda_host.CALLBACK_NAME]
    cpu, env = make_cpu(ffi)
    got = []
    chan = host.gpm.open_channel("demo", callback=lambda c, m: got.append(m))
    R_EAX, R_ECX, R_EDX, R_EBX, R_EDI = 0, 1, 2, 3, 7

    def call(op, a1=0, a2=0, cid=chan.id):
        env.regs[R_EAX] = _gpm.HC_MAGIC if hasattr(_gpm, "HC_MAGIC") \
            else 0x1337C0D3
        env.regs[R_EBX], env.regs[R_ECX] = op, cid
        env.regs[R_EDX], env.regs[R_EDI] = a1, a2
        handled = hc(cpu)
        return handled, int(ffi.cast("int64_t", env.regs[R_EAX]))

    # Not ours: a plain CPUID.
    env.regs[R_EAX] = 0
    assert hc(cpu) is False
    # WRITE: guest -> host.
    lib.mem[0:5] = b"hello"
    assert call(4, 0x400000, 5) == (True, 5)
    assert got == [b"hello"]
    # READ in long mode: the page tables say the page is writable.
    env.hflags = 1 << 14
    env.cr[3] = 4096
    m = lib.phys
    m.set_pte(4096, 0, 2 * 4096 | P | RW | US)
    m.set_pte(2 * 4096, 0, 3 * 4096 | P | RW | US)
    m.set_pte(3 * 4096, 2, 4 * 4096 | P | RW | US)
    m.set_pte(4 * 4096, 1, 20 * 4096 | P | RW | US)
    m.set_pte(4 * 4096, 2, 21 * 4096 | P | US)  # read-only
    m.set_pte(4 * 4096, 0, 19 * 4096 | P | RW | US)
    m.set_pte(4 * 4096, 3, 22 * 4096 | P | RW)  # supervisor: kernel memory
    # WRITE from a kernel page: the host never reads it for the guest.
    lib.mem[3 * 4096:3 * 4096 + 6] = b"secret"
    assert call(4, 0x403000, 6) == (True, -14)  # GPM_HC_EFAULT
    assert got == [b"hello"]
    chan.write(b"from host")
    assert call(3, 0x401000, 64) == (True, 9)
    assert bytes(lib.mem[4096:4096 + 9]) == b"from host"
    # A read-only page: refused before libpanda writes; message kept.
    writes = lib.writes
    chan.write(b"again")
    assert call(3, 0x402000, 64) == (True, -11)  # GPM_HC_EAGAIN
    assert lib.writes == writes
    assert call(3, 0x401000, 64) == (True, 5)
    # Unmapped for libpanda.
    assert call(4, 0x900000, 4)[1] == -14  # GPM_HC_EFAULT

    # A snapshot load after the guest talked: a new manager, old channels
    # closed; the hypercall callback now feeds the new manager.
    loadvm = panda.callbacks[panda_host.LOADVM_CALLBACK_NAME]
    old = host.gpm
    loadvm(cpu)
    assert host.gpm is not old and host.manager is host.gpm.manager
    assert chan.closed
    chan2 = host.gpm.open_channel("demo", callback=lambda c, m: got.append(m))
    lib.mem[0:3] = b"new"
    assert call(4, 0x400000, 3, cid=chan2.id) == (True, 3)
    assert got[-1] == b"new"
    # Without hypercalls since, a snapshot load keeps everything.
    fresh = panda_host.PandaHost(FakePanda("x86_64", tmp_path), inject="none")
    kept = fresh.gpm
    fresh.panda.callbacks[panda_host.LOADVM_CALLBACK_NAME](cpu)
    assert fresh.gpm is kept
    host.close()
    assert panda.callbacks == {}


@pytest.mark.panda
def test_linjector_plugin_is_loaded_when_built(tmp_path, monkeypatch):
    pandare_ffi("x86_64")
    (tmp_path / "panda_linjector.so").write_bytes(b"")
    panda = FakePanda("x86_64", tmp_path)
    monkeypatch.setattr(panda_host.PandaHost, "daemon_path",
                        lambda self: "/guest/guest_daemon")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        host = panda_host.PandaHost(panda, proc_name="cat",
                                    require_root=True)
    assert host.injector == "linjector"
    assert panda.loaded == [("linjector", {
        "guest_binary": "/guest/guest_daemon", "args": "-n",
        "proc_name": "cat", "require_root": "true"})]
    with pytest.raises(RuntimeError, match="not found"):
        panda_host.PandaHost(FakePanda("x86_64", tmp_path / "none"),
                             inject="plugin")



@pytest.mark.panda
def test_attach_from_a_blocking_function(tmp_path):
    """While the guest runs, the host is made on PANDA's main loop."""
    import threading
    import time

    panda = FakePanda("x86_64", tmp_path)
    panda.running = threading.Event()
    panda.running.set()
    queued = []
    panda.queue_main_loop_wait_fn = lambda fn, args=(): queued.append(fn)
    got = {}
    worker = threading.Thread(
        target=lambda: got.setdefault("host", panda_host.attach(
            panda, inject="none")))
    worker.start()
    for _ in range(500):
        if queued:
            break
        time.sleep(0.01)
    assert queued and panda.callbacks == {}  # nothing registered off-loop
    queued.pop()()  # the main loop runs it
    worker.join(5)
    assert got["host"] is panda._pandagpm_host
    assert panda_host.CALLBACK_NAME in panda.callbacks
    assert panda_host.attach(panda) is got["host"]


def test_is_pandare():
    Panda = type("Panda", (), {"__module__": "pandare.panda"})
    Other = type("Panda", (), {"__module__": "pandagpm.host"})
    assert panda_host.is_pandare(Panda())
    assert not panda_host.is_pandare(Other())


class CLibpanda:
    """FakeLibpanda's memory behind real C function pointers (cffi
    callbacks), as the C hot path needs libpanda's functions to be."""

    def __init__(self, ffi):
        self.fake = FakeLibpanda(ffi)
        self.panda_virtual_memory_read_external = ffi.callback(
            "int(CPUState *, target_ulong, char *, int)",
            self.fake.panda_virtual_memory_read_external)
        self.panda_virtual_memory_write_external = ffi.callback(
            "int(CPUState *, target_ulong, char *, int)",
            self.fake.panda_virtual_memory_write_external)
        self.panda_physical_memory_read_external = ffi.callback(
            "int(hwaddr, uint8_t *, int)",
            self.fake.panda_physical_memory_read_external)


class CPanda(FakePanda):
    """A FakePanda whose callbacks register the way pandare's do."""

    def __init__(self, arch, plugin_dir):
        super().__init__(arch, plugin_dir)
        self.libpanda = CLibpanda(self.ffi)
        self.callback = type("Callbacks", (), {"guest_hypercall": "hc"})()

    def register_callback(self, kind, fn, name):
        assert kind == "hc"
        self.callbacks[name] = fn


@pytest.mark.panda
def test_c_hot_path_serves_hypercalls(tmp_path):
    """The extension's C callback, called the way PANDA calls it."""
    from pandagpm.panda_host import CALLBACK_NAME, PandaHost

    panda = CPanda("x86_64", tmp_path)
    host = PandaHost(panda, inject="none")
    assert host.fast
    fn = panda.callbacks[CALLBACK_NAME]
    ffi = panda.ffi
    assert ffi.typeof(fn) == ffi.typeof("bool(*)(CPUState *)")
    cpu, env = make_cpu(ffi)
    mem = panda.libpanda.fake
    got = []
    chan = host.gpm.open_channel("c_path", lambda cid, data: got.append(data))

    def hypercall(op, chan_id=0, a1=0, a2=0, magic=0x1337C0D3):
        # GDB x86_64: rax rbx rcx rdx rdi = QEMU regs 0 3 1 2 7.
        for q, v in zip((0, 3, 1, 2, 7), (magic, op, chan_id, a1, a2)):
            env.regs[q] = v
        handled = fn(cpu)
        r = env.regs[0]
        return handled, r - (1 << 64) if r >= 1 << 63 else r

    base = mem.base
    mem.mem[0:6] = b"c_path"
    assert hypercall(7, 0, base, 6) == (True, chan.id)
    mem.mem[64:69] = b"hello"
    assert hypercall(4, chan.id, base + 64, 5) == (True, 5)
    assert got == [b"hello"]
    # Not ours: untouched, and PANDA runs the real CPUID.
    assert hypercall(4, chan.id, base + 64, 5, magic=7) == (False, 7)
    # Host -> guest through libpanda's write (not long mode: no walk).
    chan.write(b"to guest")
    assert hypercall(3, chan.id, base + 128, 100) == (True, 8)
    assert bytes(mem.mem[128:136]) == b"to guest"
    # Bad pointer and unknown op, from C.
    assert hypercall(3, chan.id, 0x10, 100) == (True, 0)  # nothing queued
    chan.write(b"x")
    assert hypercall(3, chan.id, 0x10, 100) == (True, -14)
    assert hypercall(99) == (True, -38)
    stats = _gpm.panda_hc_stats()
    assert stats["installed"] and stats["handled"] >= 6
    host.close()
    assert not _gpm.panda_hc_stats()["installed"]
    assert fn(cpu) is False  # uninstalled: nothing is handled


def test_one_manager_per_host_without_attributes():
    """A host that cannot carry an attribute still gets one
    GuestPluginManager for its life, not a new one per call."""
    from pandagpm import _gpm

    class SlotHost:
        __slots__ = ("manager", "__weakref__")

        def __init__(self):
            self.manager = _gpm.Manager("x86_64", 0, 0, 0, 0)

    h = SlotHost()
    first = panda_host._manager_for(h)
    assert panda_host._manager_for(h) is first
    assert first.host is h
    other = SlotHost()
    assert panda_host._manager_for(other) is not first
