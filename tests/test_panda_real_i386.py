"""PANDA's i386 target: the guest library's CPUID hypercall, trapped for real.

``panda-system-i386`` (``make panda PANDA_TARGETS=i386-softmmu``, or
``make panda-ci``) boots pandagpm's i386 generic image (the
686-pae kernel, ``-machine pc -cpu qemu32``). The guest daemon and
plugins are cross-built with i686-linux-gnu-gcc (guest/lib/arch/i386.c:
``cpuid; ret`` at GPM_HC_ADDR_I386, magic in EAX); PANDA's
``guest_hypercall`` callback (target/i386/misc_helper.c, shared with
x86_64) reaches guest_plugin_manager, which reads EAX, EBX, ECX, EDX and
EDI through regs_x86.c's 32-bit map (the hardware order is GDB's) and
writes the result to EAX, as a 32-bit value.

  * x86_64 binaries in ``plugin_dir`` are refused by name, the message
    naming both arches (x86_64, ELF machine 62, and i386, 3), and get no
    channel;
  * with the daemon appended to the image's initramfs and started from
    the root shell (tests/panda_guest.py; no injector under PANDA on
    i386 yet), gpm_test_host loads etc_count and hello through the C API:
    the count equals ``ls -A /etc | wc -l`` in the guest and hello's
    messages and number go both ways;
  * ``pandagpm.pypanda.Panda(generic="i386", osi=False)``: PANDA's own
    root snapshot of the image, ``revert_sync("root")`` and the console.

Skips, saying why, when PANDA has no i386 build, the cross compiler is
missing or no i386 image is cached. Marked ``panda_real``.
"""

import shutil

import pytest

import panda_guest  # tests/panda_guest.py

ARCH = "i386"

pytestmark = pytest.mark.panda_real


@pytest.fixture
def panda():
    return panda_guest.panda_install(ARCH)


@pytest.fixture
def img():
    return panda_guest.cached_image(ARCH)


@pytest.fixture
def cross():
    if shutil.which("i686-linux-gnu-gcc") is None:
        pytest.skip("i686-linux-gnu-gcc not found "
                    "(scripts/install-system-deps.sh)")


def test_wrong_arch_plugin_refused(panda, img, tmp_path):
    x86 = panda_guest.x86_64_build()
    got, refusals = panda_guest.refusal_lines(panda, ARCH, img, tmp_path, x86)
    assert got["etc_count_chan"] == "0" and got["hello_chan"] == "0"
    assert refusals, got
    assert "x86_64 (ELF machine 62" in refusals[0]
    assert "guest is i386 (ELF machine 3, 32-bit)" in refusals[0]


def test_linux_exchange_without_injection(panda, img, cross, tmp_path):
    got, want = panda_guest.linux_exchange(panda, ARCH, img, tmp_path)
    panda_guest.check_exchange(got, want)


def test_pypanda_factory(panda, img):
    got = panda_guest.pypanda_factory(ARCH)
    assert got["uname"] == "i686"
    assert int(got["etc"]) > 0
