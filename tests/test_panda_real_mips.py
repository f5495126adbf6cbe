"""PANDA's MIPS targets: the guest library's hypercall, trapped for real.

``panda-system-mipsel``, ``-mips64el``, ``-mips`` and ``-mips64`` (``make
panda-extra-targets``, docs/panda.md) boot tests/panda/bare/hc_bare on
QEMU's Malta board: a bare-metal program (no Linux image needed) in
kseg0, calling the guest library's real ``gpm_hc()`` and stub
(guest/lib/arch/mips_hc.h: ``movz $zero, $zero, $zero``, PANDA's MIPS
hypercall, target/mips/translate.c ``gen_cond_move``), and printing each
raw result on the ISA COM1 UART. Little-endian (mipsel o32, mips64el
n64) and big-endian (mips o32, mips64 n64) builds of the same sources:

  * without plugins every result is the magic the guest put in v0 (the
    trap changes nothing and execution carries on after it);
  * with ``-panda guest_plugin_manager:no_inject=true`` our plugin, built
    in that tree by PANDA's rules, maps the target to its arch
    (regs_mips.c: byte order from TARGET_WORDS_BIGENDIAN, width from
    TARGET_MIPS64), reads magic, op, channel and both arguments from v0,
    a0-a3, reads the channel names from guest memory (kseg0) and writes
    each answer to v0 as the guest word's value (``00000000ffffffda`` on
    o32, ``ffffffffffffffda`` on n64);
  * x86_64 binaries in ``plugin_dir`` are refused by name, naming both
    arches;
  * on the mipsel and mips64el generic images, when cached, the C plugin
    exchange of tests/test_panda_real_i386.py (etc_count, hello).

Skips, saying why, when PANDA has no build for the target or the cross
compiler is missing. Marked ``panda_real``.
"""

import pytest

import panda_guest  # tests/panda_guest.py

ARCHES = ("mipsel", "mips64el", "mips", "mips64")

pytestmark = [pytest.mark.panda_real,
              pytest.mark.parametrize("arch", ARCHES)]


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
    assert "x86_64 (ELF machine 62" in refusals[0]
    word = panda_guest.BOARDS[arch][3]
    assert f"guest is {arch} (ELF machine 8, {word}-bit)" in refusals[0]


# The little-endian generic images (pandagpm.image, branch mips), no
# injector: the cross-built daemon in the initramfs, started from the
# root shell, gpm_test_host loading etc_count and hello (tests/
# panda_guest.py). Big-endian arches have no image (docs/arch.md).

@pytest.fixture
def image(arch):
    if arch in ("mips", "mips64"):
        pytest.skip(f"no {arch} generic image: Debian has no big-endian "
                    "MIPS port (docs/arch.md, Big-endian guests)")
    return panda_guest.cached_image(arch)


def test_linux_exchange_without_injection(arch, panda, image, tmp_path):
    got, want = panda_guest.linux_exchange(panda, arch, image, tmp_path)
    panda_guest.check_exchange(got, want)
