"""osi_linux kernel profiles ("kernelinfo" groups) from BTF and kallsyms.

PANDA's ``osi_linux`` plugin walks Linux kernel structures in guest memory
and needs, for each kernel, a group of a GLib key file (``kernelinfo.conf``)
that gives structure sizes, member offsets and a few symbol addresses.
PANDA's way to get one is a kernel module compiled and loaded inside the
guest; PANDA ships no group for any 6.x kernel.  Everything that module
prints can be read instead from the kernel's own BTF (``.BTF`` in vmlinux,
or ``/sys/kernel/btf/vmlinux``) and its symbol table (``/proc/kallsyms`` or
``System.map``), which is what this module does::

    from pandagpm import kernelinfo
    ki = kernelinfo.from_files("vmlinuz", "kallsyms")
    print(ki.to_conf())              # the group, ready for kernelinfo.conf
    ki.group, ki.os_string           # kconf_group, and PANDA's -os string

Every generic image carries one (``ImageInfo.kernelinfo_path``,
``kernelinfo_group``, ``os_string``); ``python -m pandagpm.image kernelinfo
VMLINUZ KALLSYMS`` prints one for another kernel.

How PANDA picks the group: ``osi_linux`` reads ``kconf_group`` from
``kconf_file``; without ``kconf_group`` it uses ``<variant>:<bits>``, where
``-os linux-<bits>-<variant>`` is what the user passed.  The names made
here keep both ways working: group ``pandagpm-x86_64-6.1.0-57-amd64:64``
goes with ``-os linux-64-pandagpm-x86_64-6.1.0-57-amd64``.

All values are written in decimal, as GLib's integer readers require, with
the addresses repeated in hex on comment lines.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

from . import btf as _btf

__all__ = [
    "ARCHES", "KERNELINFO_VERSION", "KernelInfo", "KernelInfoError", "OPTIONAL_KEYS",
    "REQUIRED_KEYS", "arch_bits", "btf_fields", "default_group", "from_btf",
    "from_files", "is_current", "kernel_version", "os_string_for",
    "parse_banner", "parse_conf", "parse_kallsyms", "read_btf",
]


#: Bump when the groups made here change; files made by an older version
#: are made again (see :func:`is_current`).
KERNELINFO_VERSION = 4

_STAMP = f"# made by pandagpm.kernelinfo version {KERNELINFO_VERSION}"


def is_current(text: str) -> bool:
    """Whether kernelinfo text was made by this version of the module."""
    return _STAMP in text.splitlines()[:3]


class KernelInfoError(Exception):
    """A kernelinfo group cannot be made from the given inputs."""


@dataclasses.dataclass(frozen=True)
class _ArchKI:
    """How one architecture's osi_linux finds the current task."""

    bits: int
    machine: str          # utsname machine, the third part of ``name``
    per_cpu: bool         # current_task is a per-CPU variable (x86)


_ARCHES = {
    "x86_64": _ArchKI(64, "x86_64", True),
    "i386": _ArchKI(32, "i686", True),
    "arm": _ArchKI(32, "armv7l", False),
    "aarch64": _ArchKI(64, "aarch64", False),
    "mips": _ArchKI(32, "mips", False),
    "mipsel": _ArchKI(32, "mips", False),
    "mips64": _ArchKI(64, "mips64", False),
    "mips64el": _ArchKI(64, "mips64", False),
}

