"""Builds pandagpm and its private extension module pandagpm._gpm.

The extension is compiled from the host-independent core (csrc/core), the
stock-QEMU gdbstub host (csrc/qemu) and the CPython glue (csrc/python).
The PANDA glue (csrc/panda) is built inside a PANDA tree, not here.

The guest binaries (the daemon and the bundled plugins, guest/Makefile)
are built too and shipped as package data in pandagpm/guest_bin/<arch>/,
where the inventory finds them, so an installed pandagpm needs no
checkout.  x86_64 is required (musl-tools); every other arch with a
hypercall implementation in guest/lib/arch/ is added when its cross
compiler is installed.  PANDAGPM_GUEST_ARCHES="x86_64,i386" picks the
arches explicitly (each one then required).
"""

import glob
import os
import shlex
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.path.join(HERE, "guest")


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


def core_sources():
    """The host-independent core and the stock-QEMU host: the static
    library libgpmcore that the extension links (the C tests and the
    fuzzers link the same sources, built by the Makefile)."""
    found = []
    for part in ("core", "arch", "qemu"):
        found += sorted(glob.glob(os.path.join("csrc", part, "*.c")))
    return found


def glue_sources():
    """The CPython glue, the extension's own sources."""
    found = sorted(glob.glob(os.path.join("csrc", "python", "*.c")))
    # The x86_64 page-walk check that the pypanda hot path shares with the
    # PANDA plugins; it needs no PANDA headers.
    found.append(os.path.join("csrc", "panda", "gpm_panda_mem.c"))
    return found


def _guest_cross():
    """The cross-compiler prefixes of guest/toolchain.mk (their only home):
    its ``GUEST_CROSS_<arch> := <triple>-`` lines."""
    import re
    try:
        with open(os.path.join(GUEST, "toolchain.mk")) as f:
            text = f.read()
    except OSError:
        return {}
    return dict(re.findall(r"^GUEST_CROSS_(\w+) := (\S+)$", text, re.M))


# The guest compilers: musl-gcc for x86_64, Debian's cross gcc for the
# rest (GUEST_CC overrides both, as in guest/toolchain.mk).
GUEST_CROSS = _guest_cross()


def guest_compiler(arch):
    if os.environ.get("GUEST_CC"):
        return shlex.split(os.environ["GUEST_CC"])[0]
    return "musl-gcc" if arch == "x86_64" else GUEST_CROSS.get(arch, "") + "gcc"


def guest_plugin_names():
    """The daemon and the plugins named in guest/plugins/config.panda."""
    names = ["guest_daemon"]
    with open(os.path.join(GUEST, "plugins", "config.panda")) as f:
        for line in f:
            name = line.split("#", 1)[0].strip()
            if name:
                names.append(name)
    return names


def guest_arches():
    """``[(arch, required)]``: the arches whose binaries to ship."""
    chosen = os.environ.get("PANDAGPM_GUEST_ARCHES")
    if chosen:
        return [(a.strip(), True) for a in chosen.split(",") if a.strip()]
    arches = [("x86_64", True)]
    for path in sorted(glob.glob(os.path.join(GUEST, "lib", "arch", "*.c"))):
        arch = os.path.basename(path)[:-2]
        if arch not in ("x86_64", "mock") and shutil.which(
                guest_compiler(arch)):
            arches.append((arch, False))
    return arches


class build_py_with_guest(build_py):
    """build_py, plus the guest binaries as package data."""

    def run(self):
        super().run()
        if not os.path.isdir(GUEST):
            raise SystemExit(
                "pandagpm: guest/ is missing from the source tree, so the "
                "guest daemon and plugins cannot be built")
        names = guest_plugin_names()
        for arch, required in guest_arches():
            self.build_guest(arch, names, required)

    def build_guest(self, arch, names, required):
        built = os.path.join(GUEST, "build", arch)
        have_all = all(os.path.isfile(os.path.join(built, n)) for n in names)
        cc = guest_compiler(arch)
        if shutil.which(cc):
            self.announce(f"building the {arch} guest binaries with {cc}", 2)
            try:
                r = subprocess.run(["make", "-C", GUEST, f"GUEST_ARCH={arch}"],
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            except OSError as err:
                raise SystemExit("pandagpm: building the guest binaries "
                                 "needs make (Debian: apt-get install make): "
                                 f"{err}") from err
            if r.returncode != 0:
                raise SystemExit(f"pandagpm: building the {arch} guest "
                                 f"binaries failed:\n{r.stdout}")
        elif have_all:
            self.warn(f"{cc} not found: shipping the {arch} guest binaries "
                      f"already built in {built}")
        elif required:
            hint = ("apt-get install musl-tools" if arch == "x86_64" else
                    f"apt-get install gcc-{GUEST_CROSS.get(arch, '?')[:-1]}")
            raise SystemExit(
                f"pandagpm: the {arch} guest daemon and plugins are built "
                f"with {cc}, which is not installed (Debian: {hint}). "
                "They are shipped inside the package; without them "
                "load_guest_plugin() finds nothing.")
        else:
            return
        dest = os.path.join(self.build_lib, "pandagpm", "guest_bin", arch)
        self.mkpath(dest)
        for name in names:
            src = os.path.join(built, name)
            if not os.path.isfile(src):
                raise SystemExit(f"pandagpm: make left no {src}")
            self.copy_file(src, os.path.join(dest, name), preserve_mode=True)

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        names = guest_plugin_names() if os.path.isdir(GUEST) else []
        for arch, _required in guest_arches():
            dest = os.path.join(self.build_lib, "pandagpm", "guest_bin", arch)
            outputs += [os.path.join(dest, n) for n in names
                        if os.path.isfile(os.path.join(dest, n))]
        return outputs


extra_cflags = ["-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"]
extra_cflags += shlex.split(os.environ.get("GPM_EXTRA_CFLAGS", ""))

class build_ext_with_core(build_ext):
    """Builds libgpmcore first, also for a lone ``build_ext --inplace``,
    in build_ext's own temporary directory, so that builds with other
    flags (scripts/pytest-asan.sh's --build-temp) never share objects."""

    def finalize_options(self):
        super().finalize_options()
        clib = self.get_finalized_command("build_clib")
        clib.build_temp = os.path.join(self.build_temp, "clib")
        clib.build_clib = os.path.join(self.build_temp, "clib")
        self.library_dirs.insert(0, clib.build_clib)

    def run(self):
        self.run_command("build_clib")
        super().run()


core_lib = ("gpmcore", {
    "sources": core_sources(),
    "include_dirs": ["csrc/include", "csrc"],
    "cflags": pkg_config("--cflags") + extra_cflags,
    # Every object depends on every header: a changed header rebuilds all.
    "obj_deps": {"": sorted(glob.glob("csrc/*/*.h")
                            + glob.glob("csrc/include/gpm/*.h"))},
})
# The extension is relinked whenever the library's inputs change.
CORE_DEPENDS = core_lib[1]["sources"] + core_lib[1]["obj_deps"][""]

ext = Extension(
    "pandagpm._gpm",
    sources=glue_sources(),
    libraries=["gpmcore"],
    depends=CORE_DEPENDS,
    include_dirs=["csrc/include", "csrc"],
    extra_compile_args=pkg_config("--cflags") + extra_cflags,
    extra_link_args=pkg_config("--libs")
    + shlex.split(os.environ.get("GPM_EXTRA_LDFLAGS", "")),
    define_macros=[("GPM_HOST_PYTHON", "1")],
)

setup(libraries=[core_lib], ext_modules=[ext],
      cmdclass={"build_py": build_py_with_guest,
                "build_ext": build_ext_with_core})
