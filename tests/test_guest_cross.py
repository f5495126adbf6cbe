"""The guest binaries cross-built for aarch64, arm (armhf), mipsel and
mips64el, for real.

Per arch (each skips, saying why, when its cross compiler or qemu-user is
not installed; scripts/install-system-deps.sh installs both):
  * the build: daemon, bundled plugins, testprogs and bench are static
    executables of the arch, warning-free, each with the hypercall stub
    (PANDA's trap instruction, then a return) at exactly the address
    gpm/abi.h gives for the arch, and a pandagpm descriptor note;
  * the daemon's frame tests (guest/tests/test_frames.c) cross-built and
    run under qemu-user (make -C guest check-arch);
  * the real binaries under qemu-user with their hypercalls caught at the
    stub through qemu-user's gdbstub (guest/tests/qemu_user_host.py), the
    way the stock-QEMU host catches them: register convention, the call
    to the far stub, 32-bit truncation on arm, channel exchanges;
  * the host inventory: the binaries inspect as their arch, a manager of
    another arch refuses them naming both arches, their own arch takes
    them.
"""

import importlib.util
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUEST = ROOT / "guest"
ABI_H = ROOT / "csrc" / "include" / "gpm" / "abi.h"

# What each arch's binaries must look like: ELF class and machine, the
# compiler, the qemu-user runner, and the stub's bytes (the trap, then the
# return) as facts from the architecture manuals and PANDA's decoders.
ARCHES = {
    "aarch64": dict(cls=2, machine=183, cc="aarch64-linux-gnu-gcc",
                    qemu="qemu-aarch64", pkg="gcc-aarch64-linux-gnu",
                    # msr S0_0_c5_c0_0, xzr ; ret
                    stub=bytes.fromhex("1f5000d5" "c0035fd6")),
    "arm": dict(cls=1, machine=40, cc="arm-linux-gnueabihf-gcc",
                qemu="qemu-arm", pkg="gcc-arm-linux-gnueabihf",
                # mcr p7, 0, r0, c0, c0, 0 ; bx lr (ARM state)
                stub=bytes.fromhex("100700ee" "1eff2fe1")),
    # movz $zero, $zero, $zero (0x0000000a) ; jr $ra (0x03e00008) ; nop
    "mipsel": dict(cls=1, machine=8, cc="mipsel-linux-gnu-gcc",
                   qemu="qemu-mipsel", pkg="gcc-mipsel-linux-gnu",
                   stub=bytes.fromhex("0a000000" "0800e003" "00000000")),
    "mips64el": dict(cls=2, machine=8, cc="mips64el-linux-gnuabi64-gcc",
                     qemu="qemu-mips64el", pkg="gcc-mips64el-linux-gnuabi64",
                     stub=bytes.fromhex("0a000000" "0800e003" "00000000")),
}
PLUGINS = ["guest_daemon", "etc_count", "hello", "guest_shell"]
TESTPROGS = ["ro_read", "hostile", "crash", "intruder"]
PT_LOAD, PT_INTERP, PF_X = 1, 3, 1
NOTE_TYPE = 0x47504D01
FRAME_MAGIC = 0x444D5047
F_LOAD, F_PING, F_HELLO, F_STARTED, F_EXITED = 1, 2, 16, 17, 18

pytestmark = pytest.mark.parametrize("arch", sorted(ARCHES))


def abi_addr(arch):
    m = re.search(rf"#define\s+GPM_HC_ADDR_{arch.upper()}\s+(0x[0-9a-fA-F]+)",
                  ABI_H.read_text())
    assert m, f"abi.h has no GPM_HC_ADDR_{arch.upper()}"
    return int(m.group(1), 16)


