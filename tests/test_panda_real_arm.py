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

The image tests share tests/panda_guest.py with the other targets'
suites. Skips, saying why, when PANDA has no build for the target, the
cross compiler is missing or no image of the arch is cached. Marked
``panda_real``. Every wait is bounded; the whole file took about 53 s
(the ARM images boot to their shell in about 16 s under PANDA).
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import panda_guest  # tests/panda_guest.py

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
    return panda_guest.panda_install(arch)


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
# A real exchange on the ARM generic image (pandagpm.image), no injector
# (tests/panda_guest.py): the cross-built guest daemon is put into the
# initramfs and started from the root shell; gpm_test_host
# (tests/panda/host_plugin) loads etc_count and hello through
# guest_plugin_manager's C API.


@pytest.fixture
def arm_image(arch):
    return panda_guest.cached_image(arch)


def test_wrong_arch_plugin_refused(arch, panda, hc_bare, tmp_path):
    """guest_plugin_manager on an ARM target refuses x86_64 binaries by
    name, naming both arches, and creates no channel for them."""
    x86 = ROOT / "guest" / "build" / "x86_64"
    if not (x86 / "etc_count").is_file():
        if shutil.which("musl-gcc") is None:
            pytest.skip("no x86_64 guest build and no musl-gcc")
        panda_guest.make(["-C", str(ROOT / "guest")], "x86_64 guest build")
    panda_dir = panda_guest.build_host_plugin(panda, arch, tmp_path)
    results = tmp_path / "results.txt"
    _, text = run_bare(panda, arch, hc_bare, [
        "-panda", f"guest_plugin_manager:no_inject=true,plugin_dir={x86}",
        "-panda", f"gpm_test_host:out={results}"], panda_dir=panda_dir)
    got = panda_guest.read_results(results)
    assert got["etc_count_chan"] == "0" and got["hello_chan"] == "0"
    refusals = [ln for ln in text.splitlines()
                if "add_guest_plugin(etc_count)" in ln]
    assert refusals, text
    assert "x86_64" in refusals[0] and f"guest is {arch}" in refusals[0]


def test_linux_exchange_without_injection(arch, panda, arm_image, tmp_path):
    got, want = panda_guest.linux_exchange(panda, arch, arm_image, tmp_path)
    panda_guest.check_exchange(got, want)


# --------------------------------------------------------------------------
# pandagpm.pypanda.Panda(generic=<arm arch>): the pypanda factory on the
# ARM images (PANDA's own root snapshot, revert, the serial console).


def test_pypanda_factory(arch, panda, arm_image):
    got = panda_guest.pypanda_factory(arch)
    assert got["uname"] == {"aarch64": "aarch64", "arm": "armv7l"}[arch]
    assert int(got["etc"]) > 0
