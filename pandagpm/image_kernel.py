"""Reading a kernel file for :mod:`pandagpm.image`: the ELF vmlinux out of a
compressed kernel, its BTF, and the structure offsets a profile records.

Pure functions of the bytes given; they raise
:class:`pandagpm.image.ImageError` (imported when raised: pandagpm.image
imports this module).
"""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import subprocess

from . import btf as _btf
from . import image_arm as _image_arm
from .image_arches import EXTRA_FIELDS, STRUCT_FIELDS


def extract_vmlinux(bzimage: bytes) -> bytes:
    """Return the ELF vmlinux inside a compressed kernel image.

    Tries each compressed stream the kernel may use (xz, gzip, and zstd
    through the ``zstd`` tool) at every place its magic appears.  Debian's
    amd64 kernels are xz-compressed, Ubuntu's zstd-compressed.
    """
    from .image import ImageError

    for magic, kind in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip")):
        start = 0
        while True:
            i = bzimage.find(magic, start)
            if i < 0:
                break
            start = i + 1
            try:
                if kind == "xz":
                    out = lzma.LZMADecompressor().decompress(bzimage[i:])
                else:
                    out = gzip.GzipFile(fileobj=io.BytesIO(bzimage[i:])).read()
            except (lzma.LZMAError, OSError, EOFError):
                continue
            if out[:4] == b"\x7fELF":
                return out
    if b"(\xb5/\xfd" in bzimage:
        return _unzstd_vmlinux(bzimage)
    raise ImageError("no compressed vmlinux found inside the kernel image")


def _unzstd_vmlinux(bzimage: bytes) -> bytes:
    """The zstd case, through the ``zstd`` tool (not in the stdlib)."""
    from .image import ImageError

    if shutil.which("zstd") is None:
        raise ImageError("the kernel is zstd-compressed; install zstd "
                         "(Debian: apt-get install zstd) to read it")
    start = 0
    while True:
        i = bzimage.find(b"(\xb5/\xfd", start)
        if i < 0:
            break
        start = i + 1
        # Whatever follows the frame makes zstd complain after it has
        # written the frame's contents; those are what counts.
        r = subprocess.run(["zstd", "-dcq"], input=bzimage[i:],
                           capture_output=True)
        if r.stdout[:4] == b"\x7fELF":
            return r.stdout
    raise ImageError("no zstd stream inside the kernel decompresses to an "
                     "ELF vmlinux")


def _vmlinux_btf(vmlinux: bytes) -> _btf.BTF:
    return _btf.BTF.from_bytes(_btf.elf_section_from_bytes(vmlinux, ".BTF"))


def kernel_btf(kernel: bytes) -> _btf.BTF:
    """The BTF of a kernel file: a compressed kernel (bzImage), an ELF
    vmlinux, or an uncompressed boot image (arm64's ``Image``, which has
    no section table: its ``.BTF`` is found by its header)."""
    from .image import ImageError

    if kernel[:4] == b"\x7fELF":
        return _vmlinux_btf(kernel)
    try:
        return _vmlinux_btf(extract_vmlinux(kernel))
    except ImageError:
        raw = _image_arm.btf_in_raw_image(kernel)
        if raw is None:
            raise
        return raw


def _offset_requests(arch: str) -> dict[str, tuple[str, ...]]:
    """The members whose offsets an arch's profile records."""
    want = {k: tuple(v) for k, v in STRUCT_FIELDS.items()}
    for sname, members in EXTRA_FIELDS.get(arch, {}).items():
        want[sname] = want.get(sname, ()) + members
    return want


def _btf_offsets(b: _btf.BTF, arch: str = "x86_64"
                 ) -> dict[str, dict[str, int]]:
    offsets: dict[str, dict[str, int]] = {}
    for sname, members in _offset_requests(arch).items():
        offsets[sname] = {m: b.member_offset(sname, m) for m in members}
    offsets["task_struct"]["comm_size"] = b.member_size("task_struct", "comm")
    offsets["task_struct"]["sizeof"] = b.sizeof(b.find("task_struct").id)
    offsets["cred"]["uid_size"] = b.member_size("cred", "uid")
    return offsets
