"""Tests of the guest build (guest/Makefile) and of the guest binaries.

Four layers:
  * the real guest build with musl-gcc: every binary is a static x86-64
    ELF with the hypercall stub at 0x10000000 and a pandagpm descriptor
    note (checked with our own ELF parsing, no readelf needed);
  * out-of-tree plugins through EXTRA_GUEST_PLUGINS_PATH, and a clear
    failure when a guest compiler is missing;
  * native "mock" builds (host gcc, hypercalls backed by files, see
    guest/lib/arch/mock.c) that run the daemon and plugins for real: frame
    handling, loading from a memfd or /tmp, exit reports, the plugins'
    channel protocols;
  * the real x86_64 binaries run natively with their CPUID hypercalls
    caught by ptrace (guest/tests/ptrace_host.py), which checks the stub,
    the register convention and the page touching for real.
"""

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUEST = ROOT / "guest"
ARCH_BUILD = GUEST / "build" / "x86_64"
MOCK = GUEST / "build" / "native" / "mock"
BINARIES = ["guest_daemon", "etc_count", "hello", "guest_shell"]

# The stub's address: GPM_HC_ADDR_X86_64 of gpm/abi.h, its only home.
HC_ADDR = int(re.search(
    r"#define\s+GPM_HC_ADDR_X86_64\s+(0x[0-9a-fA-F]+)",
    (ROOT / "csrc" / "include" / "gpm" / "abi.h").read_text()).group(1), 16)
EM_X86_64 = 62
PT_INTERP = 3
PT_LOAD = 1
PT_DYNAMIC = 2
PF_X = 1
SHT_NOTE = 7
NOTE_TYPE = 0x47504D01

FRAME_MAGIC = 0x444D5047
F_LOAD, F_PING = 1, 2
F_HELLO, F_STARTED, F_EXITED, F_FAILED = 16, 17, 18, 19
STAGE_PROTOCOL, STAGE_EXEC = 1, 6


# --------------------------------------------------------------------------
# A small ELF reader (64-bit little-endian is all the x86_64 build makes).


