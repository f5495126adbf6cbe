"""Build and cache pandagpm's generic guest images.

A generic image is a Debian kernel plus a busybox initramfs, booted once
under QEMU so that a ``root`` snapshot (a quiet root shell on the serial
console) can be saved on a small qcow2 disk.  Like pypanda's generic
images, an image is named by its architecture::

    from pandagpm.image import get_image
    img = get_image("x86_64")        # builds once, then reuses the cache
    img.path, img.profile["kernel"]["symbols"]["entry_SYSCALL_64"]

Everything comes from Debian packages fetched with ``apt-get download``
(the 6.1 kernel and ``busybox-static``); nothing needs root.  At build time
the kernel's symbols are read from the guest's ``/proc/kallsyms`` (the
kernel boots with ``nokaslr``, so they are stable) and structure offsets
from the kernel's BTF; both go into ``profile.json`` next to the image,
together with the QEMU options that must be identical when the snapshot is
loaded.

Images live under ``$PANDAGPM_CACHE``, else ``$XDG_CACHE_HOME/pandagpm``,
else ``~/.cache/pandagpm``, in ``images/<arch>-<key>``, where the key
hashes the package versions, the QEMU version, the arch and
:data:`BUILDER_VERSION`.  A build happens in a temporary directory that is
renamed into place, under a per-arch lock.

Each image also carries an osi_linux kernel profile for PANDA
(``kernelinfo.conf``, see :mod:`pandagpm.kernelinfo`): ``img.kernelinfo_path``,
``img.kernelinfo_group`` and ``img.os_string`` (PANDA's ``-os``).  Images
built before it existed get the file on first use, from their cached
kernel and profile.

The ``aarch64`` and ``arm`` images (QEMU's ``virt`` board, RAM at
guest-physical 0x40000000: ``profile["qemu"]["ram_base"]``) are built
the same way; what only they need is in :mod:`pandagpm.image_arm`, and
docs/image.md says what the host needs to know about each kernel.

Command line: ``python -m pandagpm.image build [--arch x86_64] [--force]``,
``python -m pandagpm.image info [--arch x86_64] [--path | --kernelinfo]``,
``python -m pandagpm.image kernelinfo VMLINUZ KALLSYMS [--group NAME]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from . import btf as _btf
from . import initramfs as _initramfs
# The guest's users and the initramfs are pandagpm.initramfs's.
from .initramfs import GUEST_UID, GUEST_USER, HOSTNAME  # noqa: F401
from .initramfs import INIT_SCRIPT  # noqa: F401
from .initramfs import Cpio as _Cpio  # noqa: F401
from . import kernelinfo as _ki
from . import image_arm as _image_arm
from . import image_i386 as _image_i386
from . import image_mips as _image_mips

__all__ = [
    "ARCHES", "BUILDER_VERSION", "ImageError", "ImageInfo",
    "KERNELINFO_FILE", "build_image", "cache_dir", "cached_images",
    "ensure_kernelinfo", "get_image", "resolve_packages",
]

#: Bump when the builder's output changes, so caches rebuild.  (Adding
#: kernelinfo.conf did not: older images derive it on first use.)
BUILDER_VERSION = 2

#: The osi_linux kernel profile inside an image directory.
KERNELINFO_FILE = "kernelinfo.conf"



class ImageError(Exception):
    """The image could not be built or found."""


# The per-arch rows (ArchSpec, ARCHES, the profile's struct members).
from .image_arches import ARCHES, EXTRA_FIELDS, STRUCT_FIELDS  # noqa: F401
from .image_arches import ArchSpec  # noqa: F401


# The kernel file's parts (after ImageError, which they raise).
from .image_kernel import (  # noqa: E402,F401  (re-exported)
    _btf_offsets, _offset_requests, extract_vmlinux, kernel_btf)

#: x86_64 kernel text mapping base (``__START_KERNEL_map``).
_START_KERNEL_MAP = 0xFFFFFFFF80000000


# --------------------------------------------------------------------------
# Small helpers.
# --------------------------------------------------------------------------

def _say(progress: bool | Callable[[str], None], msg: str) -> None:
    if callable(progress):
        progress(msg)
    elif progress:
        print(f"[image] {msg}", file=sys.stderr, flush=True)


def _run(argv: list[str], what: str, **kw) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
    except FileNotFoundError as err:
        raise ImageError(f"{what}: {argv[0]} is not installed") from err
    if r.returncode != 0:
        raise ImageError(f"{what} failed (exit {r.returncode}): "
                         f"{' '.join(argv)}\n{(r.stderr or r.stdout).strip()}")
    return r.stdout


def cache_dir() -> Path:
    """The per-user pandagpm cache directory (not created)."""
    env = os.environ.get("PANDAGPM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pandagpm"


def _arch(arch: str) -> ArchSpec:
    try:
        return ARCHES[arch]
    except KeyError:
        raise ImageError(f"no generic image for arch {arch!r}; supported: "
                         f"{', '.join(sorted(ARCHES))}") from None


# --------------------------------------------------------------------------
# Inputs: package versions and QEMU version.
# --------------------------------------------------------------------------

def _candidate(pkg: str) -> str:
    out = _run(["apt-cache", "policy", pkg], f"apt-cache policy {pkg}")
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise ImageError(f"apt knows no installable version of {pkg}; "
                         "run `apt-get update` (as root) and try again")
    return m.group(1)


def _apt_name(spec: ArchSpec, pkg: str) -> str:
    """``pkg`` as apt must be asked for it (``name:arch`` when foreign)."""
    return f"{pkg}:{spec.debian_arch}" if spec.foreign else pkg


def _unqualified(name: str) -> str:
    return name.split(":", 1)[0]


def resolve_packages(arch: str = "x86_64") -> dict[str, dict[str, str]]:
    """Return the Debian packages an image is built from.

    ``{"kernel": {"name": ..., "version": ...}, "busybox": {...}}``.  The
    kernel is the one the ``linux-image-<arch>`` meta package of the 6.1
    series depends on (bookworm's, not backports').  For a foreign
    architecture each package of that architecture also has ``"arch"``
    (the Debian architecture), and an image whose offsets come from the
    kernel's headers also lists ``headers``, ``headers_common`` and
    ``kbuild``.
    """
    spec = _arch(arch)
    meta = _apt_name(spec, spec.kernel_meta)
    out = _run(["apt-cache", "depends", meta], f"apt-cache depends {meta}")
    names = [_unqualified(n) for n in
             re.findall(r"Depends:\s*(linux-image-\S+)", out)]
    kernel = next((n for n in names if n.startswith(spec.kernel_series)), None)
    if kernel is None:
        # The candidate may be a newer series (backports pinned); look
        # for a 6.1 version of the meta package instead.
        pol = _run(["apt-cache", "policy", meta], f"apt-cache policy {meta}")
        for ver in re.findall(r"^\s+(?:\*\*\*\s+)?(6\.1\.\S+)\s+\d+", pol,
                              re.M):
            out = _run(["apt-cache", "depends", f"{meta}={ver}"],
                       "apt-cache depends")
            names = [_unqualified(n) for n in
                     re.findall(r"Depends:\s*(linux-image-\S+)", out)]
            kernel = next((n for n in names
                           if n.startswith(spec.kernel_series)), None)
            if kernel:
                break
    if kernel is None:
        if spec.foreign and spec.debian_arch not in _run(
                ["dpkg", "--print-foreign-architectures"], "dpkg").split():
            raise ImageError(
                f"apt does not serve {spec.debian_arch} packages; run (as "
                f"root) `dpkg --add-architecture {spec.debian_arch} && "
                "apt-get update`, or scripts/install-system-deps.sh")
        raise ImageError(f"no {spec.kernel_series}* kernel found through "
                         f"{spec.kernel_meta}; run `apt-get update`")

    def pkg(name: str, qualified: bool = True) -> dict[str, str]:
        q = _apt_name(spec, name) if qualified else name
        entry = {"name": name, "version": _candidate(q)}
        if qualified and spec.foreign:
            entry["arch"] = spec.debian_arch
        return entry

    packages = {"kernel": pkg(kernel), "busybox": pkg("busybox-static")}
    if spec.offsets_from == "headers":
        release = kernel[len("linux-image-"):]
        abi = "-".join(release.split("-")[:2])    # 6.1.0-57 (of -686-pae)
        series = ".".join(abi.split(".")[:2])     # 6.1
        packages["headers"] = pkg(f"linux-headers-{release}")
        # Architecture "all" and the build machine's own: no qualifier.
        packages["headers_common"] = pkg(f"linux-headers-{abi}-common", False)
        packages["kbuild"] = pkg(f"linux-kbuild-{series}", False)
    return packages


_APT_STATE = ("/var/lib/apt/lists", "/etc/apt/preferences",
              "/etc/apt/preferences.d", "/etc/apt/sources.list",
              "/etc/apt/sources.list.d")


def _apt_fingerprint() -> str:
    """A digest of apt's state: list files and pinning, by name, size and
    modification time.  It changes whenever `apt-get update` changes what
    apt would answer."""
    h = hashlib.sha256()
    for top in _APT_STATE:
        paths = [top]
        if os.path.isdir(top):
            paths = sorted(os.path.join(top, n) for n in os.listdir(top))
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _resolve_cached(arch: str, root: Path | None) -> dict:
    """:func:`resolve_packages`, memoized on disk against apt's state.

    Asking apt-cache takes a second or more per call; a cache hit must be
    fast, so the answer is kept until apt's lists or pinning change.
    """
    memo = _images_dir(root) / f".resolved-{arch}.json"
    fp = _apt_fingerprint()
    try:
        with open(memo) as f:
            saved = json.load(f)
        if saved.get("fingerprint") == fp and saved.get("builder") == \
                BUILDER_VERSION:
            return saved["packages"]
    except (OSError, ValueError, AttributeError):
        pass
    packages = resolve_packages(arch)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(memo.name + f".{os.getpid()}")
        tmp.write_text(json.dumps({"fingerprint": fp,
                                   "builder": BUILDER_VERSION,
                                   "packages": packages}))
        os.replace(tmp, memo)
    except OSError:
        pass
    return packages


def _qemu_version(binary: str) -> str:
    out = _run([binary, "--version"], f"{binary} --version")
    return out.splitlines()[0].strip()


def _image_key(arch: str, packages: dict, qemu_version: str) -> str:
    inputs = {"builder": BUILDER_VERSION, "arch": arch,
              "packages": packages, "qemu": qemu_version}
    spec = ARCHES.get(arch)
    if spec is not None and spec.recipe_version:
        inputs["recipe"] = spec.recipe_version
    if spec is not None:
        # The command line is in the snapshot: a new one is a new image.
        inputs["append"] = spec.append
    blob = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------
# The image object.
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """A built image: a directory holding kernel, initrd, disk, profile."""

    arch: str
    path: Path
    profile: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ImageInfo":
        path = Path(path)
        try:
            with open(path / "profile.json") as f:
                profile = json.load(f)
        except (OSError, ValueError) as err:
            raise ImageError(f"{path} is not a complete image: {err}") from err
        return cls(profile["arch"], path, profile)

    @property
    def key(self) -> str:
        return self.profile["key"]

    @property
    def kernel(self) -> Path:
        return self.path / self.profile["qemu"]["kernel"]

    @property
    def initrd(self) -> Path:
        return self.path / self.profile["qemu"]["initrd"]

    @property
    def disk(self) -> Path:
        return self.path / self.profile["qemu"]["disk"]

    @property
    def profile_path(self) -> Path:
        return self.path / "profile.json"

    def symbol(self, name: str) -> int:
        """Address of a kernel symbol recorded in the profile."""
        return int(self.profile["kernel"]["symbols"][name], 16)

    def offset(self, struct_name: str, member: str) -> int:
        """Byte offset of ``struct_name.member`` recorded in the profile."""
        return int(self.profile["kernel"]["offsets"][struct_name][member])

    # -- PANDA's osi_linux --------------------------------------------------

    @property
    def kernelinfo_group(self) -> str:
        """The osi_linux ``kconf_group`` of this image's kernel."""
        osi = self.profile.get("osi_linux") or {}
        return osi.get("kconf_group") or _ki.default_group(
            self.arch, self.profile["kernel"]["release"])

    @property
    def os_string(self) -> str:
        """PANDA's ``-os`` (pypanda's ``os_version``) for this image, e.g.
        ``linux-64-pandagpm-x86_64-6.1.0-57-amd64``: syscalls2 accepts it,
        and osi_linux's default group for it is :attr:`kernelinfo_group`."""
        osi = self.profile.get("osi_linux") or {}
        return osi.get("os") or _ki.os_string_for(
            self.kernelinfo_group, _ki.arch_bits(self.arch))

    @property
    def kernelinfo_path(self) -> Path:
        """The osi_linux ``kconf_file`` holding :attr:`kernelinfo_group`.

        An image built before kernelinfo existed gets the file on first
        use (about 2 s: the kernel's BTF is read again), in the image
        directory, or in the cache's ``kernelinfo/`` if that is read-only.
        """
        return ensure_kernelinfo(self)

    def osi_linux_args(self) -> dict[str, str]:
        """``{"kconf_file": ..., "kconf_group": ...}`` for osi_linux."""
        return {"kconf_file": str(self.kernelinfo_path),
                "kconf_group": self.kernelinfo_group}

    def kernelinfo(self) -> "_ki.KernelInfo":
        """The image's kernelinfo group, made again from its kernel."""
        return _image_kernelinfo(self)


