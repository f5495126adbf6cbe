"""PANDA's ARM targets: the guest library's hypercall, trapped for real.

``panda-system-aarch64`` and ``panda-system-arm`` (``make panda
PANDA_TARGETS=x86_64-softmmu,aarch64-softmmu,arm-softmmu``) boot
tests/panda/bare/hc_bare on QEMU's ``virt`` machine: a bare-metal program
(no Linux image needed) that calls the guest library's real ``gpm_hc()``
and stub (guest/lib/arch/<arch>.c: ``msr S0_0_c5_c0_0, xzr`` on AArch64,
``mcr p7, 0, r0, c0, c0, 0`` in ARM state on arm) and prints each raw
result on the UART. Two runs per arch:

  * without plugins: the trap is PANDA's hypercall and nothing answers,
    so every result is the magic the guest put in x0/r0, and the program
    carries on after the trap (the instruction neither faults nor skips);
  * with ``-panda guest_plugin_manager:no_inject=true``: our plugin, built
    in that tree by PANDA's own rules, loads on the target, reads magic,
    op, channel and both arguments from x0-x4 / r0-r4 (regs_arm.c, in the
    numbering of csrc/core/arch.c), reads the channel names from guest
    memory (the MMU is off: virtual = physical) and writes each answer to
    x0 / r0, zero-extended from the guest's word size.

Then, with gpm_test_host (tests/panda/host_plugin) built for the target:
  * x86_64 binaries in ``plugin_dir`` are refused by name, the message
    naming both arches, and get no channel;
  * on the aarch64 / arm generic image (pandagpm.image, built on branch
    img), with the cross-built daemon appended to the initramfs and
    started from the root shell (no injector on ARM yet), etc_count and
    hello run: the count equals ``ls -A /etc | wc -l`` in the guest and
    hello's messages and number go both ways;
  * ``pandagpm.pypanda.Panda(generic=arch, osi=False)``: PANDA's own root
    snapshot of the image, ``revert_sync("root")`` and the serial console.

Skips, saying why, when PANDA has no build for the target, the cross
compiler is missing or no image of the arch is cached. Marked
``panda_real``. Every wait is bounded; the whole file took about 53 s
(the ARM images boot to their shell in about 16 s under PANDA).
"""

import os
import sys
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BARE = ROOT / "tests" / "panda" / "bare"
MAGIC = 0x1337C0D3
RUN_TIMEOUT = 120.0

ARCHES = {
    "aarch64": dict(cpu="cortex-a57", cc="aarch64-linux-gnu-gcc", word=64),
    "arm": dict(cpu="cortex-a15", cc="arm-linux-gnueabihf-gcc", word=32),
}

pytestmark = [pytest.mark.panda_real,
              pytest.mark.parametrize("arch", sorted(ARCHES))]


@pytest.fixture
def panda(arch):
    """The PANDA build of @arch (a pandagpm.pypanda.PandaInstall)."""
    from pandagpm.pypanda import PandaNotFound, find_panda
    try:
        inst = find_panda(arch)
    except PandaNotFound as err:
        pytest.skip(str(err))
    if not (inst.plugin_dir(arch) / "panda_guest_plugin_manager.so").is_file():
        pytest.skip(f"{inst.tree} has no panda_guest_plugin_manager.so for "
                    f"{arch} (make panda builds it)")
    return inst


