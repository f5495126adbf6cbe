/*
 * mmu_mips.c - the MIPS page walk: Linux's own page tables, since MIPS
 * refills its TLB in software and no register holds a table root. See
 * arch_ops.h. The inputs are constants from the image profile
 * ("mmu_inputs"), which the hosts pass instead of registers.
 *
 * MIPS32 inputs: st->reg[0] = the guest-physical address of the kernel's
 * pgd_current[0], the word through which the TLB refill handler finds the
 * running process's page directory. Its value is the directory's kseg0
 * address.
 *
 * MIPS64 inputs (MIPS64R2 kernels keep the directory in CP0 Context, out
 * of the gdbstub's reach): st->reg[0] = the guest-physical address of
 * kernelsp[0], the running thread's kernel stack pointer; st->reg[1] and
 * st->reg[2] = the offsets of mm in task_struct and of pgd in mm_struct.
 * The walk reads the task pointer at the stack's 16 KiB-aligned base
 * (its thread_info), then task->mm->pgd: four reads before the tables.
 *
 * MIPS32 (gpm__mmu_mips32_xlate, Debian's 4kc-malta kernel, checked
 * against its headers at image-build time): kuseg (below 0x80000000) is
 * translated through 2 levels of 1024 4-byte entries, 4 KiB pages: the
 * directory's entries are the kseg0 addresses of page tables (an empty
 * one points at the kernel's invalid_pte_table, whose entries are not
 * present); a PTE is the physical frame number from bit 12 (_PFN_SHIFT)
 * with the software bits _PAGE_PRESENT (bit 0) and _PAGE_WRITE (bit 1)
 * and the hardware dirty bit _PAGE_DIRTY (bit 8: the TLB lets the page be
 * written silently, which Linux sets only for a writable page that is
 * already dirty). A page is user-writable only with both: a clean
 * writable page (a shared file page, written by nobody yet) would not
 * become dirty through a host write. kseg0 and kseg1 are the fixed maps
 * of physical memory (minus 0x80000000 and 0xa0000000), kernel-only;
 * kseg2/kseg3 (vmalloc, kmap) are not translated.
 *
 * MIPS64 (gpm__mmu_mips64_xlate, Debian's 5kc-malta kernel, checked
 * likewise): user addresses below 2^40 (TASK_SIZE64) go through 3 levels
 * of 8-byte entries: a 1024-entry directory (bits 39:30), 512-entry pmd
 * tables (29:21) and page tables (20:12); a pmd entry with _PAGE_HUGE
 * (bit 4) is a PTE of a 2 MiB page. Table pointers are kernel addresses
 * in xkphys (physical | 0x98...) or ckseg0. A PTE holds the frame
 * number from bit 14 (_PFN_SHIFT; the bits between are RI/XI and
 * software bits), _PAGE_PRESENT bit 0, _PAGE_WRITE bit 1 and _PAGE_DIRTY
 * bit 10, with the same writable rule. ckseg0, ckseg1 and xkphys are the
 * fixed maps, kernel-only; the rest (xkseg, cksseg, ckseg3) faults.
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

#define KSEG0        0x80000000ull
#define KSEG1        0xa0000000ull
#define KSEG2        0xc0000000ull
#define PTE_PRESENT  (1ull << 0)
#define PTE_WRITE    (1ull << 1)
#define PTE_DIRTY    (1ull << 8)
#define PFN_SHIFT    12
#define PAGE_SHIFT   12
#define PGDIR_SHIFT  22
#define PTRS_PER_PTE 1024u

/* The physical address of a kseg0 table pointer, or false. */
static bool kseg0_phys(uint64_t va, uint64_t *pa)
{
    if (va < KSEG0 || va >= KSEG1)
        return false;
    *pa = va - KSEG0;
    return true;
}

/* A fixed segment's byte: kernel-only, never writable by the user. */
static int fixed(uint64_t pa, uint64_t seg_end, uint64_t va, gpm__xlate_t *out)
{
    out->phys = pa;
    out->page_left = seg_end - va;
    out->user = false;
    out->writable = false;
    return 0;
}