def _images_dir(root: Path | None = None) -> Path:
    return (root or cache_dir()) / "images"


def cached_images(arch: str | None = None,
                  root: Path | None = None) -> list[ImageInfo]:
    """Complete images in the cache, newest first."""
    d = _images_dir(root)
    found = []
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(".") or not (p / "profile.json").is_file():
                continue
            if arch and not p.name.startswith(arch + "-"):
                continue
            try:
                found.append(ImageInfo.load(p))
            except ImageError:
                continue
    found.sort(key=lambda i: i.profile_path.stat().st_mtime, reverse=True)
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def get_image(arch: str = "x86_64", *, progress: bool | Callable = True,
              root: Path | None = None) -> ImageInfo:
    """Return the image for ``arch``, building it if the inputs changed.

    The cache check asks apt for the current package versions (fast, no
    network).  When apt cannot tell (no apt, no lists) the newest cached
    image of the arch is used with a warning.
    """
    spec = _arch(arch)
    try:
        packages = _resolve_cached(arch, root)
        qver = _qemu_version(spec.qemu_binary)
    except ImageError as err:
        have = cached_images(arch, root)
        if have:
            _say(progress, f"warning: {err}; using cached {have[0].path}")
            return have[0]
        raise
    key = _image_key(arch, packages, qver)
    final = _images_dir(root) / f"{arch}-{key}"
    if (final / "profile.json").is_file():
        return ImageInfo.load(final)
    return build_image(arch, progress=progress, root=root,
                       _resolved=(packages, qver))