def parse_elf(path):
    """Return the header fields, program headers and sections of an ELF."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    ei_class, ei_data = data[4], data[5]
    assert ei_class == 2, f"{path}: not ELFCLASS64"
    assert ei_data == 1, f"{path}: not little-endian"
    (e_type, e_machine, _ver, _entry, e_phoff, e_shoff, _flags, _ehsize,
     e_phentsize, e_phnum, e_shentsize, e_shnum,
     e_shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    phdrs = []
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = (
            struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize))
        phdrs.append(dict(type=p_type, flags=p_flags, offset=p_offset,
                          vaddr=p_vaddr, filesz=p_filesz, memsz=p_memsz))
    raw = []
    for i in range(e_shnum):
        fields = struct.unpack_from("<IIQQQQIIQQ", data,
                                    e_shoff + i * e_shentsize)
        raw.append(fields)
    strtab_off = raw[e_shstrndx][4]
    sections = {}
    for (name, sh_type, sh_flags, addr, off, size, *_rest) in raw:
        end = data.index(b"\0", strtab_off + name)
        sname = data[strtab_off + name:end].decode()
        sections[sname] = dict(type=sh_type, flags=sh_flags, addr=addr,
                               offset=off, size=size,
                               data=data[off:off + size])
    return dict(type=e_type, machine=e_machine, phdrs=phdrs,
                sections=sections)


def parse_descriptor(note):
    """Decode a .note.pandagpm section into (abi, name, version, text)."""
    namesz, descsz, ntype = struct.unpack_from("<III", note, 0)
    assert ntype == NOTE_TYPE
    owner = note[12:12 + namesz]
    assert owner == b"pandagpm\0"
    desc_off = 12 + ((namesz + 3) & ~3)
    desc = note[desc_off:desc_off + descsz]
    assert descsz == 4 + 64 + 32 + 160
    abi = struct.unpack_from("<I", desc, 0)[0]

    def cstr(b):
        return b.split(b"\0", 1)[0].decode()

    return abi, cstr(desc[4:68]), cstr(desc[68:100]), cstr(desc[100:260])


def run_make(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("EXTRA_GUEST_PLUGINS_PATH", None)
    full_env.update(env or {})
    return subprocess.run(["make", "-C", str(GUEST), *args],
                          capture_output=True, text=True, env=full_env,
                          timeout=600)


def assert_clean_build(result):
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "warning:" not in out, out


# --------------------------------------------------------------------------
# The real guest build.


@pytest.fixture(scope="module")
def guest_build():
    if shutil.which("musl-gcc") is None:
        print("musl-gcc not found (apt-get install musl-tools)")
        pytest.skip("musl-gcc not found (apt-get install musl-tools)")
    assert_clean_build(run_make())
    return ARCH_BUILD


@pytest.mark.parametrize("name", BINARIES)
def test_binary_is_static_x86_64(guest_build, name):
    elf = parse_elf(guest_build / name)
    assert elf["machine"] == EM_X86_64
    assert elf["type"] == 2, "expected ET_EXEC (non-PIE)"
    types = [p["type"] for p in elf["phdrs"]]
    assert PT_INTERP not in types, "dynamically linked (PT_INTERP)"
    assert PT_DYNAMIC not in types, "has a dynamic section"


@pytest.mark.parametrize("name", BINARIES)
def test_hypercall_stub_at_fixed_address(guest_build, name):
    elf = parse_elf(guest_build / name)
    sec = elf["sections"].get(".gpmhc")
    assert sec is not None, "no .gpmhc section"
    assert sec["addr"] == HC_ADDR
    assert sec["data"][:3] == b"\x0f\xa2\xc3", "expected cpuid; ret"
    # The stub must be loaded, executable, at that address.
    covering = [p for p in elf["phdrs"] if p["type"] == PT_LOAD
                and p["vaddr"] <= HC_ADDR < p["vaddr"] + p["memsz"]]
    assert covering and covering[0]["flags"] & PF_X


@pytest.mark.parametrize("name", BINARIES)
def test_descriptor_note(guest_build, name):
    elf = parse_elf(guest_build / name)
    sec = elf["sections"].get(".note.pandagpm")
    assert sec is not None, "no .note.pandagpm section"
    assert sec["type"] == SHT_NOTE
    abi, pname, version, text = parse_descriptor(sec["data"])
    assert abi == 1
    assert pname == name
    assert version
    assert text


def test_rebuild_is_noop(guest_build):
    result = run_make()
    assert result.returncode == 0
    assert "musl-gcc" not in result.stdout


def test_out_of_tree_plugin(guest_build, tmp_path):
    (tmp_path / "config.panda").write_text(
        "# out-of-tree plugins\n\ntiny   # a comment after the name\n")
    plugin = tmp_path / "tiny"
    plugin.mkdir()
    (plugin / "tiny.c").write_text(
        '#include "gpm/descriptor.h"\n'
        '#include "gpm_guest.h"\n'
        "#ifndef TINY_VALUE\n#error plugin.mk was not read\n#endif\n"
        'GPM_PLUGIN_DESCRIPTOR("tiny", "0.0.1", "A test plugin");\n'
        "int main(void)\n{\n"
        "    gpm_chan_t c;\n"
        "    unsigned char v = TINY_VALUE;\n"
        '    if (gpm_channel_open("tiny", &c) < 0)\n        return 1;\n'
        "    return gpm_write(c, &v, 1) == 1 ? 0 : 1;\n}\n")
    (plugin / "plugin.mk").write_text(
        "PLUGIN_tiny_CFLAGS := -DTINY_VALUE=42\n")
    result = run_make(env={"EXTRA_GUEST_PLUGINS_PATH": str(tmp_path)})
    assert_clean_build(result)
    binary = tmp_path / "build" / "x86_64" / "tiny"
    assert binary.is_file()
    elf = parse_elf(binary)
    assert PT_INTERP not in [p["type"] for p in elf["phdrs"]]
    assert elf["sections"][".gpmhc"]["addr"] == HC_ADDR
    abi, name, version, _ = parse_descriptor(
        elf["sections"][".note.pandagpm"]["data"])
    assert (abi, name, version) == (1, "tiny", "0.0.1")


def test_missing_compiler_fails_clearly(tmp_path):
    result = run_make(f"GUEST_CC={tmp_path}/no-such-gcc")
    assert result.returncode != 0
    assert "no-such-gcc" in result.stderr
    assert "not found" in result.stderr


def test_missing_cross_compiler_names_package():
    if shutil.which("mips64-linux-gnuabi64-gcc"):
        pytest.skip("a mips64 cross compiler is installed")
    result = run_make("GUEST_ARCH=mips64")
    assert result.returncode != 0
    assert "gcc-mips64-linux-gnuabi64" in result.stderr


# --------------------------------------------------------------------------
# Native unit tests and mock runs.


@pytest.fixture(scope="module")
def native():
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")


def test_frame_unit_tests(native):
    result = run_make("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed, 0 failed" in result.stdout


@pytest.fixture(scope="module")
def mock_build(native):
    assert_clean_build(run_make("mock"))
    return MOCK


def frame(ftype, seq, payload=b"", version=1):
    return struct.pack("<IHHII", FRAME_MAGIC, version, ftype, seq,
                       len(payload)) + payload


def load_payload(name, elf, args=()):
    argv = b"".join(a.encode() + b"\0" for a in args)
    return (struct.pack("<HHI", len(name), len(args), len(elf))
            + name.encode() + argv + elf)


class MockHost:
    """The host side of the file-backed mock hypercall."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.procs = []

    def channel(self, name):
        (self.dir / f"{name}.in").touch()

    def send(self, name, data):
        with open(self.dir / f"{name}.in", "ab") as f:
            f.write(data)

    def received(self, name):
        path = self.dir / f"{name}.out"
        return path.read_bytes() if path.exists() else b""

    def frames(self):
        data = self.received("guest_daemon")
        out = []
        while len(data) >= 16:
            magic, version, ftype, seq, length = struct.unpack_from(
                "<IHHII", data)
            assert magic == FRAME_MAGIC and version == 1
            if len(data) < 16 + length:
                break
            out.append((ftype, seq, data[16:16 + length]))
            data = data[16 + length:]
        return out

    def wait(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.01)
        raise AssertionError(f"timed out; frames: {self.frames()}")

    def wait_frame(self, ftype, seq=None):
        def find():
            return [f for f in self.frames()
                    if f[0] == ftype and (seq is None or f[1] == seq)]
        return self.wait(find)[0]

    def start_daemon(self, *args, env=None):
        self.channel("guest_daemon")
        full_env = dict(os.environ, GPM_MOCK_DIR=str(self.dir))
        full_env.update(env or {})
        proc = subprocess.Popen([str(MOCK / "guest_daemon"), "-f", *args],
                                env=full_env, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def host(mock_build, tmp_path):
    h = MockHost(tmp_path)
    yield h
    h.close()


def load(host, seq, name, binary=None, args=()):
    elf = Path(binary or MOCK / name).read_bytes()
    host.send("guest_daemon", frame(F_LOAD, seq, load_payload(name, elf,
                                                              args)))


def exit_code(exited_payload):
    _pid, status = struct.unpack_from("<Ii", exited_payload)
    return os.waitstatus_to_exitcode(status)


def test_daemon_hello_and_ping(host):
    proc = host.start_daemon()
    ftype, seq, payload = host.wait_frame(F_HELLO)
    assert seq == 0
    assert struct.unpack("<II", payload) == (proc.pid, 1)
    host.send("guest_daemon", frame(F_PING, 77))
    _, _, payload = host.wait_frame(F_HELLO, 77)
    assert struct.unpack("<II", payload) == (proc.pid, 1)


@pytest.mark.parametrize("daemon_args", [[], ["-t"]], ids=["memfd", "tmp"])
def test_daemon_runs_etc_count(host, daemon_args):
    host.start_daemon(*daemon_args)
    host.wait_frame(F_HELLO)
    host.channel("etc_count")
    before = set(os.listdir("/tmp"))
    load(host, 5, "etc_count")
    _, _, started = host.wait_frame(F_STARTED, 5)
    pid = struct.unpack_from("<I", started)[0]
    assert started[4:] == b"etc_count"
    _, _, exited = host.wait_frame(F_EXITED, 5)
    assert struct.unpack_from("<I", exited)[0] == pid
    assert exited[8:] == b"etc_count"
    assert exit_code(exited) == 0
    count = struct.unpack("<I", host.received("etc_count"))[0]
    assert count == len(os.listdir("/etc"))
    leftovers = [n for n in set(os.listdir("/tmp")) - before
                 if n.startswith("gpm-etc_count")]
    assert not leftovers, "the /tmp copy was not unlinked"


def test_daemon_passes_arguments(host, tmp_path):
    host.start_daemon()
    out = tmp_path / "args.txt"
    load(host, 3, "shell", binary="/bin/sh",
         args=["-c", f'echo "$0|$1" > {out}', "zero", "one"])
    _, _, exited = host.wait_frame(F_EXITED, 3)
    assert exit_code(exited) == 0
    assert out.read_text() == "zero|one\n"


def test_daemon_reports_exec_failure(host):
    host.start_daemon()
    host.send("guest_daemon",
              frame(F_LOAD, 9, load_payload("bad", b"not an ELF file")))
    _, _, payload = host.wait_frame(F_FAILED, 9)
    err, stage = struct.unpack_from("<iI", payload)
    assert stage == STAGE_EXEC
    assert err == 8  # ENOEXEC
    assert b"execve" in payload[8:]
    assert not [f for f in host.frames() if f[0] == F_EXITED]


def test_daemon_survives_malformed_frames(host):
    host.start_daemon()
    host.wait_frame(F_HELLO)
    host.send("guest_daemon", b"junk bytes GP")
    host.send("guest_daemon", frame(F_LOAD, 21, b"\x00\x00"))
    host.send("guest_daemon", frame(99, 22))
    host.send("guest_daemon", frame(F_LOAD, 23, b"whatever", version=7))
    host.send("guest_daemon", frame(F_PING, 24))
    host.wait_frame(F_HELLO, 24)
    failed = [f for f in host.frames() if f[0] == F_FAILED]
    assert [f[1] for f in failed] == [0, 21, 22, 23]
    for _, _, payload in failed:
        assert struct.unpack_from("<iI", payload)[1] == STAGE_PROTOCOL


def test_daemon_runs_plugins_at_once(host):
    host.start_daemon()
    host.channel("hello")
    host.channel("guest_shell")
    load(host, 1, "hello")
    load(host, 2, "guest_shell")
    host.wait_frame(F_STARTED, 1)
    host.wait_frame(F_STARTED, 2)
    assert not [f for f in host.frames() if f[0] == F_EXITED]
    greeting = b"hello from the guest!today's lucky number is: 3"
    host.wait(lambda: host.received("hello") == greeting)
    host.send("hello", struct.pack("<I", 1234))
    _, _, exited = host.wait_frame(F_EXITED, 1)
    assert exit_code(exited) == 0
    assert host.received("hello") == (
        greeting + b"the number you sent the guest was: 1234")
    # guest_shell is still running; end it.
    host.send("guest_shell", struct.pack("<I", 4) + b"exit")
    _, _, exited = host.wait_frame(F_EXITED, 2)
    assert exit_code(exited) == 0


def test_daemon_detaches(mock_build, tmp_path):
    h = MockHost(tmp_path)
    h.channel("guest_daemon")
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path))
    launcher = subprocess.run([str(MOCK / "guest_daemon")], env=env,
                              timeout=10)
    assert launcher.returncode == 0
    _, _, payload = h.wait_frame(F_HELLO)
    pid = struct.unpack_from("<I", payload)[0]
    try:
        assert Path(f"/proc/{pid}").exists()
        assert os.getsid(pid) != os.getsid(0)
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        h.send("guest_daemon", frame(F_PING, 5))
        h.wait_frame(F_HELLO, 5)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_daemon_detaches_without_fork(mock_build, tmp_path):
    h = MockHost(tmp_path)
    h.channel("guest_daemon")
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path))
    proc = subprocess.Popen([str(MOCK / "guest_daemon"), "-n"], env=env)
    h.procs.append(proc)
    try:
        _, _, payload = h.wait_frame(F_HELLO)
        assert struct.unpack_from("<I", payload)[0] == proc.pid
        assert os.getsid(proc.pid) == proc.pid
        assert os.readlink(f"/proc/{proc.pid}/cwd") == "/"
    finally:
        h.close()


