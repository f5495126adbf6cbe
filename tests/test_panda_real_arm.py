"""PANDA's ARM targets on the ARM generic images.

``panda-system-aarch64`` and ``panda-system-arm`` (``make panda-ci``) boot
the aarch64 and arm images (pandagpm.image). The bare-metal hypercall
tests of these targets are tests/test_panda_real_bare.py's.

  * with the cross-built daemon appended to the initramfs and started
    from the root shell (no injector on ARM yet), gpm_test_host
    (tests/panda/host_plugin) loads etc_count and hello: the count equals
    ``ls -A /etc | wc -l`` in the guest and hello's messages and number
    go both ways;
  * ``pandagpm.pypanda.Panda(generic=arch, osi=False)``: PANDA's own root
    snapshot of the image, ``revert_sync("root")`` and the serial console.

Shares tests/panda_guest.py with the other targets' suites. Skips, saying
why, when PANDA has no build for the target, the cross compiler is
missing or no image of the arch is cached. Marked ``panda_real``. Every
wait is bounded (the ARM images boot to their shell in about 16 s under
PANDA).
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


# --------------------------------------------------------------------------
# A real exchange on the ARM generic image (pandagpm.image), no injector
# (tests/panda_guest.py): the cross-built guest daemon is put into the
# initramfs and started from the root shell; gpm_test_host
# (tests/panda/host_plugin) loads etc_count and hello through
# guest_plugin_manager's C API.


@pytest.fixture
def arm_image(arch):
    return panda_guest.cached_image(arch)


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
