"""The command line of :mod:`pandagpm.image`: ``python -m pandagpm.image
build|info|kernelinfo`` (``pandagpm image`` runs the same).

Errors are printed as ``error: ...`` with exit status 1; a reader that
goes away (``| head``) is not an error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import image as _image
from . import kernelinfo as _ki
from .image import (ARCHES, ImageError, ImageInfo, build_image,
                    cached_images, get_image)


def _parse_version(text: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError("expected A.B.C, e.g. 6.1.192")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _osi_summary(img: ImageInfo) -> dict:
    return {"kconf_file": str(img.kernelinfo_path),
            "kconf_group": img.kernelinfo_group, "os": img.os_string}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pandagpm.image",
                                 description=_image.__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the image (or reuse the cache)")
    b.add_argument("--arch", default="x86_64", choices=sorted(ARCHES))
    b.add_argument("--force", action="store_true", help="rebuild anyway")
    i = sub.add_parser("info", help="print the cached image's profile",
                       description="Print the cached image's profile, with "
                       "its osi_linux kernelinfo file, group and -os string "
                       "under \"osi_linux\".")
    i.add_argument("--arch", default="x86_64", choices=sorted(ARCHES))
    how = i.add_mutually_exclusive_group()
    how.add_argument("--path", action="store_true",
                     help="print only the image directory")
    how.add_argument("--kernelinfo", action="store_true",
                     help="print the image's osi_linux kernelinfo group")
    k = sub.add_parser(
        "kernelinfo", help="print an osi_linux kernelinfo group for a kernel",
        description="Print a PANDA osi_linux kernelinfo group (for "
        "kernelinfo.conf) made from a kernel's BTF and its symbol table. "
        "The kernel must be built with CONFIG_DEBUG_INFO_BTF. Read the "
        "symbols as root, from a boot with the KASLR setting the analysis "
        "will use (nokaslr, or the same seed).",
        epilog="Then run PANDA with -os OS -panda osi_linux:kconf_file="
        "FILE,kconf_group=GROUP (the -os and group are printed on stderr).")
    k.add_argument("kernel", metavar="VMLINUZ",
                   help="the kernel: vmlinuz/bzImage, vmlinux, or a raw BTF "
                   "file such as the guest's /sys/kernel/btf/vmlinux")
    k.add_argument("kallsyms", metavar="KALLSYMS",
                   help="the guest's /proc/kallsyms (or System.map)")
    k.add_argument("--group", help="the group name (default "
                   "pandagpm-<arch>-<release>:<bits>)")
    k.add_argument("--arch", choices=_ki.ARCHES,
                   help="the guest arch (default: from the kernel file)")
    k.add_argument("--banner", metavar="PROC_VERSION_FILE",
                   help="a file holding the guest's /proc/version (needed "
                   "for a raw BTF file)")
    k.add_argument("--kernel-version", type=_parse_version, metavar="A.B.C",
                   help="the upstream kernel version (default: from the "
                   "banner)")
    k.add_argument("--per-cpu-offset0", type=lambda v: int(v, 0), default=0,
                   metavar="ADDR", help="x86: __per_cpu_offset[0] of the "
                   "booted guest, a fallback (osi_linux reads the real "
                   "value at its first query; default 0)")
    k.add_argument("--switch-task-hook", action="store_true",
                   help="add task.switch_task_hook_addr (finish_task_switch)"
                   ": task-switch notifications, through PANDA's hooks "
                   "plugin")
    k.add_argument("-o", "--output", metavar="FILE",
                   help="write the group to FILE instead of stdout")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            if args.force:
                img = build_image(args.arch, force=True)
            else:
                img = get_image(args.arch)
            print(img.path)
        elif args.cmd == "kernelinfo":
            banner = None
            if args.banner:
                banner = Path(args.banner).read_text(errors="replace")
            ki = _ki.from_files(args.kernel, args.kallsyms, arch=args.arch,
                                group=args.group, banner=banner,
                                version=args.kernel_version,
                                per_cpu_offset0=args.per_cpu_offset0,
                                switch_task_hook=args.switch_task_hook)
            if args.output:
                ki.write(args.output)
            else:
                sys.stdout.write(ki.to_conf())
            print(f"kconf_group: {ki.group}\n-os: {ki.os_string}",
                  file=sys.stderr)
        else:
            have = cached_images(args.arch)
            if not have:
                print(f"no {args.arch} image in {_image._images_dir()}; run "
                      "`python -m pandagpm.image build`", file=sys.stderr)
                return 1
            if args.path:
                print(have[0].path)
            elif args.kernelinfo:
                sys.stdout.write(have[0].kernelinfo_path.read_text())
            else:
                shown = dict(have[0].profile)
                try:
                    shown["osi_linux"] = _osi_summary(have[0])
                except ImageError as err:
                    shown["osi_linux"] = {"unavailable": str(err)}
                print(json.dumps(shown, indent=2, sort_keys=True))
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; that is not an error.
        sys.stderr.close()
    except (ImageError, _ki.KernelInfoError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
