"""The guest architectures the end-to-end suites run on.

``PANDAGPM_TEST_ARCHES`` (comma-separated; default every arch with a
generic image: x86_64, aarch64, arm, i386, mipsel, mips64el) picks
them. An arch whose tools are missing (its QEMU, its cross compiler) is
skipped with the reason, unless
``PANDAGPM_REQUIRE_ARCHES=1`` (CI sets it), which turns that into a
failure: CI must not pass by skipping an arch.

Use ``arch_params()`` as a module-scoped fixture's ``params`` and call
``require(arch)`` in the fixture. Suites beyond the per-arch acceptance
set (the loader's hostile and fault tests) use ``arch_params(extended=
True)``: they run on x86_64 only unless ``PANDAGPM_FULL_MATRIX=1``
(``make test-arch-matrix`` sets it), which keeps CI inside its budget.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ALL_ARCHES = ("x86_64", "aarch64", "arm", "i386", "mipsel", "mips64el")

#: What each arch needs on the host: its QEMU and its guest compiler.
_TOOLS = {
    "x86_64": ("qemu-system-x86_64", "musl-gcc"),
    "aarch64": ("qemu-system-aarch64", "aarch64-linux-gnu-gcc"),
    "arm": ("qemu-system-arm", "arm-linux-gnueabihf-gcc"),
    "i386": ("qemu-system-i386", "i686-linux-gnu-gcc"),
    "mipsel": ("qemu-system-mipsel", "mipsel-linux-gnu-gcc"),
    "mips64el": ("qemu-system-mips64el", "mips64el-linux-gnuabi64-gcc"),
}


def selected():
    """The arches to test, in the order given."""
    raw = os.environ.get("PANDAGPM_TEST_ARCHES", ",".join(ALL_ARCHES))
    arches = [a.strip() for a in raw.split(",") if a.strip()]
    unknown = [a for a in arches if a not in _TOOLS]
    if unknown:
        raise ValueError(f"PANDAGPM_TEST_ARCHES: unknown arch {unknown}; "
                         f"known: {', '.join(ALL_ARCHES)}")
    return arches


def arch_params(extended=False):
    """pytest params, one per selected arch, with the arch as its id.

    ``extended``: a suite outside the per-arch acceptance set; only the
    first selected arch unless PANDAGPM_FULL_MATRIX=1.
    """
    arches = selected()
    if extended and os.environ.get("PANDAGPM_FULL_MATRIX") != "1":
        arches = arches[:1]
    return [pytest.param(a, id=a) for a in arches]


def missing_tools(arch):
    return [t for t in _TOOLS[arch] if shutil.which(t) is None]


def require(arch):
    """Skips (or, under PANDAGPM_REQUIRE_ARCHES=1, fails) without the
    tools ``arch`` needs."""
    missing = missing_tools(arch)
    if not missing:
        return
    why = (f"{arch} guests need {' and '.join(missing)} "
           "(scripts/install-system-deps.sh installs them)")
    if os.environ.get("PANDAGPM_REQUIRE_ARCHES") == "1":
        pytest.fail(why)
    pytest.skip(why)


def guest_build(arch):
    """guest/build/<arch>, built (daemon, plugins, testprogs) if needed."""
    for d in ("guest", "guest/testprogs"):
        r = subprocess.run(["make", "-s", "-C", str(ROOT / d),
                            f"GUEST_ARCH={arch}"],
                           capture_output=True, text=True)
        assert r.returncode == 0, \
            f"make -C {d} GUEST_ARCH={arch} failed:\n{r.stdout}{r.stderr}"
    return ROOT / "guest" / "build" / arch