# --------------------------------------------------------------------------
# The build.
# --------------------------------------------------------------------------

def _download(spec: ArchSpec, packages: dict, dest: Path,
              progress) -> dict[str, Path]:
    debs = {}
    for role, p in packages.items():
        _say(progress, f"downloading {p['name']} {p['version']}")
        name = f"{p['name']}:{p['arch']}" if "arch" in p else p["name"]
        r = subprocess.run(["apt-get", "download",
                            f"{name}={p['version']}"],
                           cwd=dest, capture_output=True, text=True)
        if r.returncode != 0:
            raise ImageError(
                f"apt-get download {name}={p['version']} failed "
                f"(exit {r.returncode}). If apt's package lists are stale, "
                "run `apt-get update` (as root) and try again.\n"
                + r.stderr.strip())
        found = sorted(dest.glob(f"{p['name']}_*_{p['arch']}.deb"
                                 if "arch" in p else f"{p['name']}_*.deb"))
        if not found:
            raise ImageError(f"apt-get download left no {p['name']} .deb")
        debs[role] = found[-1]
    return debs


def _kallsyms(machine, names: tuple[str, ...],
              required: tuple[str, ...] = ("entry_SYSCALL_64", "current_task",
                                           "__per_cpu_offset", "init_task")
              ) -> dict[str, str]:
    awk_cond = " || ".join(f'$3 == "{n}"' for n in names)
    out = machine.run_serial_cmd(f"awk '{awk_cond}' /proc/kallsyms",
                                 timeout=60)
    syms: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in names and parts[2] not in syms:
            syms[parts[2]] = "0x" + parts[0].lstrip("0").lower().rjust(1, "0")
    missing = [n for n in required if n not in syms]
    if missing:
        raise ImageError(f"/proc/kallsyms in the guest lacks {missing}; "
                         f"got:\n{out[:2000]}")
    if int(syms[required[0]], 16) == 0:
        raise ImageError("kallsyms addresses read as zero (kptr_restrict?)")
    return syms


