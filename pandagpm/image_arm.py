"""The ARM parts of the generic images (``aarch64`` and ``arm``).

Used by :mod:`pandagpm.image`, which owns the recipe table; this module
holds what only the ARM kernels need:

* :func:`btf_in_raw_image` -- arm64's ``Image`` is a raw boot image with
  no ELF section table, so its ``.BTF`` is found by the BTF header.
* :func:`offsets_from_headers` -- Debian's armmp kernel has no BTF
  (``CONFIG_DEBUG_INFO_BTF`` is off), so the structure offsets are
  compiled from that kernel's own Debian headers package with the cross
  compiler the kernel was built with (gcc 12), the way the kernel makes
  its ``asm-offsets``: the compiler prints each ``offsetof`` as an
  immediate in the assembly it writes, and nothing is run or loaded.
* :func:`layout_facts` -- checks, on the booted guest and through the
  shared RAM file, where the kernel lives in physical memory, that the
  doorbell page is outside the kernel's RAM, and that the recipe for the
  current task gives a real task; returns the facts for the profile.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Callable

from . import btf as _btf

__all__ = ["CURRENT_TASK", "SYSCALL_ENTRY", "btf_in_raw_image",
           "layout_facts", "offsets_from_headers"]

#: How the host finds the running task_struct, per arch (see docs/image.md).
#: ``percpu_symbol`` + the value of ``percpu_base_register`` is the address
#: of a pointer to it; ``kernel_register`` holds it directly once the
#: kernel's entry code has set it (not yet at the syscall entry's first
#: instruction, where the user-mode rule applies).
CURRENT_TASK: dict[str, dict] = {
    "aarch64": {
        "percpu_symbol": "__entry_task",
        "percpu_base_register": "TPIDR_EL1",
        "pointer_size": 8,
        "kernel_register": "SP_EL0",
        "rule": ("user mode, and at el0t_64_sync's first instruction: "
                 "current = *(u64 *)(&__entry_task + TPIDR_EL1); in the "
                 "kernel after kernel_entry (el0_svc and later): current = "
                 "SP_EL0"),
    },
    "arm": {
        "percpu_symbol": "__entry_task",
        "percpu_base_register": "TPIDRPRW",
        "pointer_size": 4,
        "kernel_register": "TPIDRURO",
        "rule": ("user mode, and at vector_swi's first instruction: "
                 "current = *(u32 *)(&__entry_task + TPIDRPRW); in the "
                 "kernel after reload_current (early in vector_swi and "
                 "every other entry): current = TPIDRURO (in user mode "
                 "TPIDRURO is the user's TLS pointer)"),
    },
}

#: The syscall entry point to break on, per arch.
SYSCALL_ENTRY: dict[str, dict] = {
    "aarch64": {
        "symbol": "el0t_64_sync",
        "c_symbol": "el0_svc",
        "note": ("el0t_64_sync is the handler of every synchronous "
                 "exception from 64-bit EL0 (vectors + 0x400 branches to "
                 "it); it is a system call when ESR_EL1.EC is 0x15 (SVC64). "
                 "At its first instruction x0-x30, SP_EL0 and ELR_EL1 "
                 "(the return address, after the svc) are the user's; x8 "
                 "is the syscall number. el0_svc(struct pt_regs *) runs "
                 "for system calls only, with the user registers saved in "
                 "pt_regs at x0."),
    },
    "arm": {
        "symbol": "vector_swi",
        "breakpoint_offset": 8,
        "table": "sys_call_table",
        "note": ("vector_swi is the SVC handler, but on cortex-a15 the "
                 "vector goes to vector_bhb_loop8_swi (a Spectre-BHB "
                 "variant, even with mitigations=off), which saves r0-r12 "
                 "itself and jumps to vector_swi + 8, past vector_swi's "
                 "own two saving instructions: break at symbol + "
                 "breakpoint_offset (checked at build time), which every "
                 "system call reaches. There the CPU is in SVC mode: "
                 "r0-r12 are still the user's (and saved at SP), r7 is "
                 "the EABI syscall number, LR (lr_svc) the user return "
                 "address (after the svc; user code is often Thumb: "
                 "SPSR.T), SPSR the user CPSR; SP is the kernel stack "
                 "and the user SP is banked (not in the gdbstub's "
                 "registers; it is at SP + 52 once vector_swi has saved "
                 "it, or read it from pt_regs)."),
    },
}

#: The cross compiler prefix for compiling against an arch's headers.
_CROSS_COMPILE = {"arm": "arm-linux-gnueabihf-",
                  "aarch64": "aarch64-linux-gnu-",
                  "i386": "i686-linux-gnu-"}

# The BTF header a kernel writes: magic 0xEB9F, version 1, flags 0, and a
# 24-byte header (little-endian: both ARM images are little-endian).
_BTF_HEAD = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"


def btf_in_raw_image(data: bytes) -> _btf.BTF | None:
    """The kernel's BTF inside a raw boot image, or None if there is none.

    Each place the header appears is tried in turn; the first that parses
    as a BTF holding ``task_struct`` wins.
    """
    start = 0
    while True:
        i = data.find(_BTF_HEAD, start)
        if i < 0:
            return None
        start = i + 1
        try:
            b = _btf.BTF.from_bytes(data[i:])
            b.find("task_struct")
            return b
        except _btf.BTFError:
            continue


# --------------------------------------------------------------------------
# Offsets from the kernel's headers.
# --------------------------------------------------------------------------

_INCLUDES = ("linux/kbuild.h", "linux/sched.h", "linux/cred.h",
             "linux/mm_types.h", "linux/thread_info.h")

_MARK_RE = re.compile(r'->(gpm__\w+) [#$]?(-?\d+)\b')


def _offsets_source(requests: dict[str, tuple[str, ...]]) -> str:
    lines = [f"#include <{h}>" for h in _INCLUDES]
    lines += ["void gpm_offsets(void);", "void gpm_offsets(void)", "{"]
    for sname, members in requests.items():
        lines.append(f"\tDEFINE(gpm__sizeof__{sname}, "
                     f"sizeof(struct {sname}));")
        for m in members:
            lines.append(f"\tOFFSET(gpm__{sname}__{m}, {sname}, {m});")
            lines.append(f"\tDEFINE(gpm__size__{sname}__{m}, "
                         f"sizeof(((struct {sname} *)0)->{m}));")
    lines.append("}")
    return "\n".join(lines) + "\n"


def offsets_from_headers(tree: Path, release: str, spec,
                         requests: dict[str, tuple[str, ...]],
                         run: Callable[..., str]) -> dict[str, dict[str, int]]:
    """Compile the structure offsets from the kernel's Debian headers.

    ``tree`` holds the extracted ``linux-headers-<release>``,
    ``linux-headers-<abi>-common`` and ``linux-kbuild-<series>``
    packages.  The result has the shape of the BTF-made offsets:
    ``{struct: {member: offset}}`` plus ``task_struct.comm_size``,
    ``task_struct.sizeof`` and ``cred.uid_size``.
    """
    src = tree / "usr" / "src"
    hdr = src / f"linux-headers-{release}"
    mk = hdr / "Makefile"
    try:
        text = mk.read_text()
    except OSError as err:
        raise _image_error(f"the kernel headers lack {mk}: {err}") from err
    # The package's Makefile includes the common tree by absolute path;
    # point it at the extracted copy.
    mk.write_text(re.sub(r"(?m)^include /usr/src/", f"include {src}/",
                         text))
    work = tree / "gpm-offsets"
    work.mkdir(exist_ok=True)
    (work / "Kbuild").write_text("obj-m := gpm_offsets.o\n")
    (work / "gpm_offsets.c").write_text(_offsets_source(requests))
    cross = _CROSS_COMPILE.get(spec.name)
    if cross is None:
        raise _image_error(f"no cross compiler known for {spec.name}")
    run(["make", "-s", "-C", str(hdr), f"M={work}", f"ARCH={spec.name}",
         f"CROSS_COMPILE={cross}", "gpm_offsets.s"],
        f"compiling structure offsets against {hdr.name} (needs "
        f"{cross}gcc-12: apt-get install gcc-{cross[:-1]})")
    asm = (work / "gpm_offsets.s").read_text()
    vals = {m.group(1): int(m.group(2)) for m in _MARK_RE.finditer(asm)}
    out: dict[str, dict[str, int]] = {}
    for sname, members in requests.items():
        out[sname] = {}
        for m in members:
            key = f"gpm__{sname}__{m}"
            if key not in vals:
                raise _image_error(f"no offset for {sname}.{m} in the "
                                   "compiler's output")
            out[sname][m] = vals[key]
    t = out["task_struct"]
    t["comm_size"] = vals["gpm__size__task_struct__comm"]
    t["sizeof"] = vals["gpm__sizeof__task_struct"]
    out["cred"]["uid_size"] = vals["gpm__size__cred__uid"]
    return out


def _image_error(msg: str) -> Exception:
    from .image import ImageError
    return ImageError(msg)


# --------------------------------------------------------------------------
# Facts checked on the booted guest.
# --------------------------------------------------------------------------

_IOMEM_RE = re.compile(r"^(\s*)([0-9a-f]+)-([0-9a-f]+) : (.+)$", re.M)


def _iomem(m) -> list[tuple[int, int, int, str]]:
    """``/proc/iomem`` as (depth, start, end, name); read as root."""
    text = m.run_serial_cmd("cat /proc/iomem", timeout=30, check=True)
    return [(len(g[0]) // 2, int(g[1], 16), int(g[2], 16), g[3].strip())
            for g in _IOMEM_RE.findall(text)]


#: Data symbols that /proc/kallsyms lacks (Debian builds these kernels
#: without CONFIG_KALLSYMS_ALL): exported ones are read from the kernel's
#: export table (``__ksymtab``) in guest RAM; ``__entry_task`` (a per-CPU
#: variable, not exported) is found as described in :func:`layout_facts`.
EXPORTED_DATA = {
    "aarch64": ("init_task", "__per_cpu_offset", "kimage_voffset",
                "memstart_addr", "cpu_number"),
    "arm": ("init_task", "__per_cpu_offset", "__pv_phys_pfn_offset",
            "__pv_offset"),
}


def _ksymtab(blob: bytes, names: tuple[str, ...], prel32: bool,
             str_addr: Callable[[int], int]) -> dict[str, int]:
    """Exported symbols from a kernel's export table inside ``blob``.

    With PREL32 entries (arm64) each ``struct kernel_symbol`` holds three
    32-bit offsets relative to their own fields (value, name, namespace),
    and the value comes back as an offset into ``blob``.  Without (arm),
    it holds absolute pointers: the name's address is ``str_addr(offset
    of the name in blob)`` and the value is the absolute address.
    """
    import array
    found: dict[str, int] = {}
    strpos: dict[int, str] = {}
    for name in names:
        for mt in re.finditer(b"\0" + re.escape(name.encode()) + b"\0",
                              blob):
            strpos[mt.start() + 1] = name
    if prel32:
        words = array.array("i")
        words.frombytes(blob[:len(blob) & ~3])
        for i, v in enumerate(words):
            name = strpos.get(4 * i + v)
            if name is not None and name not in found and i > 0:
                found[name] = 4 * (i - 1) + words[i - 1]
    else:
        for off, name in strpos.items():
            needle = struct.pack("<I", str_addr(off))
            j = blob.find(needle)
            while j >= 0 and (j % 4 or j < 4):
                j = blob.find(needle, j + 1)
            if j >= 4 and name not in found:
                found[name] = struct.unpack_from("<I", blob, j - 4)[0]
    return found


def _arm_entry_task(code: bytes, addr: int) -> int | None:
    """``&__entry_task`` from the A32 code of vector_swi at ``addr``.

    Its ``reload_current`` loads ``__entry_task`` at ``sym + TPIDRPRW``
    (the symbol's address built by a movw/movt pair) and writes it to
    TPIDRURO (``mcr p15, 0, rX, c13, c0, 3``); the pair before that mcr
    is the address.
    """
    ins = struct.unpack(f"<{len(code) // 4}I", code[:len(code) & ~3])
    for k, w in enumerate(ins):
        if w & 0x0FFF0FFF != 0x0E0D0F70:          # mcr p15,0,Rt,c13,c0,3
            continue
        low: dict[int, int] = {}
        value = None
        for x in ins[max(0, k - 8):k]:
            rd, imm = (x >> 12) & 0xF, ((x >> 4) & 0xF000) | (x & 0xFFF)
            if x & 0x0FF00000 == 0x03000000:      # movw rd, #imm16
                low[rd] = imm
            elif x & 0x0FF00000 == 0x03400000 and rd in low:   # movt
                value = low[rd] | (imm << 16)
        return value
    return None


def _arm_branch_target(word: int, addr: int) -> int | None:
    """The target of an A32 ``b`` (always) at ``addr``, else None."""
    if word & 0xFF000000 != 0xEA000000:
        return None
    imm = word & 0xFFFFFF
    if imm & 0x800000:
        imm -= 1 << 24
    return (addr + 8 + 4 * imm) & 0xFFFFFFFF


def _arm_swi_breakpoint(m, linear, sym: dict[str, int]) -> int:
    """Check that the BHB variants of the SVC vector join vector_swi at
    vector_swi + 8 (after its ``sub sp`` and ``stmia sp, {r0-r12}``)."""
    from .image import ImageError
    swi = sym["vector_swi"]
    head = struct.unpack("<2I", m.read_phys(linear(swi), 8))
    if head[0] & 0xFFFFF000 != 0xE24DD000 or head[1] != 0xE88D1FFF:
        raise ImageError(f"vector_swi does not start with sub sp / stmia "
                         f"{{r0-r12}}: {head[0]:#010x} {head[1]:#010x}")
    for name in ("vector_bhb_bpiall_swi", "vector_bhb_loop8_swi"):
        if name not in sym:
            continue
        code = m.read_phys(linear(sym[name]), 64)
        targets = [_arm_branch_target(w, sym[name] + 4 * i) for i, w in
                   enumerate(struct.unpack("<16I", code))]
        if swi + 8 not in targets:
            raise ImageError(f"{name} does not branch to vector_swi + 8")
    return swi + 8


def layout_facts(m, spec, syms: dict[str, str],
                 offsets: dict[str, dict[str, int]],
                 kbtf: _btf.BTF | None = None) -> dict:
    """Check the kernel's memory layout on the booted guest ``m`` and
    return the profile's facts (hex strings for addresses).

    Adds the data symbols of :data:`EXPORTED_DATA` and ``__entry_task``
    to ``syms``.  On arm64 ``&__entry_task`` is ``&cpu_number`` (an
    exported per-CPU variable) moved by the two variables' distance in
    BTF's ``.data..percpu``; on arm it is read from vector_swi's code.
    Every address is then checked through the RAM file: init_task's comm
    must be ``swapper/0`` and CPU 0's ``__entry_task`` a task with a
    printable name.
    """
    from .image import ImageError

    sym = {k: int(v, 16) for k, v in syms.items()}
    ram_size, base = spec.ram_size, spec.ram_base
    words = 8 if spec.name == "aarch64" else 4
    fmt = "<Q" if words == 8 else "<I"
    mask = 2**(8 * words) - 1

    def phys_word(p: int) -> int:
        if not base <= p <= base + ram_size - words:
            raise ImageError(f"physical address {p:#x} is outside RAM")
        return struct.unpack(fmt, m.read_phys(p, words))[0]

    iomem = _iomem(m)
    ram = [(s, e) for d, s, e, n in iomem if d == 0 and n == "System RAM"]
    if not ram or ram[0][0] != base:
        raise ImageError(f"/proc/iomem's System RAM {ram} does not start at "
                         f"the RAM base {base:#x}")
    rs, rn = spec.ring_phys, spec.ring_size
    if rn and any(s <= rs + rn - 1 and rs <= e for s, e in ram):
        raise ImageError(f"the ring region {rs:#x}+{rn:#x} is in System RAM "
                         f"{ram}: mem= did not keep it out")
    db = spec.doorbell_phys
    if any(s <= db + 4095 and db <= e for s, e in ram):
        raise ImageError(f"the doorbell page {db:#x} is in the kernel's "
                         f"System RAM {ram}: mem= did not keep it out")
    named = {n: (s, e) for d, s, e, n in iomem if d == 1}
    if "Kernel code" not in named or "Kernel data" not in named:
        raise ImageError("/proc/iomem shows no 'Kernel code'/'Kernel data'")
    lo, hi = named["Kernel code"][0], named["Kernel data"][1] + 1
    blob = m.read_phys(lo, hi - lo)

    facts: dict = {"ram_ranges": [[hex(s), hex(e)] for s, e in ram],
                   "doorbell_in_system_ram": False}
    found: dict[str, int] = {}
    if spec.name == "aarch64":
        # The kernel image is mapped at a fixed distance from its physical
        # load address (kimage_voffset); "Kernel code" starts at _stext.
        voff = (sym["_stext"] - lo) & mask
        rel = _ksymtab(blob, EXPORTED_DATA["aarch64"], True, lambda o: o)
        found = {n: (lo + o + voff) & mask for n, o in rel.items()}

        def kimg(v: int) -> int:
            return (v - voff) & mask
        if phys_word(kimg(found["kimage_voffset"])) != voff:
            raise ImageError("kimage_voffset read through the RAM file does "
                             "not match /proc/iomem's Kernel code")
        phys_offset = phys_word(kimg(found["memstart_addr"]))
        page_offset = (-(1 << 48)) & mask        # CONFIG_ARM64_VA_BITS=48

        def lm(v: int) -> int:
            return (v & ~page_offset) + phys_offset

        def linear(v: int) -> int:
            # The linear map is the lower half of the kernel's addresses;
            # the kernel image (init_task, for one) is in the upper half.
            return lm(v) if not v & (1 << 47) else kimg(v)
        if kbtf is None:
            raise ImageError("the arm64 profile needs the kernel's BTF")
        found["__entry_task"] = found["cpu_number"] + kbtf.var_offset(
            ".data..percpu", "__entry_task") - kbtf.var_offset(
            ".data..percpu", "cpu_number")
        facts["syscall_breakpoint"] = hex(sym["el0t_64_sync"])
        facts.update({"kimage_voffset": hex(voff),
                      "page_offset": hex(page_offset),
                      "phys_offset": hex(phys_offset),
                      "va_bits": 48, "paging_levels": 4, "page_size": 4096})
        image_phys = kimg
    else:
        # 32-bit ARM: the kernel image is in the linear map, virt =
        # phys - PHYS_OFFSET + PAGE_OFFSET (CONFIG_PAGE_OFFSET).
        page_offset = 0xC0000000
        phys_offset = ram[0][0]

        def linear(v: int) -> int:
            return v - page_offset + phys_offset
        found = _ksymtab(blob, EXPORTED_DATA["arm"], False,
                         lambda o: lo + o - phys_offset + page_offset)
        if phys_word(linear(found["__pv_phys_pfn_offset"])) << 12 != \
                phys_offset:
            raise ImageError("__pv_phys_pfn_offset does not match the RAM "
                             f"base {phys_offset:#x}")
        swi = linear(sym["vector_swi"])
        et = _arm_entry_task(m.read_phys(swi, 256), sym["vector_swi"])
        if et is None:
            raise ImageError("vector_swi's code does not load __entry_task "
                             "as expected")
        found["__entry_task"] = et
        facts["syscall_breakpoint"] = hex(_arm_swi_breakpoint(m, linear,
                                                              sym))
        facts.update({"page_offset": hex(page_offset),
                      "phys_offset": hex(phys_offset),
                      "paging_levels": 2, "lpae": False,
                      "page_size": 4096})
        image_phys = linear
    missing = [n for n in EXPORTED_DATA[spec.name] if n not in found]
    if missing:
        raise ImageError(f"the kernel's export table lacks {missing}")
    for n, v in found.items():
        syms.setdefault(n, hex(v))
    sym.update(found)

    t = offsets["task_struct"]

    def comm_at(task_phys: int) -> bytes:
        return m.read_phys(task_phys + t["comm"],
                           t["comm_size"]).split(b"\0")[0]

    comm = comm_at(image_phys(sym["init_task"]))
    if comm != b"swapper/0":
        raise ImageError(f"init_task.comm reads {comm!r}, not 'swapper/0': "
                         "the offsets or the layout are wrong")
    pcpu0 = phys_word(image_phys(sym["__per_cpu_offset"]))
    facts["per_cpu_offset0"] = hex(pcpu0)
    # The current-task rule, as far as RAM alone can check it: CPU 0's
    # __entry_task (per-CPU areas are allocated memory, in the linear
    # map) points at a task whose name is printable.
    entry = phys_word(linear((sym["__entry_task"] + pcpu0) & mask))
    ecomm = comm_at(linear(entry))
    if not ecomm or not all(32 <= c < 127 for c in ecomm):
        raise ImageError(f"__entry_task on CPU 0 is {entry:#x}, whose comm "
                         f"reads {ecomm!r}")
    facts["entry_task_at_snapshot"] = ecomm.decode()
    vuln = m.run_serial_cmd(
        "cat /sys/devices/system/cpu/vulnerabilities/meltdown", timeout=30)
    facts["meltdown"] = vuln.strip()
    if "PTI" in vuln:
        raise ImageError(f"the kernel isolates its page tables ({vuln}); "
                         "the host expects one set for user and kernel")
    facts["current"] = dict(CURRENT_TASK[spec.name])
    facts["syscall_entry"] = dict(SYSCALL_ENTRY[spec.name])
    return facts