@pytest.fixture
def hc_bare(arch):
    if shutil.which(ARCHES[arch]["cc"]) is None:
        pytest.skip(f"{ARCHES[arch]['cc']} not found "
                    "(scripts/install-system-deps.sh)")
    r = subprocess.run(["make", "-C", str(BARE), f"ARCH={arch}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning:" not in r.stdout + r.stderr
    return BARE / "build" / arch / "hc_bare"


def run_bare(inst, arch, program, panda_args=(), panda_dir=None):
    """Boots @program under PANDA until it prints DONE; returns
    (results {name: value}, PANDA's whole output). @panda_dir: PANDA_DIR
    (where extra plugins are), default the build's."""
    argv = [str(inst.system_binary(arch)), "-L", str(inst.bios_dir()),
            "-machine", "virt", "-cpu", ARCHES[arch]["cpu"], "-m", "128M",
            "-nodefaults", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-kernel", str(program), *panda_args]
    env = dict(os.environ, PANDA_DIR=f"{panda_dir or inst.build}/")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    out = b""
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while b"DONE" not in out:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no DONE from {argv[0]} in "
                                   f"{RUN_TIMEOUT} s: {out[-2000:]!r}")
            chunk = proc.stdout.read()
            if chunk:
                out += chunk
            elif proc.poll() is not None:
                raise RuntimeError(f"PANDA exited with {proc.returncode}: "
                                   f"{out[-2000:]!r}")
            else:
                time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    text = out.decode(errors="replace")
    results = {m.group(1): int(m.group(2), 16) for m in
               re.finditer(r"^(\w+)=([0-9a-f]{16})\r?$", text, re.M)}
    return results, text


def test_trap_without_plugin_leaves_registers(arch, panda, hc_bare):
    results, text = run_bare(panda, arch, hc_bare)
    assert "START" in text
    assert len(results) == 6, text
    assert set(results.values()) == {MAGIC}, text


def test_guest_plugin_manager_answers(arch, panda, hc_bare):
    results, text = run_bare(panda, arch, hc_bare, [
        "-panda", "guest_plugin_manager:no_inject=true"])
    assert len(results) == 6, text
    mask = (1 << ARCHES[arch]["word"]) - 1

    def err(code):
        return code & mask

    daemon = results["get_daemon"]
    assert 1 <= daemon < 1 << 31, text
    assert results["get_unknown"] == err(-1), text
    assert 1 <= results["get_manager"] < 1 << 31, text
    assert results["get_manager"] != daemon
    assert results["start_daemon"] == 0, text
    assert results["write_unknown"] == err(-9), text
    assert results["op_99"] == err(-38), text


# --------------------------------------------------------------------------
# A real exchange on the ARM generic image (pandagpm.image), no injector:
# the cross-built guest daemon is put into the initramfs and started from
# the root shell; gpm_test_host (tests/panda/host_plugin) loads etc_count
# and hello through guest_plugin_manager's C API.

HOST_PLUGIN_SRC = ROOT / "tests" / "panda" / "host_plugin"
PROMPT = re.compile(rb"root@pandagpm:[^#\n]*# ")
BOOT_TIMEOUT = 600.0
HELLO_NUMBER = 0x2A17F00D


@pytest.fixture
def arm_image(arch):
    from pandagpm import image
    try:
        have = image.cached_images(arch)
    except Exception as err:  # an image module without this arch
        pytest.skip(f"no {arch} image support: {err}")
    if not have:
        pytest.skip(f"no cached {arch} generic image (make image ARCH={arch})")
    return have[0]


def _cpio_newc(entries):
    """A newc cpio archive of (path, mode, data) entries, with TRAILER!!!."""
    out = b""
    for ino, (name, mode, data) in enumerate(
            list(entries) + [("TRAILER!!!", 0, b"")], start=1):
        nm = name.encode() + b"\0"
        hdr = (b"070701" + b"".join(b"%08x" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nm), 0)))
        out += hdr + nm
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def _make(args, what):
    r = subprocess.run(["make", *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"{what}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"


class _Console:
    """The guest's serial console on a unix socket."""

    def __init__(self, path, proc):
        import socket
        deadline = time.monotonic() + 60
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(str(path))
                break
            except OSError:
                self.s.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PANDA did not open its serial socket")
                time.sleep(0.1)
        self.proc = proc
        self.buf = b""

    def expect(self, rx, timeout, nudge=False):
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while True:
            m = rx.search(self.buf)
            if m:
                got, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {rx.pattern!r}: {self.buf[-500:]!r}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"PANDA exited: {self.buf[-500:]!r}")
            if nudge and time.monotonic() - last > 5:
                self.s.sendall(b"\n")
                last = time.monotonic()
            self.s.settimeout(1.0)
            try:
                chunk = self.s.recv(65536)
            except OSError:
                continue
            self.buf += chunk



def _build_host_plugin(panda, arch, tmp_path):
    """gpm_test_host for @arch's target, out of the PANDA tree; returns
    the PANDA_DIR under which PANDA finds it."""
    tree = panda.tree
    target = f"{arch}-softmmu"
    panda_dir = tmp_path / "pandadir"
    plugin_dir = panda_dir / target / "panda" / "plugins"
    plugin_dir.mkdir(parents=True)
    _make(["-C", str(tree / "build" / target),
           "-f", str(tree / "panda" / "plugins" / "panda.mak"),
           "-f", str(HOST_PLUGIN_SRC / "Makefile"),
           "PLUGIN_NAME=gpm_test_host",
           f"PLUGIN_SRC_ROOT={HOST_PLUGIN_SRC.parent}",
           f"PLUGIN_SRC_DIR={HOST_PLUGIN_SRC}",
           f"PLUGIN_OBJ_DIR={tmp_path / 'obj'}",
           f"PLUGIN_TARGET_DIR={plugin_dir}",
           f"BUILD_DIR={tree / 'build'}",
           f"GPM_HEADER_DIR={ROOT / 'csrc' / 'panda'}", "all"],
          "building gpm_test_host")
    return panda_dir


def test_wrong_arch_plugin_refused(arch, panda, hc_bare, tmp_path):
    """guest_plugin_manager on an ARM target refuses x86_64 binaries by
    name, naming both arches, and creates no channel for them."""
    x86 = ROOT / "guest" / "build" / "x86_64"
    if not (x86 / "etc_count").is_file():
        if shutil.which("musl-gcc") is None:
            pytest.skip("no x86_64 guest build and no musl-gcc")
        _make(["-C", str(ROOT / "guest")], "x86_64 guest build")
    panda_dir = _build_host_plugin(panda, arch, tmp_path)
    results = tmp_path / "results.txt"
    _, text = run_bare(panda, arch, hc_bare, [
        "-panda", f"guest_plugin_manager:no_inject=true,plugin_dir={x86}",
        "-panda", f"gpm_test_host:out={results}"], panda_dir=panda_dir)
    got = dict(line.split("=", 1)
               for line in results.read_text().splitlines() if "=" in line)
    assert got["etc_count_chan"] == "0" and got["hello_chan"] == "0"
    refusals = [ln for ln in text.splitlines()
                if "add_guest_plugin(etc_count)" in ln]
    assert refusals, text
    assert "x86_64" in refusals[0] and f"guest is {arch}" in refusals[0]


def test_linux_exchange_without_injection(arch, panda, arm_image, tmp_path):
    target = f"{arch}-softmmu"
    _make(["-C", str(ROOT / "guest"), f"GUEST_ARCH={arch}"], "guest build")
    build = ROOT / "guest" / "build" / arch
    panda_dir = _build_host_plugin(panda, arch, tmp_path)
    # The image's initramfs with the daemon appended (a second cpio).
    initrd = tmp_path / "initrd.img"
    base = Path(arm_image.initrd).read_bytes()
    # The kernel looks for the next archive at a 4-byte boundary, skipping
    # zeros.
    base += b"\0" * (-len(base) % 512)
    initrd.write_bytes(base + _cpio_newc([
        ("gpm", 0o040755, b""),
        ("gpm/guest_daemon", 0o100755, (build / "guest_daemon").read_bytes()),
    ]))
    prof = arm_image.profile["qemu"]
    from pandagpm.pypanda import machine_args
    results = tmp_path / "results.txt"
    ser = tmp_path / "ser.sock"
    argv = [str(panda.system_binary(arch)), "-L", str(panda.bios_dir()),
            *machine_args(arm_image), "-m", f"{prof['ram_size'] >> 20}M",
            "-kernel", str(arm_image.kernel), "-initrd", str(initrd),
            "-append", prof["append"],
            "-serial", f"unix:{ser},server,nowait", "-monitor", "none",
            "-panda", f"guest_plugin_manager:no_inject=true,"
                      f"plugin_dir={build}",
            "-panda", f"gpm_test_host:out={results},number={HELLO_NUMBER}"]
    env = dict(os.environ, PANDA_DIR=f"{panda_dir}/")
    log = open(tmp_path / "panda.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        con = _Console(ser, proc)
        con.expect(PROMPT, BOOT_TIMEOUT, nudge=True)
        # Matched in the output only (the echoed command has no digits
        # after the '='), whatever earlier prompts are still buffered.
        con.s.sendall(b"echo ETC_COUNT=$(ls -A /etc | wc -l)\n")
        want = int(con.expect(re.compile(rb"ETC_COUNT=(\d+)\r?\n"), 120)
                   .rsplit(b"=", 1)[1])
        con.s.sendall(b"/gpm/guest_daemon\n")

        def done():
            text = results.read_text() if results.exists() else ""
            return "hello_3=" in text and "etc_count=" in text

        deadline = time.monotonic() + 300
        while not done():
            assert proc.poll() is None, (tmp_path / "panda.log").read_text()
            assert time.monotonic() < deadline, (
                results.read_text() if results.exists() else "no results")
            time.sleep(0.5)
        got = dict(line.split("=", 1)
                   for line in results.read_text().splitlines() if "=" in line)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
    assert got["etc_count"] == str(want)
    assert got["hello_1"] == "hello from the guest!"
    assert got["hello_2"] == "today's lucky number is: 3"
    assert got["hello_3"] == f"the number you sent the guest was: {HELLO_NUMBER}"


# --------------------------------------------------------------------------
# pandagpm.pypanda.Panda(generic=<arm arch>): the pypanda factory on the
# ARM images (PANDA's own root snapshot, revert, the serial console). One
# Panda per process, so it runs in a child.

PYPANDA_SCRIPT = r"""
import json, sys
from pandagpm.pypanda import Panda
panda = Panda(generic=sys.argv[1], osi=False, progress=False)
out = {}
@panda.queue_blocking
def run():
    panda.revert_sync("root")
    # A prompt the snapshot left unread would shift every answer by one:
    # read prompts until the marker's own output (not its echo) shows.
    panda.serial_console.sendline(b"echo $((40+2))GPM")
    for _ in range(3):
        if "42GPM" in panda.serial_console.expect(timeout=60):
            break
    out["uname"] = panda.run_serial_cmd("uname -m").strip()
    out["etc"] = panda.run_serial_cmd("ls -A /etc | wc -l").strip()
    panda.end_analysis()
panda.run()
print("RESULT=" + json.dumps(out), flush=True)
"""


def test_pypanda_factory(arch, panda, arm_image):
    r = subprocess.run([sys.executable, "-c", PYPANDA_SCRIPT, arch],
                       capture_output=True, text=True, timeout=600,
                       cwd=str(ROOT))
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT=")]
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-3000:]
    import json
    got = json.loads(line[0][len("RESULT="):])
    assert got["uname"] == {"aarch64": "aarch64", "arm": "armv7l"}[arch]
    assert int(got["etc"]) > 0