def _kernel_virt_to_phys(addr: int) -> int:
    return addr - _START_KERNEL_MAP


def build_image(arch: str = "x86_64", *, progress: bool | Callable = True,
                force: bool = False, root: Path | None = None,
                _resolved: tuple | None = None) -> ImageInfo:
    """Build the generic image for ``arch`` (or return the cached one).

    With ``force=True`` the image is rebuilt even if the cache holds one
    for the same inputs.  ``progress`` is True (print ``[image] ...`` on
    stderr), False, or a callable taking one message.
    """
    spec = _arch(arch)
    if _resolved is None:
        _resolved = (resolve_packages(arch), _qemu_version(spec.qemu_binary))
    packages, qver = _resolved
    key = _image_key(arch, packages, qver)
    images = _images_dir(root)
    final = images / f"{arch}-{key}"
    with _locked(images / f".{arch}.lock"):
        if (final / "profile.json").is_file() and not force:
            return ImageInfo.load(final)
        t_start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{arch}-", dir=images))
        try:
            info = _build_in(spec, packages, qver, key, work, progress)
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".old-{arch}-",
                                            dir=images))
                os.rename(final, old / "img")
                shutil.rmtree(old, ignore_errors=True)
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _say(progress, f"image ready in {time.monotonic() - t_start:.1f} s: "
                       f"{final}")
        return ImageInfo.load(final)


