"""The MIPS parts of the generic images (``mipsel``: Debian's 4kc-malta
kernel on QEMU's Malta board).

Used by :mod:`pandagpm.image`, which owns the recipe table; this module
holds what only the MIPS kernels need:

* :data:`HEADER_DEFINES` -- constants compiled from the kernel's Debian
  headers with the cross compiler (as for arm and i386: the kernel has
  no BTF): the PTE bits and the page-table geometry the host's walker
  (``csrc/arch/mmu_mips.c``) assumes, ``THREAD_SIZE``, and the offsets
  in ``struct pt_regs`` that linjector uses. The build fails if they are
  not the walker's.
* :func:`layout_facts` -- on the booted guest, through the shared RAM
  file: the kernel in kseg0 (physical = virtual - 0x80000000), the
  doorbell page outside System RAM, ``init_task`` from the export
  table, and the two kernel variables the host reads, found in the code
  that uses them: ``pgd_current[]`` (the running process's page tables,
  which the TLB refill handler at EBase loads: MIPS refills its TLB in
  software, so no register holds a page-table root) and ``kernelsp[]``
  (the running thread's kernel stack, which every exception entry
  loads: the thread_info at its base starts with the task pointer).
"""

from __future__ import annotations

import re
import struct

__all__ = ["ARCHES", "CURRENT_TASK", "HEADER_DEFINES", "HEADER_INCLUDES",
           "SYSCALL_ENTRY", "WALKER", "layout_facts"]

#: The images this module serves.
ARCHES = ("mipsel", "mips64el")

#: kseg0: the cached direct map of the first 512 MiB of physical memory
#: (ckseg0, its sign extension, on 64-bit kernels, which also reach all
#: of it through xkphys: 0x9800... is the cached window).
KSEG0 = 0x80000000
KSEG_SIZE = 0x20000000
CKSEG0 = 0xFFFFFFFF80000000
XKPHYS_MASK = (1 << 59) - 1

#: Data symbols from the export table (no CONFIG_KALLSYMS_ALL).
EXPORTED_DATA = ("init_task", "ebase")

HEADER_INCLUDES = ("asm/pgtable.h", "asm/ptrace.h", "asm/processor.h")

#: Name -> C constant expression, compiled against the kernel's headers.
HEADER_DEFINES = {
    "PAGE_SHIFT": "PAGE_SHIFT",
    "PGDIR_SHIFT": "PGDIR_SHIFT",
    "PTRS_PER_PGD": "PTRS_PER_PGD",
    "PTRS_PER_PTE": "PTRS_PER_PTE",
    "PTE_SIZE": "sizeof(pte_t)",
    "PFN_SHIFT": "_PFN_SHIFT",
    "PAGE_PRESENT": "_PAGE_PRESENT",
    "PAGE_WRITE": "_PAGE_WRITE",
    "PAGE_ACCESSED": "_PAGE_ACCESSED",
    "PAGE_MODIFIED": "_PAGE_MODIFIED",
    "PAGE_VALID": "_PAGE_VALID",
    "PAGE_DIRTY": "_PAGE_DIRTY",
    "THREAD_SIZE": "THREAD_SIZE",
    "PT_R0": "offsetof(struct pt_regs, regs[0])",
    "PT_EPC": "offsetof(struct pt_regs, cp0_epc)",
    "PT_SIZE": "sizeof(struct pt_regs)",
}