def test_daemon_retries_eagain(host):
    host.start_daemon(env={"GPM_MOCK_EAGAIN": "1"})
    host.channel("etc_count")
    load(host, 4, "etc_count")
    _, _, exited = host.wait_frame(F_EXITED, 4)
    assert exit_code(exited) == 0
    assert len(host.received("etc_count")) == 4


def shell_request(cmd):
    return struct.pack("<I", len(cmd)) + cmd


def parse_shell_replies(data):
    replies = []
    while data:
        status, out_len, err_len, flags = struct.unpack_from("<iIII", data)
        out = data[16:16 + out_len]
        err = data[16 + out_len:16 + out_len + err_len]
        replies.append((status, out, err, flags))
        data = data[16 + out_len + err_len:]
    return replies


def test_guest_shell_protocol(mock_build, tmp_path):
    h = MockHost(tmp_path)
    h.send("guest_shell", b"".join(shell_request(c) for c in [
        b"echo out; echo err >&2; exit 3",
        b"kill -9 $$",
        b"head -c 100000 /dev/zero",
        b"",
    ]))
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path))
    proc = subprocess.run([str(MOCK / "guest_shell")], env=env, timeout=30)
    assert proc.returncode == 0
    replies = parse_shell_replies(h.received("guest_shell"))
    assert replies[0] == (3, b"out\n", b"err\n", 0)
    assert replies[1] == (128 + 9, b"", b"", 0)
    assert replies[2] == (0, b"\0" * 100000, b"", 0)
    assert len(replies) == 3