# Member offsets: (key, struct, member path).  Keys and meanings follow
# osi_linux's reader; dotted paths reach into embedded structs.
_OFFSETS = (
    ("task.tasks_offset", "task_struct", "tasks"),
    ("task.pid_offset", "task_struct", "pid"),
    ("task.tgid_offset", "task_struct", "tgid"),
    ("task.group_leader_offset", "task_struct", "group_leader"),
    ("task.thread_group_offset", "task_struct", "thread_group"),
    ("task.real_parent_offset", "task_struct", "real_parent"),
    ("task.parent_offset", "task_struct", "parent"),
    ("task.mm_offset", "task_struct", "mm"),
    ("task.stack_offset", "task_struct", "stack"),
    ("task.real_cred_offset", "task_struct", "real_cred"),
    ("task.cred_offset", "task_struct", "cred"),
    ("task.comm_offset", "task_struct", "comm"),
    ("task.files_offset", "task_struct", "files"),
    ("task.start_time_offset", "task_struct", "start_time"),
    ("cred.uid_offset", "cred", "uid"),
    ("cred.gid_offset", "cred", "gid"),
    ("cred.euid_offset", "cred", "euid"),
    ("cred.egid_offset", "cred", "egid"),
    ("mm.mmap_offset", "mm_struct", "mmap"),
    ("mm.pgd_offset", "mm_struct", "pgd"),
    ("mm.arg_start_offset", "mm_struct", "arg_start"),
    ("mm.start_brk_offset", "mm_struct", "start_brk"),
    ("mm.brk_offset", "mm_struct", "brk"),
    ("mm.start_stack_offset", "mm_struct", "start_stack"),
    ("vma.vm_mm_offset", "vm_area_struct", "vm_mm"),
    ("vma.vm_start_offset", "vm_area_struct", "vm_start"),
    ("vma.vm_end_offset", "vm_area_struct", "vm_end"),
    ("vma.vm_next_offset", "vm_area_struct", "vm_next"),
    ("vma.vm_flags_offset", "vm_area_struct", "vm_flags"),
    ("vma.vm_file_offset", "vm_area_struct", "vm_file"),
    ("fs.f_path_dentry_offset", "file", "f_path.dentry"),
    ("fs.f_path_mnt_offset", "file", "f_path.mnt"),
    ("fs.f_pos_offset", "file", "f_pos"),
    ("fs.fdt_offset", "files_struct", "fdt"),
    ("fs.fdtab_offset", "files_struct", "fdtab"),
    ("fs.fd_offset", "fdtable", "fd"),
    ("qstr.name_offset", "qstr", "name"),
    ("path.d_name_offset", "dentry", "d_name"),
    ("path.d_iname_offset", "dentry", "d_iname"),
    ("path.d_parent_offset", "dentry", "d_parent"),
    ("path.d_op_offset", "dentry", "d_op"),
    ("path.d_dname_offset", "dentry_operations", "d_dname"),
    ("path.mnt_root_offset", "vfsmount", "mnt_root"),
)

_SIZES = (
    ("task.size", "task_struct"),
    ("mm.size", "mm_struct"),
    ("vma.size", "vm_area_struct"),
    ("qstr.size", "qstr"),
)

#: Keys osi_linux fails without (kernels after 2.4), in file order.
REQUIRED_KEYS = (
    "name", "version.a", "version.b", "version.c",
    "task.per_cpu_offsets_addr", "task.per_cpu_offset_0_addr",
    "task.current_task_addr", "task.init_addr", "task.size",
    "task.tasks_offset", "task.pid_offset", "task.tgid_offset",
    "task.group_leader_offset", "task.real_parent_offset",
    "task.parent_offset", "task.mm_offset", "task.stack_offset",
    "task.real_cred_offset", "task.cred_offset", "task.comm_offset",
    "task.comm_size", "task.files_offset",
    "cred.uid_offset", "cred.gid_offset", "cred.euid_offset",
    "cred.egid_offset",
    "mm.size", "mm.pgd_offset", "mm.arg_start_offset",
    "mm.start_brk_offset", "mm.brk_offset", "mm.start_stack_offset",
    "vma.size", "vma.vm_mm_offset", "vma.vm_start_offset",
    "vma.vm_end_offset", "vma.vm_flags_offset", "vma.vm_file_offset",
    "fs.f_path_dentry_offset", "fs.f_path_mnt_offset", "fs.f_pos_offset",
    "fs.fdt_offset", "fs.fdtab_offset", "fs.fd_offset",
    "qstr.size", "qstr.name_offset",
    "path.d_name_offset", "path.d_iname_offset", "path.d_parent_offset",
    "path.d_op_offset", "path.d_dname_offset", "path.mnt_root_offset",
    "path.mnt_parent_offset", "path.mnt_mountpoint_offset",
)

