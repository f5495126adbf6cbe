"""End-to-end tests of _gpm.GdbHost against a real QEMU.

Boots Debian's kernel with a tiny busybox initramfs under stock
qemu-system-x86_64 (TCG, guest RAM in a shared memory-backend-file, the
gdbstub on a unix socket), and drives it through GdbHost: hypercalls from a
small assembly guest program served by the C core, page-walk reads checked
against 'm' packets, the zero-page guard, breakpoints, and shutdown.

The kernel and busybox come from, in order: $GPM_TEST_KERNEL and
$GPM_TEST_BUSYBOX; the generic image of pandagpm.image (its kernel, and its
initramfs with this test's files appended as a second archive); /boot and
a download with apt-get into ~/.cache/pandagpm-test. Without any, the tests
are skipped. Every QEMU started here is killed, whatever happens.
"""

import glob
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

# The kernel's text with nokaslr, as every generic image boots.
KERNEL_TEXT = 0xffffffff81000000

pytestmark = pytest.mark.e2e

_gpm = pytest.importorskip("pandagpm._gpm")

QEMU = shutil.which("qemu-system-x86_64")
RAM_SIZE = 512 << 20
HC_ITERS = 1000
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "pandagpm-test"

# A guest program with its CPUID at 0x10000000 (see gpm/abi.h): looks up
# the channel "hcbench", starts it, does HC_ITERS lookups (timed by the
# host), reads one message into a write-touched page and echoes it, then
# tries to read into a page it has only read (the zero page), reports that
# result, and exits with the channel id.
HC_ASM = r"""
    .intel_syntax noprefix
    .set MAGIC, 0x1337c0d3
    .section .gpmhc, "ax", @progbits
hc:
    cpuid
    ret

    .section .rodata
    .balign 4096
name:
    .ascii "hcbench"

    .bss
    .balign 4096
bufA: .skip 4096
bufB: .skip 4096
bufC: .skip 4096

    .text
    .globl _start
_start:
    mov al, byte ptr [rip + name]      /* fault the name's page in */
    mov eax, MAGIC
    mov ebx, 7
    xor ecx, ecx
    lea rdx, [rip + name]
    mov edi, 7
    call hc
    mov r12, rax
    mov eax, MAGIC
    mov ebx, 1
    mov rcx, r12
    xor edx, edx
    xor edi, edi
    call hc
    mov r13d, ITERS
1:
    mov eax, MAGIC
    mov ebx, 7
    xor ecx, ecx
    lea rdx, [rip + name]
    mov edi, 7
    call hc
    dec r13d
    jnz 1b
    mov byte ptr [rip + bufA], 1       /* write-touch bufA */
    mov eax, MAGIC
    mov ebx, 3
    mov rcx, r12
    lea rdx, [rip + bufA]
    mov edi, 64
    call hc
    mov r14, rax
    mov eax, MAGIC
    mov ebx, 4
    mov rcx, r12
    lea rdx, [rip + bufA]
    mov rdi, r14
    call hc
    mov al, byte ptr [rip + bufB]      /* read-touch only: zero page */
    mov eax, MAGIC
    mov ebx, 3
    mov rcx, r12
    lea rdx, [rip + bufB]
    mov edi, 64
    call hc
    mov qword ptr [rip + bufC], rax
    mov eax, MAGIC
    mov ebx, 4
    mov rcx, r12
    lea rdx, [rip + bufC]
    mov edi, 8
    call hc
    mov rdi, r12
    mov eax, 60
    syscall
"""

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /tmp
/bin/busybox mount -t proc proc /proc
echo BOOTED
/hc
echo "HC $?"
echo READY
while :; do /bin/busybox sleep 1; done
"""


def _find_kernel():
    env = os.environ.get("GPM_TEST_KERNEL")
    if env and os.path.exists(env):
        return env
    pats = ["/boot/vmlinuz-*-amd64",
            str(CACHE / "k/boot/vmlinuz-*")]
    for pat in pats:
        hits = sorted(glob.glob(pat, recursive=True))
        if hits:
            return hits[-1]
    return _apt_extract("linux-image-6.1.0-*-amd64", "k",
                        "k/boot/vmlinuz-*")


def _find_busybox():
    env = os.environ.get("GPM_TEST_BUSYBOX")
    if env and os.path.exists(env):
        return env
    for cand in [shutil.which("busybox"), str(CACHE / "b/bin/busybox")]:
        if cand and os.path.exists(cand) and _is_static(cand):
            return cand
    return _apt_extract("busybox-static", "b", "b/bin/busybox")


def _is_static(path):
    """Whether an ELF has no program interpreter (no PT_INTERP)."""
    data = Path(path).read_bytes()[:65536]
    return data[:4] == b"\x7fELF" and b"ld-linux" not in data


def _apt_extract(pattern, sub, result_glob):
    """apt-get download the newest package matching pattern; extract it."""
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        if "*" in pattern:
            out = subprocess.run(["apt-cache", "search", "--names-only",
                                  "^" + pattern.replace("*", ".*") + "$"],
                                 capture_output=True, text=True, timeout=60)
            names = sorted(l.split()[0] for l in out.stdout.splitlines()
                           if "unsigned" not in l and "dbg" not in l)
            if not names:
                return None
            pattern = names[-1]
        subprocess.run(["apt-get", "download", pattern], cwd=CACHE,
                       check=True, capture_output=True, timeout=600)
        deb = sorted(CACHE.glob(pattern.split("=")[0] + "_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / sub)],
                       check=True, timeout=300)
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    hits = sorted(glob.glob(str(CACHE / result_glob)))
    return hits[-1] if hits else None


def _newc(entries):
    """A newc cpio archive of (name, mode, data) entries."""
    out = bytearray()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08x" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return bytes(out)


def _base_from_image():
    """(kernel, initrd bytes) of the generic image, or None."""
    try:
        from pandagpm import image
        info = image.get_image("x86_64", progress=False)
        return str(info.kernel), Path(info.initrd).read_bytes()
    except Exception:  # noqa: BLE001 - any failure means: fall back
        return None


def _base_standalone():
    """(kernel, initrd bytes with busybox), or None."""
    kernel = _find_kernel()
    busybox = _find_busybox()
    if not kernel or not busybox:
        return None
    bb = Path(busybox).read_bytes()
    return kernel, _newc([("bin", 0o40755, b""), ("proc", 0o40755, b""),
                          ("dev", 0o40755, b""),
                          ("bin/busybox", 0o100755, bb),
                          ("bin/sh", 0o100755, bb)])


@pytest.fixture(scope="module")
def guest_files(tmp_path_factory):
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 not installed")
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the test guest program")
    base = None
    if not os.environ.get("GPM_TEST_KERNEL"):
        base = _base_from_image()
    base = base or _base_standalone()
    if base is None:
        pytest.skip("no kernel or busybox-static available")
    kernel, initrd = base
    d = tmp_path_factory.mktemp("gdbhost")
    (d / "hc.S").write_text(HC_ASM.replace("ITERS", str(HC_ITERS)))
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie",
                    "-Wl,--section-start=.gpmhc=0x10000000",
                    "-o", str(d / "hc"), str(d / "hc.S")], check=True)
    # A second archive after the first (zero padding to 4 bytes): the
    # kernel unpacks both, later files replacing earlier ones.
    overlay = _newc([("proc", 0o40755, b""),
                     ("init", 0o100755, INIT.encode()),
                     ("hc", 0o100755, (d / "hc").read_bytes())])
    initrd += b"\0" * (-len(initrd) % 4) + overlay
    (d / "initrd.cpio").write_bytes(initrd)
    return kernel, str(d / "initrd.cpio")


def _die_with_parent():
    """In the child: SIGKILL it when the test process dies, however."""
    import ctypes
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class Vm:
    """One QEMU process with a gdbstub socket and a shared RAM file."""

    def __init__(self, kernel, initrd):
        self.dir = tempfile.mkdtemp(prefix="gpm-gdbhost-")
        self.sock = os.path.join(self.dir, "gdb.sock")
        self.ram = os.path.join(self.dir, "ram")
        self.log = os.path.join(self.dir, "console.log")
        cmd = [QEMU, "-accel", "tcg", "-smp", "1", "-m", "512M",
               "-object", "memory-backend-file,id=mem,size=512M,"
               f"mem-path={self.ram},share=on",
               "-machine", "pc,memory-backend=mem",
               "-nic", "none", "-display", "none", "-monitor", "none",
               "-no-reboot", "-kernel", kernel, "-initrd", initrd,
               "-append", "console=ttyS0 nokaslr panic=-1 quiet",
               "-serial", f"file:{self.log}",
               "-chardev", f"socket,id=g,path={self.sock},server=on,wait=off",
               "-gdb", "chardev:g"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE,
                                     start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while not (os.path.exists(self.sock) and os.path.exists(self.ram)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace")
                self.kill()
                raise RuntimeError(f"qemu did not start: {err}")
            time.sleep(0.02)

    def console(self):
        try:
            return Path(self.log).read_text(errors="replace")
        except OSError:
            return ""

    def wait_console(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.console()
            if text in out:
                return out
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not on the console:\n{self.console()}")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def vm(guest_files):
    v = Vm(*guest_files)
    try:
        yield v
    finally:
        v.kill()
        assert v.proc.poll() is not None


def _wait(cond, timeout, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def test_hypercalls_memory_breakpoints(vm):
    mgr = _gpm.Manager()
    got = []
    done = threading.Event()

    def recv(cid, data):
        got.append(bytes(data))
        if len(got) == 2:
            done.set()

    cid = mgr.allocate_channel("hcbench", recv)
    mgr.write(cid, b"hello from the host")
    mgr.write(cid, b"must stay queued")
    host = _gpm.GdbHost(mgr, vm.sock, vm.ram, RAM_SIZE)
    host.start()
    try:
        # Time the guest's lookup loop from the host's counters.
        assert _wait(lambda: host.stats()["hypercalls"] >= 10, 90), \
            vm.console()
        t0, n0 = time.monotonic(), host.stats()["hypercalls"]
        assert _wait(lambda: host.stats()["hypercalls"] >= HC_ITERS, 60)
        t1, n1 = time.monotonic(), host.stats()["hypercalls"]
        out = vm.wait_console("READY")
        assert done.wait(60)
        st = host.stats()
        print(f"\n[measure] hypercall round trip: "
              f"{(t1 - t0) / (n1 - n0) * 1e6:.0f} us "
              f"({n1 - n0} stops); host time per stop "
              f"{st['stop_ns'] / max(st['stops'], 1) / 1e3:.0f} us, in the "
              f"core handler {st['handler_ns'] / max(st['hypercalls'], 1) / 1e3:.0f} us")
        assert f"HC {cid & 255}" in out, out[-2000:]
        assert got[0] == b"hello from the host", got
        # The read into a page the guest only read was refused: the zero
        # page was not written, and the message stayed queued.
        res = struct.unpack("<q", got[1])[0]
        assert res in (-11, -14), res
        assert mgr.pending(cid) == (len(b"must stay queued"), 1), \
            mgr.pending(cid)
        assert st["hypercalls"] >= HC_ITERS + 4, st
        assert st["hc_unhandled"] == 0, st

        # Pause: registers and memory.
        pc = host.pause()
        assert pc == host.read_reg("rip") == host.read_reg(16)
        assert host.reg_number("cr3") == 29
        cr3 = host.read_reg("cr3")
        assert cr3 & 0xfff == 0 or cr3 != 0
        rsp = host.read_reg("rsp")
        g_ns, p5_ns = host.bench_regs(200)
        print(f"[measure] one 'g': {g_ns / 1e3:.0f} us; five 'p': "
              f"{p5_ns / 1e3:.0f} us")
        # A kernel text page and the kernel stack: the page walk over the
        # RAM file agrees with QEMU's own 'm' reads.
        for addr in (pc & ~0xfff, rsp & ~0xfff):
            via_walk = host.read_virt(addr, 4096)
            via_m = host.gdb_read_mem(addr, 4096)
            assert via_walk == via_m, (
                f"page 0x{addr:x}: the walk and 'm' differ at "
                f"{next(i for i in range(4096) if via_walk[i] != via_m[i])}")
        t = time.perf_counter()
        host.gdb_read_mem(pc & ~0xfff, 4096)
        t_m = time.perf_counter() - t
        t = time.perf_counter()
        host.read_virt(pc & ~0xfff, 4096)
        t_walk = time.perf_counter() - t
        print(f"[measure] 4 KiB via 'm': {t_m * 1e6:.0f} us; via the page "
              f"walk: {t_walk * 1e6:.0f} us")
        # Kernel pages are never written: not the program's memory, so a
        # fault (never "touch and retry"); unmapped ones fault too. The
        # pause may have landed in user code (whose read-only text would
        # give EROFS), so a fixed kernel text address is used (nokaslr).
        with pytest.raises(_gpm.Error) as ei:
            host.write_virt(KERNEL_TEXT, b"\x90")
        assert ei.value.args[1] == "GPM_EFAULT"
        with pytest.raises(_gpm.Error) as ei:
            host.read_virt(0x1000, 8)
        assert ei.value.args[1] == "GPM_EFAULT"
        with pytest.raises(_gpm.Error):
            host.read_phys(RAM_SIZE, 1)
        assert len(host.read_phys(0, 4096)) == 4096

        # A breakpoint in the kernel's idle path pauses the guest again.
        # Pauses that land in user code, or a breakpoint the guest does not
        # come back to, are retried: nothing here depends on where the
        # guest happens to be or how fast it runs.
        hit = None
        deadline = time.monotonic() + 120
        while hit is None and time.monotonic() < deadline:
            pc = host.pause()
            if pc < 0xffff800000000000:
                host.resume()
                time.sleep(0.05)
                continue
            host.add_breakpoint(pc)
            host.resume()
            hit = host.wait_paused(10)
            host.remove_breakpoint(pc)
        assert hit == pc
        before = host.stats()
        host.resume()
        assert host.stats()["steps"] >= before["steps"]
        time.sleep(0.3)
        assert host.stats()["running"]
        assert host.wait_paused(0.2) is None
    finally:
        host.close()
    assert host.closed
    with pytest.raises(_gpm.Error):
        host.pause()
    # Detached: the guest keeps running without the host.
    time.sleep(0.2)
    assert vm.proc.poll() is None


def test_target_gone(vm):
    host = _gpm.GdbHost(None, vm.sock, vm.ram, RAM_SIZE, timeout_ms=2000)
    host.start()
    host.pause()
    host.resume()
    vm.kill()
    t = time.monotonic()
    with pytest.raises(_gpm.Error) as ei:
        host.pause()
    assert ei.value.args[1] in ("GPM_ECONNRESET", "GPM_ETIMEDOUT")
    assert time.monotonic() - t < 30
    assert not host.stats()["connected"]
    host.close()


def test_connect_refused(tmp_path):
    host = _gpm.GdbHost(None, str(tmp_path / "nothing.sock"),
                        timeout_ms=200)
    with pytest.raises(_gpm.Error) as ei:
        host.start()
    assert ei.value.args[1] in ("GPM_ETIMEDOUT", "GPM_ECONNRESET")
    host.close()
