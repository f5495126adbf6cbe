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
    exchange of tests/test_panda_real_i386.py (etc_count, hello);
  * big-endian Linux: a mips Malta kernel built from Debian's
    linux-source-6.1 (scripts/build-be-kernel.sh, when cached), our own
    init and the big-endian daemon; the same exchange.

Skips, saying why, when PANDA has no build for the target or the cross
compiler is missing. Marked ``panda_real``.
"""

import os
import subprocess
import time

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


# Big-endian Linux under PANDA: no Debian image exists, so the kernel is
# built from Debian's linux-source-6.1 with gcc-mips-linux-gnu
# (scripts/build-be-kernel.sh, cached) and the initramfs is ours: a tiny
# init (tests/panda/beinit/init.c), the big-endian daemon and an /etc of
# three files. The init starts the daemon; gpm_test_host loads etc_count
# and hello through the C API.

BE_INIT = panda_guest.ROOT / "tests" / "panda" / "beinit" / "init.c"
BE_ETC = {"passwd": b"root:x:0:0:root:/:/init\n", "group": b"root:x:0:\n",
          "hostname": b"pandagpm-be\n"}


@pytest.fixture
def be_kernel(arch):
    if arch != "mips":
        pytest.skip("the big-endian Linux test runs on mips (o32)")
    from pandagpm.image import cache_dir
    found = sorted((cache_dir() / "kernels").glob("mips-malta-*/vmlinux"))
    if not found:
        pytest.skip("no big-endian MIPS kernel cached: "
                    "scripts/build-be-kernel.sh builds one from Debian's "
                    "linux-source-6.1 (about 17 CPU-minutes)")
    return found[-1]


# Measured: about 1 run in 3 the plugin's first GET_CHANNEL answers
# EFAULT (a retry in the guest succeeds). Under PANDA the host reads guest
# memory through QEMU's MIPS TLB only (cpu_memory_rw_debug), and the
# software-refilled TLB may have dropped the page of the name the guest
# just touched; the same can happen on the mipsel image. Fixing it needs a
# page-table walk in the PANDA glue for MIPS (docs/arch.md).
@pytest.mark.xfail(reason="MIPS under PANDA: guest reads go through QEMU's "
                   "TLB only; an evicted page gives EFAULT", strict=False)
def test_big_endian_linux_exchange(arch, panda, be_kernel, tmp_path):
    build = panda_guest.guest_build(arch)
    init = tmp_path / "init"
    subprocess.run([panda_guest.BOARDS[arch][2], "-std=gnu11", "-O2",
                    "-Wall", "-Wextra", "-Werror", "-static", "-o",
                    str(init), str(BE_INIT)], check=True, timeout=120)
    initrd = tmp_path / "be.cpio"
    initrd.write_bytes(panda_guest.cpio_newc(
        [("init", 0o100755, init.read_bytes()), ("gpm", 0o040755, b""),
         ("gpm/guest_daemon", 0o100755,
          (build / "guest_daemon").read_bytes()),
         ("etc", 0o040755, b"")]
        + [(f"etc/{n}", 0o100644, d) for n, d in BE_ETC.items()]))
    panda_dir = panda_guest.build_host_plugin(panda, arch, tmp_path)
    results = tmp_path / "results.txt"
    argv = [str(panda.system_binary(arch)), "-L", str(panda.bios_dir()),
            "-machine", "malta", "-cpu", "24Kf", "-m", "256M",
            "-nodefaults", "-display", "none", "-net", "none",
            "-no-reboot", "-kernel", str(be_kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 rdinit=/init panic=-1",
            "-serial", f"file:{tmp_path / 'console.log'}",
            "-monitor", "none",
            "-panda", f"guest_plugin_manager:no_inject=true,"
                      f"plugin_dir={build}",
            "-panda", f"gpm_test_host:out={results},"
                      f"number={panda_guest.HELLO_NUMBER}"]
    log = tmp_path / "panda.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT,
                                env=dict(os.environ,
                                         PANDA_DIR=f"{panda_dir}/"))
        try:
            deadline = time.monotonic() + 120
            while not {"etc_count", "hello_3"} <= set(
                    panda_guest.read_results(results)):
                text = log.read_text(errors="replace")
                assert proc.poll() is None, text[-3000:]
                # Both plugins ended without their results: fail now.
                assert not ("etc_count exited" in text
                            and "hello exited" in text
                            and "etc_count" not in panda_guest.read_results(
                                results)), text[-2000:]
                assert time.monotonic() < deadline, (
                    log.read_text()[-2000:]
                    + (tmp_path / "console.log").read_text()[-2000:])
                time.sleep(0.5)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    panda_guest.check_exchange(panda_guest.read_results(results), len(BE_ETC))
    assert "guest daemon ready" in log.read_text()