#: Keys osi_linux reads when present and treats as 0 otherwise.
OPTIONAL_KEYS = (
    "task.thread_group_offset", "task.start_time_offset",
    "task.switch_task_hook_addr", "mm.mmap_offset", "vma.vm_next_offset",
)

# The order keys are written in (PANDA's own files use this order).
_ORDER = (
    "name", "version.a", "version.b", "version.c",
    "task.per_cpu_offsets_addr", "task.per_cpu_offset_0_addr",
    "task.current_task_addr", "task.init_addr", "task.switch_task_hook_addr",
    "task.size",
) + tuple(k for k, _s, _m in _OFFSETS if k.startswith("task.")) + (
    "task.comm_size",
) + tuple(k for k, _s, _m in _OFFSETS if k.startswith("cred.")) + (
    "mm.size",
) + tuple(k for k, _s, _m in _OFFSETS if k.startswith("mm.")) + (
    "vma.size",
) + tuple(k for k, _s, _m in _OFFSETS if k.startswith("vma.")) + tuple(
    k for k, _s, _m in _OFFSETS if k.startswith("fs.")) + (
    "qstr.size", "qstr.name_offset",
) + tuple(k for k, _s, _m in _OFFSETS if k.startswith("path.")) + (
    "path.mnt_parent_offset", "path.mnt_mountpoint_offset",
)

_ADDRESS_KEYS = ("task.per_cpu_offsets_addr", "task.per_cpu_offset_0_addr",
                 "task.current_task_addr", "task.init_addr",
                 "task.switch_task_hook_addr")