def _build_in(spec: ArchSpec, packages: dict, qver: str, key: str,
              work: Path, progress) -> None:
    from .qemu import QemuMachine  # the builder boots the image once

    t0 = time.monotonic()
    dl = work / "debs"
    dl.mkdir()
    debs = _download(spec, packages, dl, progress)
    _say(progress, "extracting packages")
    tree = work / "tree"
    for deb in debs.values():
        _run(["dpkg-deb", "-x", str(deb), str(tree)], f"dpkg-deb -x {deb}")
    kernels = sorted((tree / "boot").glob(spec.kernel_file + "*"))
    if not kernels:
        raise ImageError(f"no /boot/{spec.kernel_file}* in "
                         f"{packages['kernel']['name']}")
    kernel_src = kernels[-1]
    kernel_release = kernel_src.name[len(spec.kernel_file):]
    config = tree / "boot" / f"config-{kernel_release}"
    _check_config(config, spec.config_need)
    shutil.copyfile(kernel_src, work / "vmlinuz")

    kbtf = None
    if spec.offsets_from == "btf":
        _say(progress, "reading structure offsets from the kernel's BTF")
        bz = (work / "vmlinuz").read_bytes()
        kbtf = kernel_btf(bz)
        del bz
        offsets = _btf_offsets(kbtf, spec.name)
        # Checked before the boot, so a kernel osi_linux cannot describe
        # fails early; the group is made once the symbols are known.
        _ki.btf_fields(kbtf)
    else:
        _say(progress, "compiling structure offsets from the kernel's "
                       "headers")
        extra = ({"defines": _image_mips.header_defines(spec.name),
                  "includes": _image_mips.HEADER_INCLUDES}
                 if spec.name in _image_mips.ARCHES else {})
        offsets = _image_arm.offsets_from_headers(
            tree, kernel_release, spec, _offset_requests(spec.name), _run,
            **extra)

    _say(progress, "building the initramfs")
    busybox = tree / "bin" / "busybox"
    (work / "initrd.img").write_bytes(
        _initramfs.build_initramfs(busybox, packages, _run,
                                   BUILDER_VERSION))
    shutil.rmtree(tree)
    shutil.rmtree(dl)

    _run(["qemu-img", "create", "-q", "-f", "qcow2", str(work / "disk.qcow2"),
          "64M"], "qemu-img create")
    profile: dict = {
        "format": 1,
        "arch": spec.name,
        "key": key,
        "builder_version": BUILDER_VERSION,
        "packages": packages,
        "snapshot": "root",
        "qemu": {
            "binary": spec.qemu_binary,
            "version": qver,
            "machine_args": list(spec.machine_args),
            "append": spec.append,
            "ram_size": spec.ram_size,
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "disk": "disk.qcow2",
            "notes": ("Load with the same binary version, machine_args, "
                      "append, kernel, initrd and RAM size; add "
                      "-object memory-backend-file,id=mem,size=<ram_size>,"
                      "mem-path=...,share=on -machine memory-backend=mem and "
                      "the qcow2 (-drive if=none) holding the snapshot."),
        },
        "kernel": {"release": kernel_release, "offsets": offsets,
                   **({"offsets_source": spec.offsets_from}
                      if spec.foreign else {})},
        "guest": {"console": spec.console, "hostname": HOSTNAME,
                  "user": GUEST_USER, "user_uid": GUEST_UID,
                  "shell_prompt_root": f"root@{HOSTNAME}:~# ",
                  "doorbell_phys": spec.doorbell_phys,
                  "ring_phys": spec.ring_phys,
                  "ring_size": spec.ring_size},
    }
    if spec.ram_base:
        # Guest-physical address of RAM file offset 0 (absent: 0).
        profile["qemu"]["ram_base"] = spec.ram_base
    _write_profile(work, profile)

    _say(progress, "booting to save snapshot (about 10 s)")
    image = ImageInfo(spec.name, work, profile)
    t_boot = time.monotonic()
    with QemuMachine(image, snapshot=None, disk="inplace",
                     start_timeout=30) as m:
        if spec.name != "x86_64":
            # Type nothing before /init runs (see wait_for_output).
            m.wait_for_output(rb"pandagpm-init: ready", timeout=240)
        boot_s = m.wait_for_shell(timeout=180)
        boot_s = time.monotonic() - t_boot
        _say(progress, f"shell answered after {boot_s:.1f} s; "
                       "reading /proc/kallsyms")
        syms = _kallsyms(m, spec.symbols, spec.required_symbols)
        uname = m.run_serial_cmd("uname -r", check=True).strip()
        version = m.run_serial_cmd("cat /proc/version", check=True).strip()
        if spec.name == "x86_64":
            facts = _check_memory(m, syms, offsets)
        elif spec.name == "i386":
            facts = _image_i386.layout_facts(m, spec, syms, offsets)
        elif spec.name in _image_mips.ARCHES:
            facts = _image_mips.layout_facts(m, spec, syms, offsets)
        else:
            facts = _image_arm.layout_facts(m, spec, syms, offsets, kbtf)
        # Let the console and the kernel settle, then snapshot an idle
        # shell that is waiting for its next command line.
        m.run_serial_cmd("sync; echo 1 > /proc/sys/vm/drop_caches", timeout=60)
        time.sleep(1.0)
        _say(progress, "saving the root snapshot")
        t_save = time.monotonic()
        m.savevm("root")
        save_s = time.monotonic() - t_save
        snaps = m.monitor("info snapshots")
    if "root" not in snaps:
        raise ImageError(f"savevm left no root snapshot:\n{snaps}")

    _say(progress, "checking that the snapshot loads")
    image = ImageInfo(spec.name, work, profile)
    t_load = time.monotonic()
    with QemuMachine(image, snapshot="root", disk="copy") as m:
        load_s = time.monotonic() - t_load
        if m.run_serial_cmd("echo ok", timeout=30) != "ok":
            raise ImageError("the root snapshot does not give a shell")
    disk_size = (work / "disk.qcow2").stat().st_size

    profile["kernel"].update({
        "uname_r": uname,
        "version": version,
        "symbols": syms,
        **facts,
    })
    if kbtf is not None:
        ki = _kernelinfo_from(kbtf, profile)
        ki.write(work / KERNELINFO_FILE)
        profile["osi_linux"] = {"kconf_file": KERNELINFO_FILE,
                                "kconf_group": ki.group, "os": ki.os_string}
    profile["measured"] = {
        "build_seconds": round(time.monotonic() - t0, 2),
        "boot_to_shell_seconds": round(boot_s, 2),
        "savevm_seconds": round(save_s, 2),
        "loadvm_start_to_shell_seconds": round(load_s, 2),
        "disk_bytes": disk_size,
    }
    _write_profile(work, profile)


