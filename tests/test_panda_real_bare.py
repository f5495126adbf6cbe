"""The guest library's hypercall trapped by real PANDA, on every target
with a bare-metal board: aarch64 and arm (QEMU's ``virt``), mipsel,
mips64el, mips and mips64 (``malta``; both byte orders, o32 and n64).

tests/panda/bare/hc_bare (tests/panda_guest.py builds and boots it) calls
the guest library's real ``gpm_hc()`` and stub (guest/lib/arch/<arch>.c:
``msr S0_0_c5_c0_0, xzr`` on AArch64, ``mcr p7, 0, r0, c0, c0, 0`` in ARM
state on arm, ``movz $zero, $zero, $zero`` on MIPS, mips_hc.h) with no
Linux image, and prints each raw result on the board's UART:

  * without plugins the trap is PANDA's hypercall and nothing answers, so
    every result is the magic the guest put in x0/r0/v0, and the program
    carries on after the trap (the instruction neither faults nor skips);
  * with ``-panda guest_plugin_manager:no_inject=true`` our plugin, built
    in that tree by PANDA's own rules, reads magic, op, channel and both
    arguments from the arch's registers (regs_arm.c, regs_mips.c, in the
    numbering of csrc/core/arch.c; the MIPS arch from TARGET_MIPS64 and
    TARGET_WORDS_BIGENDIAN), reads the channel names from guest memory
    (MMU off or kseg0: unmapped) and writes each answer as the guest
    word's value (``00000000ffffffda`` on 32-bit, ``ffffffffffffffda`` on
    64-bit guests);
  * with gpm_test_host (tests/panda/host_plugin) asking for x86_64's
    etc_count and hello, both are refused by name, the message naming
    both arches, and get no channel.

Skips, saying why, when PANDA has no build for the target (``make
panda-all`` builds them all) or the cross compiler is missing. Marked
``panda_real``; each run takes about a second.
"""

import pytest

import panda_guest  # tests/panda_guest.py

pytestmark = [pytest.mark.panda_real,
              pytest.mark.parametrize("arch", sorted(panda_guest.BOARDS))]


@pytest.fixture
def panda(arch):
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


def test_wrong_arch_plugin_refused(arch, panda, hc_bare, tmp_path):
    got, refusals = panda_guest.bare_refusal(panda, arch, hc_bare, tmp_path)
    assert got["etc_count_chan"] == "0" and got["hello_chan"] == "0"
    assert refusals, got
    word = panda_guest.BOARDS[arch][3]
    assert "is built for x86_64 (ELF machine 62, 64-bit)" in refusals[0]
    assert f"but the guest is {arch} (ELF machine" in refusals[0]
    assert f", {word}-bit)" in refusals[0]