# Why an optional key may be missing, for the comment in the group.
_MISSING_WHY = {
    "mm.mmap_offset": "mm_struct has no mmap list (maple tree, Linux 6.1+) "
                      "and no always-NULL pointer to use instead: "
                      "osi_linux's memory-mapping queries may walk garbage",
    "vma.vm_next_offset": "vm_area_struct has no vm_next (maple tree, "
                          "Linux 6.1+)",
    "task.thread_group_offset": "task_struct has no thread_group list",
    "task.start_time_offset": "task_struct has no start_time",
    "task.switch_task_hook_addr": "task-switch notifications are off; "
                                  "they need PANDA's hooks plugin "
                                  "(kernelinfo --switch-task-hook adds it)",
}


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """One osi_linux kernelinfo group.

    ``fields`` maps osi_linux's keys (``task.pid_offset``, ...) to ints,
    and ``name`` to a string; ``notes`` are comment lines for the file.
    """

    group: str
    arch: str
    fields: dict
    notes: tuple[str, ...] = ()
    #: Why a key has the value it has, written as a comment above it.
    remarks: dict = dataclasses.field(default_factory=dict)

    @property
    def bits(self) -> int:
        return _ARCHES[self.arch].bits

    @property
    def os_string(self) -> str:
        """PANDA's ``-os`` / pypanda ``os_version`` string for this group.

        With it, osi_linux finds the group by itself when ``kconf_group``
        is not given (its default is ``<variant>:<bits>``), as long as the
        group name ends in ``:<bits>``.
        """
        return os_string_for(self.group, self.bits)

    def __getitem__(self, key: str):
        return self.fields[key]

    def to_conf(self) -> str:
        """The group as key-file text: ``[group]`` then ``key = value``."""
        lines = [f"[{self.group}]", _STAMP]
        lines += [f"# {n}" for n in self.notes]
        for key in _ORDER:
            if key not in self.fields:
                if key in OPTIONAL_KEYS and key in _MISSING_WHY:
                    lines.append(f"# no {key}: {_MISSING_WHY[key]}")
                continue
            value = self.fields[key]
            if key in self.remarks:
                lines.append(f"# {key}: {self.remarks[key]}")
            if key == "name":
                lines.append(f"name = {_escape(value)}")
                continue
            lines.append(f"{key} = {int(value)}")
            if key in _ADDRESS_KEYS:
                lines.append(f"#{key} = {int(value):#x}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the group as a whole kernelinfo file (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_conf())
        tmp.replace(path)
        return path

    def panda_args(self, path: str | Path) -> dict[str, str]:
        """osi_linux's plugin arguments for this group stored at ``path``."""
        return {"kconf_file": str(path), "kconf_group": self.group}


def _escape(value: str) -> str:
    # GLib key files unescape \\ \n \t \r \s in values and strip leading
    # blanks; keep the value as it is.
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace(
        "\t", "\\t").replace("\r", "\\r")
    if out[:1] == " ":
        out = "\\s" + out[1:]
    return out


def default_group(arch: str, release: str) -> str:
    """``pandagpm-<arch>-<release>:<bits>``, the group name we use."""
    spec = _arch(arch)
    return f"pandagpm-{arch}-{release}:{spec.bits}"


def os_string_for(group: str, bits: int) -> str:
    """``linux-<bits>-<variant>`` for a group named ``<variant>:<bits>``.

    For any other group name the variant is the whole name; osi_linux then
    needs ``kconf_group`` spelled out.
    """
    suffix = f":{bits}"
    variant = group[:-len(suffix)] if group.endswith(suffix) else group
    return f"linux-{bits}-{variant}"


#: The guest arches a group can be made for.
ARCHES = tuple(sorted(_ARCHES))


def arch_bits(arch: str) -> int:
    """32 or 64: the ``<bits>`` of PANDA's ``-os`` for ``arch``."""
    return _arch(arch).bits


def _arch(arch: str) -> _ArchKI:
    try:
        return _ARCHES[arch]
    except KeyError:
        raise KernelInfoError(f"no kernelinfo rules for arch {arch!r}; "
                              f"known: {', '.join(sorted(_ARCHES))}") from None


def _check_group(group: str) -> None:
    if not group or any(c in group for c in "[]\n\r") or group != \
            group.strip():
        raise KernelInfoError(f"{group!r} cannot be a key-file group name "
                              "(no brackets, line breaks or outer blanks)")


# --------------------------------------------------------------------------
# Inputs: kallsyms, the banner, BTF.
# --------------------------------------------------------------------------

def parse_kallsyms(text: str) -> dict[str, int]:
    """Symbol addresses from ``/proc/kallsyms`` or ``System.map`` text.

    The first address of each name wins; module symbols (``[mod]``) are
    skipped.  Raises when every address is zero (read without privilege:
    ``kptr_restrict``).
    """
    syms: dict[str, int] = {}
    nonzero = False
    for line in text.splitlines():
        parts = line.split()
        # "ADDR TYPE NAME", or "ADDR TYPE NAME [module]" for modules.
        if len(parts) != 3:
            continue
        try:
            addr = int(parts[0], 16)
        except ValueError:
            continue
        nonzero = nonzero or addr != 0
        syms.setdefault(parts[2], addr)
    if not syms:
        raise KernelInfoError("no symbols found (expected /proc/kallsyms or "
                              "System.map lines: ADDRESS TYPE NAME)")
    if not nonzero:
        raise KernelInfoError("every symbol address is zero: read "
                              "/proc/kallsyms as root (kptr_restrict)")
    return syms


_BANNER_RE = re.compile(
    r"Linux version (?P<release>\S+) .*?(?P<uts>#\d+.*?)\s*$")


def parse_banner(banner: str) -> tuple[str, str, tuple[int, int, int]]:
    """``(release, uts_version, (a, b, c))`` from a ``/proc/version`` line.

    The kernel version is the upstream one, which distributions put in the
    version string (``Debian 6.1.192-3``, Ubuntu's trailing ``5.4.44)``)
    when the release is an ABI name such as ``6.1.0-57-amd64``.
    """
    m = _BANNER_RE.search(banner.strip())
    if not m:
        raise KernelInfoError(f"not a Linux version banner: {banner[:120]!r}")
    release, uts = m.group("release"), m.group("uts")
    return release, uts, kernel_version(release, uts)


def kernel_version(release: str, uts: str = "") -> tuple[int, int, int]:
    """``LINUX_VERSION_CODE``'s three parts (the third is capped at 255)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        raise KernelInfoError(f"cannot read a version from {release!r}")
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    for pat in (r"Debian (\d+)\.(\d+)\.(\d+)", r" (\d+)\.(\d+)\.(\d+)\)\s*$"):
        d = re.search(pat, uts)
        if d and (int(d.group(1)), int(d.group(2))) == (a, b):
            c = int(d.group(3))
            break
    return a, b, min(c, 255)


def _banner_from_kernel(data: bytes) -> str | None:
    """The ``Linux version`` banner inside vmlinux, or built from a
    bzImage's header, or None."""
    best = None
    for m in re.finditer(rb"Linux version [^\n\0]{1,400}", data):
        text = m.group().decode("utf-8", "replace")
        if re.search(r" #\d+", text):
            return text
        best = best or text
    if best:
        return best
    # x86 boot protocol: a pointer to "release ... #N ..." at 0x20E.
    if len(data) > 0x210 and data[0x202:0x206] == b"HdrS":
        ptr = struct.unpack_from("<H", data, 0x20E)[0] + 0x200
        text = data[ptr:ptr + 400].split(b"\0")[0].decode("utf-8", "replace")
        if text:
            return "Linux version " + text
    return None


def read_btf(path: str | Path) -> tuple[_btf.BTF, str | None, str | None]:
    """BTF, the banner and the arch from a kernel file.

    ``path`` may be a compressed kernel (bzImage/vmlinuz), an ELF vmlinux,
    or a raw BTF blob (``/sys/kernel/btf/vmlinux``, which has no banner).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise KernelInfoError(f"cannot read {path}: {err}") from err
    if len(data) < 64:
        raise KernelInfoError(f"{path} is too short to be a kernel")
    if data[:4] == b"\x7fELF":
        vmlinux = data
    elif struct.unpack_from("<H", data, 0)[0] == _btf.BTF_MAGIC or \
            struct.unpack_from(">H", data, 0)[0] == _btf.BTF_MAGIC:
        return _btf.BTF.from_bytes(data), None, None
    else:
        from .image import ImageError, extract_vmlinux
        try:
            vmlinux = extract_vmlinux(data)
        except ImageError as err:
            raise KernelInfoError(f"{path}: {err}") from err
    try:
        b = _btf.BTF.from_bytes(
            _btf.elf_section_from_bytes(vmlinux, ".BTF"))
    except _btf.BTFError as err:
        raise KernelInfoError(f"{path}: {err} (a kernel built with "
                              "CONFIG_DEBUG_INFO_BTF is needed)") from err
    banner = _banner_from_kernel(vmlinux) or _banner_from_kernel(data)
    return b, banner, _elf_arch(vmlinux)


_EM_ARCH = {3: "i386", 62: "x86_64", 40: "arm", 183: "aarch64", 8: "mips"}


def _elf_arch(elf: bytes) -> str | None:
    is64, little = elf[4] == 2, elf[5] == 1
    machine = struct.unpack_from("<H" if little else ">H", elf, 18)[0]
    arch = _EM_ARCH.get(machine)
    if arch == "mips":
        arch = ("mips64" if is64 else "mips") + ("el" if little else "")
    return arch


# --------------------------------------------------------------------------
# Building the group.
# --------------------------------------------------------------------------

# mm_struct pointers that stay NULL in an ordinary process (MMU notifiers:
# KVM and a few drivers; Linux AIO contexts; uprobes' XOL area).
_NULL_MM_POINTERS = ("notifier_subscriptions", "ioctx_table",
                     "uprobes_state.xol_area")


def btf_fields(b: _btf.BTF) -> tuple[dict[str, int], list[str],
                                     dict[str, str]]:
    """Sizes and offsets from BTF; also the optional keys it lacks, and
    remarks on keys whose value is not the plain offset."""
    fields: dict[str, int] = {}
    missing: list[str] = []
    remarks: dict[str, str] = {}
    for key, sname, path in _OFFSETS:
        try:
            fields[key] = b.member_offset(sname, path)
        except _btf.BTFError as err:
            if key in OPTIONAL_KEYS:
                missing.append(key)
                continue
            raise KernelInfoError(f"{key}: {err}") from err
    if "mm.mmap_offset" in missing:
        # osi_linux (without maple-tree support) reads the first VMA from
        # mm->mmap and follows vm_next until NULL or back at the first;
        # mm + 0 would hand it the maple tree's lock and flags as a
        # pointer, and the walk may never end.  A pointer member that is
        # NULL makes the mapping queries answer "none" instead.
        for member in _NULL_MM_POINTERS:
            try:
                off = b.member_offset("mm_struct", member)
            except _btf.BTFError:
                continue
            fields["mm.mmap_offset"] = off
            missing.remove("mm.mmap_offset")
            remarks["mm.mmap_offset"] = (
                "this kernel has no mm->mmap list (maple tree, Linux 6.1+); "
                f"this is mm_struct.{member}, which is NULL in ordinary "
                "processes, so osi_linux's memory-mapping queries find no "
                "mappings instead of walking the maple tree as a list")
            break
    for key, sname in _SIZES:
        try:
            fields[key] = b.sizeof(b.find(sname).id)
        except _btf.BTFError as err:
            raise KernelInfoError(f"{key}: {err}") from err
    fields["task.comm_size"] = b.member_size("task_struct", "comm")
    # Since Linux 3.3 mnt_parent and mnt_mountpoint live in struct mount,
    # around the struct vfsmount embedded in it as "mnt"; osi_linux holds
    # a vfsmount pointer, so it wants them relative to that member.
    try:
        base = b.member_offset("mount", "mnt")
        holder = "mount"
    except _btf.BTFError:
        base, holder = 0, "vfsmount"
    for key, member in (("path.mnt_parent_offset", "mnt_parent"),
                        ("path.mnt_mountpoint_offset", "mnt_mountpoint")):
        try:
            fields[key] = b.member_offset(holder, member) - base
        except _btf.BTFError as err:
            raise KernelInfoError(f"{key}: {err}") from err
    return fields, missing, remarks


def from_btf(b: _btf.BTF, symbols: dict[str, int], *, arch: str,
             release: str, uts_version: str,
             version: tuple[int, int, int] | None = None,
             per_cpu_offset0: int = 0, group: str | None = None,
             switch_task_hook: bool = False,
             notes: tuple[str, ...] = ()) -> KernelInfo:
    """Make the group from parsed BTF and symbol addresses.

    ``per_cpu_offset0`` is ``__per_cpu_offset[0]`` as the booted guest has
    it (x86; 0 if unknown).  osi_linux only uses it as a fallback: it reads
    the real value through ``task.per_cpu_offsets_addr`` at its first
    query and after each snapshot load, which must therefore come after
    the kernel has set up its per-CPU areas.  Queried during early boot
    (``osi_test`` from a cold boot, say) it gets the boot-time value, which
    stops working when the kernel frees its init memory ("Couldn't find
    current task struct at first syscall").  Start from a booted snapshot.

    ``switch_task_hook`` adds ``task.switch_task_hook_addr``
    (``finish_task_switch``), which makes osi_linux load PANDA's ``hooks``
    plugin for task-switch notifications.
    """
    spec = _arch(arch)
    group = default_group(arch, release) if group is None else group
    _check_group(group)
    fields, missing, remarks = btf_fields(b)

    def sym(name: str) -> int:
        if name not in symbols:
            raise KernelInfoError(f"the symbol table lacks {name}")
        return symbols[name]

    a, bb, c = version or kernel_version(release, uts_version)
    head: dict = {"name": f"{release}|{uts_version}|{spec.machine}",
                  "version.a": a, "version.b": bb, "version.c": c}
    init = sym("init_task")
    head["task.init_addr"] = init
    if spec.per_cpu:
        head["task.per_cpu_offsets_addr"] = sym("__per_cpu_offset")
        head["task.per_cpu_offset_0_addr"] = per_cpu_offset0
        remarks["task.per_cpu_offset_0_addr"] = (
            ("as the booted guest had it" if per_cpu_offset0 else
             "unknown") + "; osi_linux replaces it with __per_cpu_offset[0] "
            "read through task.per_cpu_offsets_addr at its first query "
            "(and after each loadvm), which must come after boot: during "
            "early boot it reads the boot-time value, and the current task "
            "is lost once the kernel frees its init memory")
        if "current_task" in symbols:
            head["task.current_task_addr"] = symbols["current_task"]
        elif "pcpu_hot" in symbols:
            # Linux 6.2+ keeps current_task in struct pcpu_hot.
            head["task.current_task_addr"] = symbols["pcpu_hot"] + \
                b.member_offset("pcpu_hot", "current_task")
        else:
            raise KernelInfoError("the symbol table has neither "
                                  "current_task nor pcpu_hot")
    else:
        # Other arches find the current task from the stack or a register.
        head["task.per_cpu_offsets_addr"] = 0
        head["task.per_cpu_offset_0_addr"] = 0
        head["task.current_task_addr"] = init
    if switch_task_hook:
        hook = symbols.get("finish_task_switch")
        if hook is None:
            hook = next((v for k, v in sorted(symbols.items())
                         if k.startswith("finish_task_switch.")), None)
        if hook is None:
            raise KernelInfoError("switch_task_hook: the symbol table lacks "
                                  "finish_task_switch")
        head["task.switch_task_hook_addr"] = hook
    else:
        missing.append("task.switch_task_hook_addr")
    head.update(fields)
    absent = [k for k in REQUIRED_KEYS if k not in head]
    if absent:
        raise KernelInfoError(f"internal: no value for {absent}")
    return KernelInfo(group, arch, head, tuple(notes), remarks)


def from_files(kernel: str | Path, kallsyms: str | Path, *,
               arch: str | None = None, group: str | None = None,
               banner: str | None = None,
               version: tuple[int, int, int] | None = None,
               per_cpu_offset0: int = 0,
               switch_task_hook: bool = False) -> KernelInfo:
    """Make the group for a kernel file and its symbol table.

    ``kernel`` is a vmlinuz, a vmlinux or a raw BTF file; ``kallsyms`` is
    ``/proc/kallsyms`` (as root, with the KASLR state the guest will run
    with: boot it with ``nokaslr``) or ``System.map``.  ``banner`` (the
    guest's ``/proc/version``) is needed for a raw BTF file.
    """
    b, found_banner, found_arch = read_btf(kernel)
    banner = banner or found_banner
    if not banner:
        raise KernelInfoError(f"{kernel} holds no 'Linux version' banner; "
                              "pass the guest's /proc/version")
    release, uts, ver = parse_banner(banner)
    arch = arch or found_arch or "x86_64"
    try:
        text = Path(kallsyms).read_text(errors="replace")
    except OSError as err:
        raise KernelInfoError(f"cannot read {kallsyms}: {err}") from err
    return from_btf(b, parse_kallsyms(text), arch=arch, release=release,
                    uts_version=uts, version=version or ver,
                    per_cpu_offset0=per_cpu_offset0, group=group,
                    switch_task_hook=switch_task_hook,
                    notes=(f"made by pandagpm from the BTF of {Path(kernel).name}"
                           f" and {Path(kallsyms).name}",))


# --------------------------------------------------------------------------
# Reading a kernelinfo file back.
# --------------------------------------------------------------------------

def parse_conf(text: str) -> dict[str, dict[str, str]]:
    """``{group: {key: value}}`` from key-file text, as GLib reads it
    (comments and blank lines skipped, values stripped and unescaped)."""
    groups: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("[") and s.endswith("]"):
            cur = groups.setdefault(s[1:-1], {})
            continue
        if "=" not in s or cur is None:
            raise KernelInfoError(f"line {n} is not a key-file line: {line!r}")
        key, value = s.split("=", 1)
        cur[key.strip()] = _unescape(value.strip())
    return groups


def _unescape(value: str) -> str:
    out, i = [], 0
    table = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