#: What the host's walker (csrc/arch/mmu_mips.c) and row assume, per arch.
WALKER = {
    "mipsel": {"PAGE_SHIFT": 12, "PGDIR_SHIFT": 22, "PTRS_PER_PGD": 1024,
               "PTRS_PER_PTE": 1024, "PTE_SIZE": 4, "PFN_SHIFT": 12,
               "PAGE_PRESENT": 1, "PAGE_WRITE": 2, "PAGE_DIRTY": 256,
               "THREAD_SIZE": 8192, "PT_R0": 32, "PT_EPC": 180},
    # 3 levels: 1024 x 8-byte pgd (order 1), 512-entry pmd and pte tables.
    "mips64el": {"PAGE_SHIFT": 12, "PGDIR_SHIFT": 30, "PMD_SHIFT": 21,
                 "PTRS_PER_PGD": 1024, "PTRS_PER_PMD": 512,
                 "PTRS_PER_PTE": 512, "PTE_SIZE": 8, "PFN_SHIFT": 14,
                 "PAGE_PRESENT": 1, "PAGE_WRITE": 2, "PAGE_HUGE": 16,
                 "PAGE_DIRTY": 1024, "THREAD_SIZE": 16384,
                 "TASK_SIZE64": 1 << 40, "PT_R0": 0, "PT_EPC": 296},
}

#: Only 64-bit headers have these.
HEADER_DEFINES_64 = {
    "PMD_SHIFT": "PMD_SHIFT",
    "PTRS_PER_PMD": "PTRS_PER_PMD",
    "PAGE_HUGE": "_PAGE_HUGE",
    "TASK_SIZE64": "TASK_SIZE64",
}


def header_defines(arch: str) -> dict[str, str]:
    """The constants to compile from ``arch``'s kernel headers."""
    return {**HEADER_DEFINES, **(HEADER_DEFINES_64 if arch == "mips64el"
                                 else {"TASK_SIZE": "TASK_SIZE"})}

#: How the host finds the running task (see docs/image.md); 64-bit
#: kernels: u64 and ~(16 KiB - 1).
CURRENT_TASK = {
    "symbol": "kernelsp",
    "pointer_size": 4,
    "rule": ("current = *(u32 *)(kernelsp[0] & ~(THREAD_SIZE - 1)): "
             "kernelsp[cpu] is the running thread's kernel stack (every "
             "exception entry loads it), whose base holds its "
             "thread_info, whose first word is the task; in the kernel "
             "after the entry's SAVE_SOME, $28 holds the thread_info "
             "too"),
}

#: The syscall entry to break on, 64-bit kernels (n64 processes).
SYSCALL_ENTRY_64 = {
    "symbol": "handle_sys64",
    "note": ("The syscall exception goes to handle_sys (o32's), whose "
             "SAVE_SOME saves the user's registers in a struct pt_regs "
             "at sp and stores EPC + 4 in pt_regs.cp0_epc; a number "
             "outside o32's (and n32's) range goes on to handle_sys64. At "
             "its first instruction v0 is the number and a0-a5 the "
             "arguments (live), the return address is the word at sp + "
             "PT_EPC, and a3 is not yet saved for restarts (its first "
             "instruction does that)."),
}

#: The syscall entry to break on, 32-bit kernels.
SYSCALL_ENTRY = {
    "symbol": "loads_done",
    "note": ("handle_sys (o32; the general exception vector jumps to it "
             "for a syscall exception) saves the user's registers in a "
             "struct pt_regs on the kernel stack (SAVE_SOME: sp is its "
             "address, $28 the thread_info), stores EPC + 4 (the user "
             "address after the syscall instruction) in pt_regs.cp0_epc, "
             "saves a3 for restarts in regs[26], and loads arguments 5-8 "
             "from the user stack into t5-t8 (the local label loads_done "
             "follows the loads). At loads_done v0 is the number, a0-a3 "
             "and t5, t6 the arguments (live registers), and the return "
             "address is the word at sp + PT_EPC; the kernel reads the "
             "number and arguments from these registers, and restores "
             "the user's from pt_regs on return. The result is in v0, "
             "with a3 = 1 (v0 a positive errno) on failure."),
}

_IOMEM_RE = re.compile(r"^(\s*)([0-9a-f]+)-([0-9a-f]+) : (.+)$", re.M)

# MIPS32 instruction fields.
_OP_LUI, _OP_LW, _OP_LD = 0x0F, 0x23, 0x37


