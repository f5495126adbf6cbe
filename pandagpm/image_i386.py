"""The i386 parts of the generic images (Debian's 686-pae kernel).

Used by :mod:`pandagpm.image`, which owns the recipe table; this module
holds what only the 32-bit x86 kernel needs:

* The kernel has no ``CONFIG_KALLSYMS_ALL``, so ``/proc/kallsyms`` lacks
  data symbols (``current_task``, ``__per_cpu_offset``, ``init_task``),
  and the package's ``System.map`` is a stub (the real one is in the
  ``-dbg`` package). All three are exported, so they are read from the
  kernel's export table in guest RAM, as for arm
  (:func:`pandagpm.image_arm._ksymtab`; x86 uses PREL32 entries).
* :func:`layout_facts` -- checks on the booted guest, through the shared
  RAM file, that the lowmem linear map is ``virt - 0xC0000000``, that
  ``init_task`` reads ``swapper/0``, that CPU 0's ``current_task`` (at
  ``&current_task + __per_cpu_offset[0]``) is a real task, that the
  doorbell page is outside System RAM and that PTI is off; records
  ``per_cpu_offset0``.
* :func:`vdso_facts` -- processes have a vDSO, and its
  ``__kernel_vsyscall`` enters by ``sysenter`` with the ``int $0x80``
  before the landing pad that linjector rewinds sysenter calls to
  (recorded as ``vdso`` and ``user_syscall_entry``).

The structure offsets come from the kernel's Debian headers, compiled
with the i686 cross compiler (:func:`pandagpm.image_arm.offsets_from_headers`),
since the 686-pae kernel has no BTF.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

__all__ = ["CURRENT_TASK", "DATA_SYMBOLS", "SYSCALL_ENTRY", "SYSENTER_ENTRY",
           "KERNEL_VSYSCALL_SYSENTER", "layout_facts", "vdso_facts"]

#: PAGE_OFFSET of the 3G/1G split (CONFIG_PAGE_OFFSET, checked in config).
PAGE_OFFSET = 0xC0000000

#: Data symbols from the export table (kallsyms lacks them).
DATA_SYMBOLS = ("current_task", "__per_cpu_offset", "init_task")

#: How the host finds the running task (see docs/image.md).
CURRENT_TASK = {
    "percpu_symbol": "current_task",
    "percpu_base": "per_cpu_offset0",
    "pointer_size": 4,
    "rule": ("current = *(u32 *)(&current_task + __per_cpu_offset[0]) on "
             "the one vCPU, in user mode and in the kernel (the kernel "
             "reaches it through %fs, whose base the user does not have; "
             "the constant offset works in any mode)"),
}

#: The syscall entry to break on.
SYSCALL_ENTRY = {
    "symbol": "entry_INT80_32",
    "note": ("int $0x80's IDT gate. At its first instruction eax is the "
             "number, ebx, ecx, edx, esi, edi, ebp the arguments (the "
             "user's registers, live), and esp points at the iret frame: "
             "[esp] = the user eip after the int $0x80, then cs, eflags, "
             "user esp, ss. Code that executes int $0x80 itself comes "
             "here, and so do sysenter calls that linjector bounces "
             "(sysenter_entry)."),
}

#: The sysenter entry, and where linjector finishes such a call.
SYSENTER_ENTRY = {
    "symbol": "entry_SYSENTER_32",
    "exit_symbol": "syscall_exit_to_user_mode",
    "note": ("__kernel_vsyscall's sysenter. At its first instruction eax "
             "is the number, ebx, ecx, edx, esi, edi the arguments, ebp "
             "the user's esp, whose first word is the sixth; the kernel "
             "sets the return address to the vDSO's int80_landing_pad "
             "itself. linjector runs such a call as -1 (nothing), and at "
             "syscall_exit_to_user_mode(regs) (regs in eax) puts the "
             "number back in regs->ax and regs->ip at the landing pad's "
             "int $0x80, which then enters entry_INT80_32 with the "
             "call's registers (docs/arch.md)."),
}

#: __kernel_vsyscall with its sysenter patched in, through the landing
#: pad: push ecx, edx, ebp; mov esp, ebp; sysenter; int $0x80; pop ebp,
#: edx, ecx; ret.
KERNEL_VSYSCALL_SYSENTER = bytes.fromhex(
    "51 52 55 89 e5 0f 34 cd 80 5d 5a 59 c3")

_IOMEM_RE = re.compile(r"^(\s*)([0-9a-f]+)-([0-9a-f]+) : (.+)$", re.M)


def layout_facts(m, spec, syms: dict[str, str],
                 offsets: dict[str, dict[str, int]]) -> dict:
    """Check the kernel's layout on the booted guest ``m``; add the data
    symbols of :data:`DATA_SYMBOLS` to ``syms`` and return the profile's
    facts (hex strings for addresses)."""
    from .image import ImageError
    from .image_arm import _ksymtab

    ram_size = spec.ram_size

    def phys_word(virt: int) -> int:
        p = virt - PAGE_OFFSET
        if not 0 <= p <= ram_size - 4:
            raise ImageError(f"{virt:#x} is not in the lowmem linear map")
        return struct.unpack("<I", m.read_phys(p, 4))[0]

    text = m.run_serial_cmd("cat /proc/iomem", timeout=30, check=True)
    iomem = [(len(g[0]) // 2, int(g[1], 16), int(g[2], 16), g[3].strip())
             for g in _IOMEM_RE.findall(text)]
    ram = [(s, e) for d, s, e, n in iomem if d == 0 and n == "System RAM"]
    rs, rn = spec.ring_phys, spec.ring_size
    if rn and any(s <= rs + rn - 1 and rs <= e for s, e in ram):
        raise ImageError(f"the ring region {rs:#x}+{rn:#x} is in System RAM "
                         f"{ram}: memmap= did not keep it out")
    db = spec.doorbell_phys
    if any(s <= db + 4095 and db <= e for s, e in ram):
        raise ImageError(f"the doorbell page {db:#x} is in System RAM {ram}: "
                         "memmap= did not keep it out")
    named = {n: (s, e) for d, s, e, n in iomem if d == 1}
    code, data = named.get("Kernel code"), named.get("Kernel data")
    if code is None or data is None or \
            code[0] != int(syms["_text"], 16) - PAGE_OFFSET:
        raise ImageError(f"/proc/iomem's Kernel code {code} does not start "
                         f"at _text - PAGE_OFFSET (nokaslr?)")
    lo, hi = code[0], data[1] + 1
    blob = m.read_phys(lo, hi - lo)
    rel = _ksymtab(blob, DATA_SYMBOLS, True, lambda o: o)
    sysmap = {n: (lo + o + PAGE_OFFSET) & 0xFFFFFFFF for n, o in rel.items()}
    missing = [n for n in DATA_SYMBOLS if n not in sysmap]
    if missing:
        raise ImageError(f"the kernel's export table lacks {missing}")
    for n, v in sysmap.items():
        syms.setdefault(n, hex(v))
    t = offsets["task_struct"]

    def comm_at(task: int) -> bytes:
        return m.read_phys(task - PAGE_OFFSET + t["comm"],
                           t["comm_size"]).split(b"\0")[0]

    comm = comm_at(sysmap["init_task"])
    if comm != b"swapper/0":
        raise ImageError(f"init_task.comm reads {comm!r}, not 'swapper/0': "
                         "the offsets or the layout are wrong")
    pcpu0 = phys_word(sysmap["__per_cpu_offset"])
    cur = phys_word((sysmap["current_task"] + pcpu0) & 0xFFFFFFFF)
    ccomm = comm_at(cur)
    if not ccomm or not all(32 <= c < 127 for c in ccomm):
        raise ImageError(f"current_task on CPU 0 is {cur:#x}, whose comm "
                         f"reads {ccomm!r}")
    vuln = m.run_serial_cmd(
        "cat /sys/devices/system/cpu/vulnerabilities/meltdown", timeout=30)
    if "PTI" in vuln:
        raise ImageError(f"the kernel isolates its page tables ({vuln}); "
                         "the host expects one set for user and kernel")
    vdso = vdso_facts(m, blob)
    return {"ram_ranges": [[hex(s), hex(e)] for s, e in ram],
            "doorbell_in_system_ram": False,
            "page_offset": hex(PAGE_OFFSET),
            "per_cpu_offset0": hex(pcpu0),
            "current_task_at_snapshot": ccomm.decode(),
            "paging_levels": 3, "pae": True, "page_size": 4096,
            "meltdown": vuln.strip(),
            "symbols_source": "kallsyms (text) + export table (data)",
            "current": dict(CURRENT_TASK),
            "syscall_entry": dict(SYSCALL_ENTRY),
            "sysenter_entry": dict(SYSENTER_ENTRY),
            "vdso": vdso,
            "user_syscall_entry": "sysenter"}


def vdso_facts(m, kernel_blob: bytes) -> dict:
    """Checks that processes have a vDSO whose __kernel_vsyscall enters by
    sysenter, with the int $0x80 the kernel's restarts (and linjector)
    rely on just before its landing pad; returns the facts.

    ``kernel_blob`` is the kernel's code and data from the RAM file: the
    vDSO's pages are the kernel's own copy of the image, which boot has
    patched for the CPU (without SEP the sysenter would be NOPs)."""
    from .image import ImageError

    maps = m.run_serial_cmd("grep -c '\\[vdso\\]' /proc/self/maps",
                            timeout=30)
    if maps.strip() != "1":
        raise ImageError(f"processes have no vDSO ({maps!r} [vdso] lines "
                         "in /proc/self/maps): they would enter the kernel "
                         "by int $0x80 only")
    flags = m.run_serial_cmd("grep -m1 '^flags' /proc/cpuinfo", timeout=30)
    if " sep" not in flags:
        raise ImageError(f"the CPU has no SEP ({flags!r}): the vDSO would "
                         "use int $0x80")
    n = kernel_blob.count(KERNEL_VSYSCALL_SYSENTER)
    if n != 1:
        raise ImageError(f"__kernel_vsyscall's sysenter sequence "
                         f"{KERNEL_VSYSCALL_SYSENTER.hex()} is in the "
                         f"kernel's image {n} times, not once")
    pad = (kernel_blob.find(KERNEL_VSYSCALL_SYSENTER) +
           len(KERNEL_VSYSCALL_SYSENTER) - 4)
    return {"present": True,
            "kernel_vsyscall": KERNEL_VSYSCALL_SYSENTER.hex(" "),
            "int80_landing_pad_page_offset": hex(pad % 4096),
            "note": ("__kernel_vsyscall pushes ecx, edx, ebp, copies esp "
                     "to ebp and executes sysenter; the kernel returns to "
                     "int80_landing_pad (pop ebp, edx, ecx; ret), whose "
                     "2 bytes before are int $0x80 (cd 80)")}
