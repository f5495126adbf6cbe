/*
 * mmu_mips.c - the MIPS page walk: Linux's own page tables, since MIPS
 * refills its TLB in software and no register holds a table root. See
 * arch_ops.h.
 *
 * Inputs: st->reg[0] = the guest-physical address of the kernel's
 * pgd_current[0], the word through which the TLB refill handler finds the
 * running process's page directory (the image profile's "mmu_inputs";
 * the hosts pass it as a constant, not a register). Its value is the
 * directory's kseg0 address.
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