def _insns(code: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(code) // 4}I", code[:len(code) & ~3]))


def _hi_lo_loads(words: list[int], bits: int = 32) -> list[int]:
    """Addresses that ``lui rt, hi`` then ``lw rX, lo(rt)`` form, in order:
    how MIPS code reaches a global variable (``lo`` is signed). The base
    may also be ``addu rd, rt, rs`` of it (an index: SMP code adds the
    CPU's offset, 0 for CPU 0)."""
    out = []
    for i, w in enumerate(words):
        if w >> 26 != _OP_LUI:
            continue
        based, hi = {(w >> 16) & 31}, w & 0xFFFF
        for v in words[i + 1:i + 8]:
            op, rs, rt = v >> 26, (v >> 21) & 31, (v >> 16) & 31
            if op == 0 and v & 0x3F in (0x21, 0x2D) and (rs in based or
                                                        rt in based):
                based.add((v >> 11) & 31)  # addu / daddu rd, rs, rt
            elif op in (_OP_LW, _OP_LD) and rs in based:
                lo = v & 0xFFFF
                lo -= 0x10000 if lo & 0x8000 else 0
                addr = ((hi << 16) + lo) & 0xFFFFFFFF
                if bits == 64 and addr & 0x80000000:
                    addr |= 0xFFFFFFFF00000000  # lui sign-extends
                out.append(addr)
                break
    return out


def layout_facts(m, spec, syms: dict[str, str],
                 offsets: dict[str, dict[str, int]]) -> dict:
    """Check the kernel's layout on the booted guest ``m``; add
    ``init_task``, ``ebase``, ``kernelsp`` (and on 32-bit kernels
    ``pgd_current``) to ``syms`` and return the profile's facts (hex
    strings for addresses)."""
    from .image import ImageError
    from .image_arm import _ksymtab

    is64 = spec.name == "mips64el"
    bits, wsize = (64, 8) if is64 else (32, 4)
    want = WALKER[spec.name]
    got = offsets.get("defines", {})
    bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    if bad:
        raise ImageError(f"the kernel's headers disagree with the host's "
                         f"MIPS walker and entry view (got, expected): {bad}")
    ram_size = spec.ram_size
    kbase = CKSEG0 if is64 else KSEG0

    def phys(virt: int) -> int:
        if kbase <= virt < kbase + KSEG_SIZE:
            return virt - kbase
        if is64 and virt >> 62 == 2:
            return virt & XKPHYS_MASK
        raise ImageError(f"{virt:#x} is not a kseg0 (or xkphys) address")

    def word(virt: int) -> int:
        p = phys(virt)
        if p > ram_size - wsize:
            raise ImageError(f"{virt:#x} is outside RAM")
        return struct.unpack("<Q" if is64 else "<I",
                             m.read_phys(p, wsize))[0]

    text = m.run_serial_cmd("cat /proc/iomem", timeout=30, check=True)
    iomem = [(len(g[0]) // 2, int(g[1], 16), int(g[2], 16), g[3].strip())
             for g in _IOMEM_RE.findall(text)]
    ram = [(s, e) for d, s, e, n in iomem if d == 0 and n == "System RAM"]
    db = spec.doorbell_phys
    if not ram or any(s <= db + 4095 and db <= e for s, e in ram):
        raise ImageError(f"the doorbell page {db:#x} is in System RAM {ram}: "
                         "mem= did not keep it out")
    rp, rs = spec.ring_phys, spec.ring_size
    if rs and any(s < rp + rs and rp <= e for s, e in ram):
        raise ImageError(f"the ring area {rp:#x}+{rs:#x} overlaps System "
                         f"RAM {ram}: mem= did not keep it out")
    named = {n: (s, e) for d, s, e, n in iomem if d == 1}
    code, data = named.get("Kernel code"), named.get("Kernel data")
    stext = phys(int(syms["_stext"], 16))
    if code is None or data is None or not code[0] <= stext < code[1]:
        raise ImageError(f"/proc/iomem's Kernel code {code} does not hold "
                         f"_stext's physical address (nokaslr?)")
    lo, hi = code[0], data[1] + 1
    blob = m.read_phys(lo, hi - lo)
    rel = _ksymtab(blob, EXPORTED_DATA, False, lambda o: lo + o + kbase,
                   **({"word": 8} if is64 else {}))
    missing = [n for n in EXPORTED_DATA if n not in rel]
    if missing:
        raise ImageError(f"the kernel's export table lacks {missing}")
    for n, v in rel.items():
        syms.setdefault(n, hex(v))
    t = offsets["task_struct"]

    def comm_at(task: int) -> bytes:
        return m.read_phys(phys(task) + t["comm"],
                           t["comm_size"]).split(b"\0")[0]

    comm = comm_at(int(syms["init_task"], 16))
    if comm != b"swapper/0":
        raise ImageError(f"init_task.comm reads {comm!r}, not 'swapper/0': "
                         "the offsets or the layout are wrong")
    # kernelsp: the first global that handle_sys's SAVE_SOME loads (the
    # syscall exception's handler; o32's on 64-bit kernels too).
    hs = int(syms["handle_sys"], 16)
    entry = _insns(m.read_phys(phys(hs), 64 * 4))
    loads = _hi_lo_loads(entry, bits)
    if not loads:
        raise ImageError("handle_sys's entry loads no global (kernelsp)")
    kernelsp = loads[0]
    syms["kernelsp"] = hex(kernelsp)
    ksp = word(kernelsp)
    ti = ksp & ~(want["THREAD_SIZE"] - 1)
    cur = word(ti + offsets["thread_info"]["task"])
    ccomm = comm_at(cur)
    if not ccomm or not all(32 <= c < 127 for c in ccomm):
        raise ImageError(f"kernelsp[0] {ksp:#x} gives the task {cur:#x}, "
                         f"whose comm reads {ccomm!r}")
    facts = {"ram_ranges": [[hex(s), hex(e)] for s, e in ram],
             "doorbell_in_system_ram": False,
             "kseg0": hex(kbase),
             "current_task_at_snapshot": ccomm.decode(),
             "page_size": 1 << want["PAGE_SHIFT"],
             "thread_size": want["THREAD_SIZE"],
             # kernelsp[] is indexed by CPU: CPU 0's is the symbol itself.
             "per_cpu_offset0": "0x0",
             "symbols_source": ("kallsyms (text) + export table (init_task, "
                                "ebase) + code (kernelsp, pgd_current)"),
             "header_defines": dict(got),
             "current": dict(CURRENT_TASK, pointer_size=wsize),
             "syscall_entry": dict(SYSCALL_ENTRY_64 if is64
                                   else SYSCALL_ENTRY)}
    if is64:
        # MIPS64R2 kernels keep the page directory in CP0 Context
        # (CONFIG_MIPS_PGD_C0_CONTEXT), not in a variable: the walker
        # goes current -> mm -> pgd (csrc/arch/mmu_mips.c).
        facts["paging_levels"] = 3
        facts["mmu_inputs"] = [hex(phys(kernelsp)),
                               hex(t["mm"]), hex(offsets["mm_struct"]["pgd"])]
        return facts
    # pgd_current: the TLB refill handler at EBase (the exception base,
    # which MIPS32R2 kernels allocate at boot: the exported ebase) loads
    # it.
    eb = word(int(syms["ebase"], 16))
    refill = _insns(m.read_phys(phys(eb), 0x80))
    pgds = _hi_lo_loads(refill)
    if not pgds:
        raise ImageError(f"the TLB refill handler at {eb:#x} loads no "
                         "global (pgd_current)")
    pgd_current = pgds[0]
    syms["pgd_current"] = hex(pgd_current)
    pgd = word(pgd_current)
    if not KSEG0 <= pgd < KSEG0 + ram_size:
        raise ImageError(f"pgd_current[0] is {pgd:#x}, not a kseg0 table")
    facts.update({"paging_levels": 2,
                  "pgd_current_at_snapshot": hex(pgd),
                  # The host's walker reads pgd_current[0].
                  "mmu_inputs": [hex(phys(pgd_current))]})
    return facts