def _check_config(config: Path, need: tuple[str, ...]) -> None:
    """Check that serial, initrd, devtmpfs and BTF (where used) are built
    in (the initramfs has no modules), and what else the arch's profile
    assumes."""
    try:
        text = config.read_text()
    except OSError:
        return
    missing = [n for n in need if n not in text.splitlines()]
    if missing:
        raise ImageError(f"the kernel config lacks {missing}")


def _check_memory(m, syms: dict, offsets: dict) -> dict:
    """Read kernel data through the shared RAM file and sanity-check the
    profile: ``phys_base`` must be 0 (kernel at its link address), and
    ``init_task.comm`` must read "swapper/0"."""
    def u64(virt: int) -> int:
        return struct.unpack("<Q", m.read_phys(_kernel_virt_to_phys(virt),
                                               8))[0]

    facts: dict = {}
    if "phys_base" in syms:
        phys_base = u64(int(syms["phys_base"], 16))
        if phys_base != 0:
            raise ImageError(f"phys_base is {phys_base:#x}, expected 0 with "
                             "nokaslr")
        facts["phys_base"] = "0x0"
    facts["start_kernel_map"] = hex(_START_KERNEL_MAP)
    if "page_offset_base" in syms:
        facts["page_offset_base"] = hex(u64(int(syms["page_offset_base"],
                                                16)))
    facts["per_cpu_offset0"] = hex(u64(int(syms["__per_cpu_offset"], 16)))
    t = offsets["task_struct"]
    comm = m.read_phys(_kernel_virt_to_phys(int(syms["init_task"], 16))
                       + t["comm"], t["comm_size"]).split(b"\0")[0]
    if comm != b"swapper/0":
        raise ImageError(f"init_task.comm reads {comm!r}, not 'swapper/0': "
                         "the BTF offsets or symbols are wrong")
    facts["paging_levels"] = 4
    return facts