int gpm__mmu_mips32_xlate(const gpm__mmu_state_t *st, uint64_t va,
                          gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    uint64_t pgd, table, e, off;

    if (va >> 32)
        return GPM_EFAULT; /* a 32-bit CPU has no such address */
    if (va >= KSEG2)
        return GPM_EFAULT;
    if (va >= KSEG1)
        return fixed(va - KSEG1, KSEG2, va, out);
    if (va >= KSEG0)
        return fixed(va - KSEG0, KSEG1, va, out);
    if (gpm__mmu_read_desc(rd, opaque, st->reg[0], 4, false, &pgd) != 0 ||
        !kseg0_phys(pgd, &pgd))
        return GPM_EFAULT;
    if (gpm__mmu_read_desc(rd, opaque, pgd + (va >> PGDIR_SHIFT) * 4, 4, false,
                           &table) != 0 ||
        !kseg0_phys(table, &table))
        return GPM_EFAULT;
    if (gpm__mmu_read_desc(
            rd, opaque, table + ((va >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)) * 4,
            4, false, &e) != 0 ||
        !(e & PTE_PRESENT))
        return GPM_EFAULT;
    off = va & ((1ull << PAGE_SHIFT) - 1);
    out->phys = ((e >> PFN_SHIFT) << PAGE_SHIFT) | off;
    out->page_left = (1ull << PAGE_SHIFT) - off;
    out->user = true;
    out->writable = (e & PTE_WRITE) && (e & PTE_DIRTY);
    return 0;
}

/* MIPS64 (see the top of the file). */
#define CKSEG0        0xffffffff80000000ull
#define CKSEG1        0xffffffffa0000000ull
#define CKSSEG        0xffffffffc0000000ull
#define XKPHYS_PA     ((1ull << 59) - 1)
#define USER_TOP64    (1ull << 40)
#define PTE64_HUGE    (1ull << 4)
#define PTE64_DIRTY   (1ull << 10)
#define PFN64_SHIFT   14
#define PA64_BITS     48
#define PGDIR64_SHIFT 30
#define PMD64_SHIFT   21
#define THREAD64_SIZE 16384ull

/* The physical address behind a kernel pointer to data, or false. */
static bool kern64_phys(uint64_t va, uint64_t *pa)
{
    if (va >= CKSEG0 && va < CKSEG1) {
        *pa = va - CKSEG0;
        return true;
    }
    if (va >> 62 == 2) { /* xkphys: bits 61:59 are the cache attribute */
        *pa = va & XKPHYS_PA;
        return true;
    }
    return false;
}

/* Reads the 8-byte word a kernel pointer points at. */
static int read_kern64(gpm_phys_read_fn rd, void *opaque, uint64_t va,
                       uint64_t *out)
{
    uint64_t pa;

    if (!kern64_phys(va, &pa))
        return GPM_EFAULT;
    return gpm__mmu_read_desc(rd, opaque, pa, 8, false, out);
}

/* The PTE-format entry @e of a page of 2^@shift bytes holding @va. */
static int found64(uint64_t e, unsigned shift, uint64_t va, gpm__xlate_t *out)
{
    uint64_t size = 1ull << shift, off = va & (size - 1);
    uint64_t pa =
        ((e >> PFN64_SHIFT) << PAGE_SHIFT) & ((1ull << PA64_BITS) - 1);

    if (!(e & PTE_PRESENT))
        return GPM_EFAULT;
    out->phys = (pa & ~(size - 1)) | off;
    out->page_left = size - off;
    out->user = true;
    out->writable = (e & PTE_WRITE) && (e & PTE64_DIRTY);
    return 0;
}

int gpm__mmu_mips64_xlate(const gpm__mmu_state_t *st, uint64_t va,
                          gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    uint64_t ksp, task, mm, pgd, pmd, e;

    if (va >= CKSEG0 && va < CKSSEG)
        return fixed(va - (va >= CKSEG1 ? CKSEG1 : CKSEG0),
                     va >= CKSEG1 ? CKSSEG : CKSEG1, va, out);
    if (va >> 62 == 2)
        return fixed(va & XKPHYS_PA, (va | ((1ull << PAGE_SHIFT) - 1)) + 1, va,
                     out);
    if (va >= USER_TOP64)
        return GPM_EFAULT;
    /* current (the thread_info at the stack's base) -> mm -> pgd. */
    if (gpm__mmu_read_desc(rd, opaque, st->reg[0], 8, false, &ksp) != 0 ||
        read_kern64(rd, opaque, ksp & ~(THREAD64_SIZE - 1), &task) != 0 ||
        read_kern64(rd, opaque, task + st->reg[1], &mm) != 0 || mm == 0 ||
        read_kern64(rd, opaque, mm + st->reg[2], &pgd) != 0)
        return GPM_EFAULT;
    if (read_kern64(rd, opaque, pgd + ((va >> PGDIR64_SHIFT) & 1023) * 8,
                    &pmd) != 0 ||
        read_kern64(rd, opaque, pmd + ((va >> PMD64_SHIFT) & 511) * 8, &e) != 0)
        return GPM_EFAULT;
    if (e & PTE64_HUGE)
        return found64(e, PMD64_SHIFT, va, out);
    if (read_kern64(rd, opaque, e + ((va >> PAGE_SHIFT) & 511) * 8, &e) != 0)
        return GPM_EFAULT;
    return found64(e, PAGE_SHIFT, va, out);
}
