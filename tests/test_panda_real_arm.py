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

import pytest

import panda_guest  # tests/panda_guest.py

ARCHES = ("aarch64", "arm")

pytestmark = [pytest.mark.panda_real,
              pytest.mark.parametrize("arch", ARCHES)]


@pytest.fixture
def panda(arch):
    """The PANDA build of @arch (a pandagpm.pypanda.PandaInstall)."""
    return panda_guest.panda_install(arch)


@pytest.fixture
def hc_bare(arch):
    return panda_guest.build_bare(arch)


def test_trap_without_plugin_leaves_registers(arch, panda, hc_bare):
    results, text = panda_guest.run_bare(panda, arch, hc_bare)
    panda_guest.check_untouched(results, text)


def test_guest_plugin_manager_answers(arch, panda, hc_bare):
    results, text = panda_guest.run_bare(panda, arch, hc_bare, [
        "-panda", "guest_plugin_manager:no_inject=true"])
    panda_guest.check_answers(results, text, arch)


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
    got, refusals = panda_guest.bare_refusal(panda, arch, hc_bare, tmp_path)
    assert got["etc_count_chan"] == "0" and got["hello_chan"] == "0"
    assert refusals, got
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
