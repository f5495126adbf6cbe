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

Skips, saying why, when PANDA has no build for the target or the cross
compiler is missing. Marked ``panda_real``. Each PANDA run is bounded
(the program prints within a second or two under TCG).
"""

import os
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


def run_bare(inst, arch, program, panda_args=()):
    """Boots @program under PANDA until it prints DONE; returns
    (results {name: value}, PANDA's whole output)."""
    argv = [str(inst.system_binary(arch)), "-L", str(inst.bios_dir()),
            "-machine", "virt", "-cpu", ARCHES[arch]["cpu"], "-m", "128M",
            "-nodefaults", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-kernel", str(program), *panda_args]
    env = dict(os.environ, PANDA_DIR=f"{inst.build}/")
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