def test_hello_with_mock(mock_build, tmp_path):
    h = MockHost(tmp_path)
    h.send("hello", struct.pack("<I", 3000000000))
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path), GPM_MOCK_EAGAIN="1")
    proc = subprocess.run([str(MOCK / "hello")], env=env, timeout=30)
    assert proc.returncode == 0
    assert h.received("hello").endswith(
        b"the number you sent the guest was: 3000000000")


def test_plugin_without_channel_fails_cleanly(mock_build, tmp_path):
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path))
    proc = subprocess.run([str(MOCK / "etc_count")], env=env, timeout=30)
    assert proc.returncode == 2


# --------------------------------------------------------------------------
# The real x86_64 binaries, their hypercalls caught with ptrace
# (guest/tests/ptrace_host.py plays the host).


def _import_ptrace_host():
    import importlib.util
    path = GUEST / "tests" / "ptrace_host.py"
    spec = importlib.util.spec_from_file_location("gpm_ptrace_host", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ptrace_host(guest_build):
    module = _import_ptrace_host()
    if not module.ptrace_works():
        pytest.skip("ptrace is not permitted here")
    return module


def test_ptrace_etc_count(ptrace_host):
    host = ptrace_host.PtraceHost({"etc_count": []})
    assert host.run([str(ARCH_BUILD / "etc_count")]) == 0
    assert host.messages("etc_count") == [
        struct.pack("<I", len(os.listdir("/etc")))]
    assert host.started == {"etc_count"} and host.stopped == {"etc_count"}
    assert host.refused == 0


def test_ptrace_hello_small_transfers(ptrace_host):
    # At most 5 bytes per hypercall: the guest must loop on writes.
    host = ptrace_host.PtraceHost({"hello": [struct.pack("<I", 42)]},
                                  max_transfer=5)
    assert host.run([str(ARCH_BUILD / "hello")]) == 0
    assert host.received("hello") == (
        b"hello from the guest!today's lucky number is: 3"
        b"the number you sent the guest was: 42")
    assert host.refused == 0


def test_ptrace_guest_shell(ptrace_host):
    host = ptrace_host.PtraceHost({"guest_shell": [
        shell_request(b"echo out; echo err >&2; exit 5"),
        shell_request(b"printf x"),
        shell_request(b"exit"),
    ]})
    assert host.run([str(ARCH_BUILD / "guest_shell")]) == 0
    replies = parse_shell_replies(host.received("guest_shell"))
    assert replies == [(5, b"out\n", b"err\n", 0), (0, b"x", b"", 0)]


def test_ptrace_channel_not_found(ptrace_host):
    host = ptrace_host.PtraceHost({})
    assert host.run([str(ARCH_BUILD / "etc_count")]) == 2


def test_ptrace_daemon(ptrace_host, tmp_path):
    out = tmp_path / "ran.txt"
    sh = Path("/bin/sh").read_bytes()
    inbox = [
        frame(F_PING, 1),
        frame(F_LOAD, 2, load_payload("sh", sh,
                                      ["-c", f"echo ran > {out}"])),
        b"garbage",
        frame(F_LOAD, 3, load_payload("bad", b"not an ELF")),
        frame(F_PING, 4),
    ]
    # A large LOAD arrives in many 4 KiB reads, frames leave in pieces.
    host = ptrace_host.PtraceHost({"guest_daemon": inbox},
                                  max_transfer=4096)

    def frames(h):
        data = h.received("guest_daemon")
        result = []
        while len(data) >= 16:
            _m, _v, ftype, seq, length = struct.unpack_from("<IHHII", data)
            if len(data) < 16 + length:
                break
            result.append((ftype, seq, data[16:16 + length]))
            data = data[16 + length:]
        return result

    def done(h):
        return (F_HELLO, 4) in [(f[0], f[1]) for f in frames(h)] and any(
            f[0] == F_EXITED for f in frames(h))

    assert host.run([str(ARCH_BUILD / "guest_daemon"), "-f"],
                    until=done) is None
    got = frames(host)
    kinds = [(f[0], f[1]) for f in got]
    assert kinds[:3] == [(F_HELLO, 0), (F_HELLO, 1), (F_STARTED, 2)]
    assert (F_EXITED, 2) in kinds
    assert (F_FAILED, 0) in kinds
    failed3 = [f for f in got if f[:2] == (F_FAILED, 3)][0]
    assert struct.unpack_from("<iI", failed3[2]) == (8, STAGE_EXEC)
    assert out.read_text() == "ran\n"
    assert host.refused == 0


def test_ptrace_untouched_page_is_refused_then_touched(ptrace_host,
                                                       tmp_path):
    (tmp_path / "config.panda").write_text("touchtest\n")
    (tmp_path / "touchtest").mkdir()
    (tmp_path / "touchtest" / "touchtest.c").write_text(r"""
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include "gpm/descriptor.h"
#include "gpm_guest.h"
GPM_PLUGIN_DESCRIPTOR("touchtest", "1", "tests page touching");
int main(void)
{
    gpm_chan_t c;
    char msg[64];
    unsigned char *buf = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED || gpm_channel_open("touchtest", &c) < 0)
        return 1;
    /* Raw READ into a never-touched page: the host must refuse. */
    long raw = gpm_hc_err(gpm_hc(GPM_HC_OP_READ, c,
                                 (uintptr_t)(buf + 8192), 100));
    ssize_t n = gpm_read(c, buf + 8192, 100);
    snprintf(msg, sizeof(msg), "%ld %zd %.*s", raw, n, (int)(n > 0 ? n : 0),
             (char *)buf + 8192);
    return gpm_write_str(c, msg) > 0 ? 0 : 1;
}
""")
    assert_clean_build(run_make(env={"EXTRA_GUEST_PLUGINS_PATH":
                                     str(tmp_path)}))
    host = ptrace_host.PtraceHost({"touchtest": [b"payload"]})
    assert host.run([str(tmp_path / "build" / "x86_64" / "touchtest")]) == 0
    assert host.messages("touchtest") == [b"-11 7 payload"]
    assert host.refused == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
