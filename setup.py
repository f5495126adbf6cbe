"""Builds pandagpm and its private extension module pandagpm._gpm.

The extension is compiled from the host-independent core (csrc/core), the
stock-QEMU gdbstub host (csrc/qemu) and the CPython glue (csrc/python).
The PANDA glue (csrc/panda) is built inside a PANDA tree, not here.
"""

import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def pkg_config(flag, package="glib-2.0"):
    """Returns pkg-config's answer as a list, or raises a clear error."""
    try:
        out = subprocess.check_output(["pkg-config", flag, package], text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(
            f"pandagpm needs {package} and pkg-config to build "
            f"(Debian: apt-get install libglib2.0-dev pkg-config): {err}"
        ) from err
    return shlex.split(out)


def sources():
    """Every C file of the core and of the two glue layers built here."""
    found = []
    for part in ("core", "qemu", "python"):
        found += sorted(glob.glob(os.path.join("csrc", part, "*.c")))
    # The x86_64 page-walk check that the pypanda hot path shares with the
    # PANDA plugins; it needs no PANDA headers.
    found.append(os.path.join("csrc", "panda", "gpm_panda_mem.c"))
    return found


extra_cflags = ["-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"]
extra_cflags += shlex.split(os.environ.get("GPM_EXTRA_CFLAGS", ""))

ext = Extension(
    "pandagpm._gpm",
    sources=sources(),
    include_dirs=["csrc/include", "csrc"],
    extra_compile_args=pkg_config("--cflags") + extra_cflags,
    extra_link_args=pkg_config("--libs")
    + shlex.split(os.environ.get("GPM_EXTRA_LDFLAGS", "")),
    define_macros=[("GPM_HOST_PYTHON", "1")],
)

setup(ext_modules=[ext])