def _write_profile(d: Path, profile: dict) -> None:
    tmp = d / "profile.json.tmp"
    tmp.write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, d / "profile.json")


# --------------------------------------------------------------------------
# PANDA's osi_linux kernel profile.
# --------------------------------------------------------------------------

def _kernelinfo_from(b: _btf.BTF, profile: dict) -> "_ki.KernelInfo":
    """The image's kernelinfo group: offsets from the kernel's BTF; the
    symbols, the version banner and ``__per_cpu_offset[0]`` as the guest
    reported them at build time."""
    k = profile["kernel"]
    release, uts, version = _ki.parse_banner(k["version"])
    syms = {n: int(v, 16) for n, v in k["symbols"].items()}
    arch = profile["arch"]
    group = _ki.default_group(arch, release)
    os_string = _ki.os_string_for(group, _ki.arch_bits(arch))
    notes = (f"pandagpm generic image {arch}-{profile['key']}: offsets from "
             "the kernel's BTF, addresses from the guest's /proc/kallsyms "
             "(booted with nokaslr)",
             f"use: -os {os_string} -panda osi_linux:kconf_file=<this file>,"
             f"kconf_group={group}")
    return _ki.from_btf(
        b, syms, arch=arch, release=release, uts_version=uts,
        version=version, group=group, notes=notes,
        per_cpu_offset0=int(k.get("per_cpu_offset0", "0"), 16))


def _image_kernelinfo(img: ImageInfo) -> "_ki.KernelInfo":
    try:
        if img.profile["kernel"].get("offsets_source", "btf") != "btf":
            raise ImageError(f"no osi_linux kernelinfo for the {img.arch} "
                             "image: its kernel has no BTF (the profile's "
                             "offsets come from the kernel's headers)")
        b = kernel_btf(img.kernel.read_bytes())
        return _kernelinfo_from(b, img.profile)
    except (OSError, KeyError, _btf.BTFError, _ki.KernelInfoError) as err:
        raise ImageError(f"cannot make the kernelinfo of {img.path}: "
                         f"{err}") from err


def ensure_kernelinfo(img: ImageInfo) -> Path:
    """Return the image's kernelinfo file, writing it first if it is
    missing or was made by an older :mod:`pandagpm.kernelinfo`."""
    rel = (img.profile.get("osi_linux") or {}).get("kconf_file",
                                                   KERNELINFO_FILE)
    path = img.path / rel
    fallback = cache_dir() / "kernelinfo" / f"{img.path.name}.conf"
    for have in (path, fallback):
        try:
            if _ki.is_current(have.read_text()):
                return have
        except OSError:
            pass
    text = _image_kernelinfo(img).to_conf()
    for dest in (path, fallback):
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, dest)
            return dest
        except OSError as err:
            last = err
    raise ImageError(f"cannot write the kernelinfo of {img.path}: {last}")


def main(argv: list[str] | None = None) -> int:
    """``python -m pandagpm.image``: see :mod:`pandagpm.image_cli`."""
    from .image_cli import main as _main

    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