def parse_elf(path):
    """Header, program headers and sections of a little-endian ELF."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[5] == 1, f"{path}: not ELF LE"
    is64 = data[4] == 2
    if is64:
        hdr = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        ph_fmt, sh_fmt = "<IIQQQQQQ", "<IIQQQQIIQQ"
    else:
        hdr = struct.unpack_from("<HHIIIIIHHHHHH", data, 16)
        ph_fmt, sh_fmt = "<IIIIIIII", "<IIIIIIIIII"
    (e_type, e_machine, _v, _entry, phoff, shoff, _fl, _eh, phentsize,
     phnum, shentsize, shnum, shstrndx) = hdr
    phdrs = []
    for i in range(phnum):
        f = struct.unpack_from(ph_fmt, data, phoff + i * phentsize)
        if is64:
            p_type, p_flags, _off, vaddr, _pa, filesz, memsz, _al = f
        else:
            p_type, _off, vaddr, _pa, filesz, memsz, p_flags, _al = f
        phdrs.append(dict(type=p_type, flags=p_flags, vaddr=vaddr,
                          filesz=filesz, memsz=memsz))
    raw = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize)
           for i in range(shnum)]
    stroff = raw[shstrndx][4]
    sections = {}
    for name, _t, _f, addr, off, size, *_r in raw:
        sname = data[stroff + name:data.index(b"\0", stroff + name)].decode()
        sections[sname] = dict(addr=addr, data=data[off:off + size])
    return dict(cls=data[4], type=e_type, machine=e_machine, phdrs=phdrs,
                sections=sections)


def run_make(*args, cwd=GUEST):
    env = dict(os.environ)
    env.pop("EXTRA_GUEST_PLUGINS_PATH", None)
    return subprocess.run(["make", "-C", str(cwd), *args],
                          capture_output=True, text=True, env=env,
                          timeout=900)


def assert_clean(result):
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "warning:" not in out, out


_built = {}


@pytest.fixture
def cross(arch):
    """guest/build/<arch>, built (once per session) with every program."""
    a = ARCHES[arch]
    if shutil.which(a["cc"]) is None:
        pytest.skip(f"{a['cc']} not found (apt-get install {a['pkg']}, "
                    "see scripts/install-system-deps.sh)")
    if arch not in _built:
        for d in (GUEST, GUEST / "testprogs", GUEST / "bench"):
            assert_clean(run_make(f"GUEST_ARCH={arch}", cwd=d))
        _built[arch] = GUEST / "build" / arch
    return _built[arch]


@pytest.fixture
def qemu(arch, cross):
    name = ARCHES[arch]["qemu"]
    if shutil.which(name) is None and shutil.which(name + "-static") is None:
        pytest.skip(f"{name} not found (apt-get install qemu-user)")
    return name


# --------------------------------------------------------------------------
# The build.


def all_binaries(build):
    return ([build / n for n in PLUGINS]
            + [build / "testprogs" / n for n in TESTPROGS]
            + [build / "bench" / "gpm_bench"])


def test_binaries_are_static_with_stub_at_abi_address(arch, cross):
    a = ARCHES[arch]
    addr = abi_addr(arch)
    for path in all_binaries(cross):
        elf = parse_elf(path)
        assert (elf["cls"], elf["machine"]) == (a["cls"], a["machine"]), path
        assert elf["type"] == 2, f"{path}: not ET_EXEC (no-PIE)"
        assert PT_INTERP not in [p["type"] for p in elf["phdrs"]], path
        hc = elf["sections"][".gpmhc"]
        assert hc["addr"] == addr, path
        assert hc["data"][:len(a["stub"])] == a["stub"], path
        # The stub is mapped executable at that address.
        assert any(p["type"] == PT_LOAD and p["flags"] & PF_X
                   and p["vaddr"] <= addr < p["vaddr"] + p["filesz"]
                   for p in elf["phdrs"]), path
        note = elf["sections"][".note.pandagpm"]["data"]
        namesz, descsz, ntype = struct.unpack_from("<III", note)
        assert (ntype, note[12:12 + namesz]) == (NOTE_TYPE, b"pandagpm\0")
        desc = note[12 + ((namesz + 3) & ~3):][:descsz]
        name = desc[4:68].split(b"\0")[0].decode()
        assert name == path.name, path


def test_missing_abi_address_fails_clearly(arch, cross, tmp_path):
    # A copy of the guest tree whose abi.h lacks this arch's address.
    tree = tmp_path / "tree"
    shutil.copytree(GUEST, tree / "guest", ignore=shutil.ignore_patterns(
        "build"))
    shutil.copytree(ROOT / "csrc" / "include", tree / "csrc" / "include")
    abi = tree / "csrc" / "include" / "gpm" / "abi.h"
    abi.write_text(re.sub(rf"#define GPM_HC_ADDR_{arch.upper()} .*\n", "",
                          abi.read_text()))
    result = run_make(f"GUEST_ARCH={arch}", cwd=tree / "guest")
    assert result.returncode != 0
    assert f"GPM_HC_ADDR_{arch.upper()}" in result.stderr


def test_frame_tests_under_qemu_user(arch, qemu):
    result = run_make("check-arch", f"GUEST_ARCH={arch}")
    assert result.returncode == 0, result.stdout + result.stderr
    m = re.search(r"(\d+) passed, 0 failed", result.stdout)
    assert m and int(m.group(1)) > 100, result.stdout


# --------------------------------------------------------------------------
# Real hypercalls under qemu-user's gdbstub.


@pytest.fixture
def host_mod(qemu):
    path = GUEST / "tests" / "qemu_user_host.py"
    spec = importlib.util.spec_from_file_location("gpm_qemu_user_host", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_etc_count(arch, cross, host_mod):
    host = host_mod.QemuUserHost(arch, {"etc_count": []})
    assert host.run([str(cross / "etc_count")]) == 0
    assert host.messages("etc_count") == [
        struct.pack("<I", len(os.listdir("/etc")))]
    assert host.started == {"etc_count"} and host.stopped == {"etc_count"}


def test_hello_small_transfers(arch, cross, host_mod):
    # At most 5 bytes per hypercall: the guest must loop on writes.
    host = host_mod.QemuUserHost(arch, {"hello": [struct.pack("<I", 42)]},
                                 max_transfer=5)
    assert host.run([str(cross / "hello")]) == 0
    assert host.received("hello") == (
        b"hello from the guest!today's lucky number is: 3"
        b"the number you sent the guest was: 42")
    assert max(len(m) for m in host.messages("hello")) == 5


def test_channel_not_found(arch, cross, host_mod):
    host = host_mod.QemuUserHost(arch, {})
    assert host.run([str(cross / "etc_count")]) == 2
    assert host.hypercalls >= 1


def test_guest_shell(arch, cross, host_mod):
    def req(cmd):
        return struct.pack("<I", len(cmd)) + cmd

    host = host_mod.QemuUserHost(arch, {"guest_shell": [
        req(b"echo out; echo err >&2; exit 5"), req(b"exit")]})
    assert host.run([str(cross / "guest_shell")]) == 0
    data = host.received("guest_shell")
    status, out_len, err_len, flags = struct.unpack_from("<iIII", data)
    assert (status, flags) == (5, 0)
    assert data[16:16 + out_len] == b"out\n"
    assert data[16 + out_len:16 + out_len + err_len] == b"err\n"


def test_daemon_hello_and_ping(arch, cross, host_mod):
    ping = struct.pack("<IHHII", FRAME_MAGIC, 1, F_PING, 7, 0)
    host = host_mod.QemuUserHost(arch, {"guest_daemon": [ping]})

    def frames(h):
        data, out = h.received("guest_daemon"), []
        while len(data) >= 16:
            magic, _v, ftype, seq, length = struct.unpack_from("<IHHII", data)
            assert magic == FRAME_MAGIC
            out.append((ftype, seq, data[16:16 + length]))
            data = data[16 + length:]
        return out

    assert host.run([str(cross / "guest_daemon"), "-f"],
                    until=lambda h: len(frames(h)) >= 2) is None
    got = frames(host)
    assert [(f[0], f[1]) for f in got[:2]] == [(F_HELLO, 0), (F_HELLO, 7)]


WIDE_C = r"""
#include <stdint.h>
#include <stdio.h>
#include "gpm/descriptor.h"
#include "gpm_guest.h"
GPM_PLUGIN_DESCRIPTOR("wide", "1", "64-bit hypercall arguments");
int main(void)
{
    gpm_chan_t c;
    char msg[64];
    if (gpm_channel_open("wide", &c) < 0)
        return 2;
    /* Channel and length with bit 32 set: only a 64-bit guest keeps it. */
    uint64_t r = gpm_hc(GPM_HC_OP_WRITE, c + (1ull << 32),
                        (uintptr_t)"xyz", 3 + (1ull << 32));
    snprintf(msg, sizeof(msg), "%lld %ld", (long long)gpm_hc_signed(r),
             gpm_hc_err(r));
    return gpm_write_str(c, msg) > 0 ? 0 : 1;
}
"""


def test_register_width(arch, cross, host_mod, tmp_path):
    """On the 32-bit arches (arm, mipsel) the hypercall registers are 32
    bits wide, so bit 32 of the channel and of the length is lost (the
    WRITE reaches the channel and moves 3 bytes); on the 64-bit ones
    (aarch64, mips64el) all 64 bits reach the host (no channel has that
    id: EBADF). The ptrace/x86_64 twin is in test_guest_build."""
    (tmp_path / "config.panda").write_text("wide\n")
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "wide.c").write_text(WIDE_C)
    env = dict(os.environ, EXTRA_GUEST_PLUGINS_PATH=str(tmp_path))
    r = subprocess.run(["make", "-C", str(GUEST), f"GUEST_ARCH={arch}"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert_clean(r)
    host = host_mod.QemuUserHost(arch, {"wide": []})
    assert host.run([str(tmp_path / "build" / arch / "wide")]) == 0
    msgs = host.messages("wide")
    if ARCHES[arch]["cls"] == 1:
        assert msgs == [b"xyz", b"3 0"]
    else:
        assert msgs == [b"-9 -9"]


# --------------------------------------------------------------------------
# The host inventory.


def test_inventory_knows_the_arch_and_refuses_another(arch, cross):
    _gpm = pytest.importorskip("pandagpm._gpm")
    path = str(cross / "hello")
    info = _gpm.inspect_plugin(path)
    assert (info["name"], info["arch"]) == ("hello", arch)
    other = "x86_64"
    m = _gpm.Manager(arch=other)
    with pytest.raises(_gpm.Error) as err:
        m.add_guest_plugin("hello", path)
    assert err.value.code == _gpm.EARCH
    assert arch in err.value.message and other in err.value.message
    with pytest.raises(_gpm.Error):
        m.lookup("hello")  # nothing was queued for it
    mine = _gpm.Manager(arch=arch)
    assert mine.add_guest_plugin("hello", path) >= 1
    assert _gpm.find_plugin("hello", arch, str(cross))["path"] == path


# --------------------------------------------------------------------------
# Whole-system stock QEMU: the same bare-metal program PANDA runs
# (tests/test_panda_real_arm.py), hypercalls caught at the stub.

BARE = ROOT / "tests" / "panda" / "bare"
BARE_STUB = 0x40400000  # tests/panda/bare/Makefile's .gpmhc


def test_bare_metal_on_stock_qemu(arch, cross, host_mod, tmp_path):
    """hc_bare on qemu-system-<arch> -machine virt with the gdbstub
    breakpoint on its stub, served like the stock-QEMU host does. The
    trap never executes (it would be an undefined instruction here, and
    the program would not reach DONE); the answers are the ones
    guest_plugin_manager gives under PANDA for the same binary."""
    if shutil.which(f"qemu-system-{arch}") is None:
        pytest.skip(f"qemu-system-{arch} not found")
    if not (BARE / f"start_{arch}.S").is_file():
        pytest.skip(f"tests/panda/bare has no {arch} start-up code (only "
                    "QEMU's ARM virt machine so far)")
    r = subprocess.run(["make", "-C", str(BARE), f"ARCH={arch}"],
                       capture_output=True, text=True, timeout=300)
    assert_clean(r)
    serial = tmp_path / "uart.txt"
    serial.write_bytes(b"")
    host = host_mod.QemuSystemHost(arch, {"guest_daemon": []}, BARE_STUB,
                                   str(serial))
    assert host.run([str(BARE / "build" / arch / "hc_bare")], timeout=120,
                    until=lambda h: b"DONE" in serial.read_bytes()) is None
    text = serial.read_text()
    got = {m.group(1): int(m.group(2), 16) for m in
           re.finditer(r"^(\w+)=([0-9a-f]{16})$", text, re.M)}
    mask = (1 << (64 if arch == "aarch64" else 32)) - 1
    assert got == {"get_daemon": 1, "get_unknown": -1 & mask,
                   "get_manager": 2, "start_daemon": 0,
                   "write_unknown": -9 & mask, "op_99": -38 & mask}, text
    assert host.hypercalls == 6
