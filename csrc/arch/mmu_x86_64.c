/*
 * mmu_x86_64.c - the x86_64 page walk: 4-level paging, or 5-level when
 * CR4.LA57 is set, with 4 KiB, 2 MiB and 1 GiB pages. See arch_ops.h.
 *
 * Inputs: st->reg[0] = CR3 (the root table; PCID and the other low or
 * high flag bits are ignored), st->reg[1] = CR4 (only LA57 is used).
 * Paging is assumed on (it always is in 64-bit mode).
 *
 * Not modelled, as they never make a Linux user page less accessible
 * than these bits say for our purposes: protection keys (PKRU), SMAP and
 * SMEP (kernel-mode accesses only), NX (instruction fetches only) and
 * reserved-bit checks other than PS in the top-level entries.
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

#define PTE_P       (1ull << 0)
#define PTE_RW      (1ull << 1)
#define PTE_US      (1ull << 2)
#define PTE_PS      (1ull << 7)
#define PTE_ADDR    0x000ffffffffff000ull /* bits 51:12 */
#define CR4_LA57    (1ull << 12)
#define MMU_X86_CR3 0
#define MMU_X86_CR4 1

/* True if bits 63..@bits-1 of @va are all equal (a canonical address). */
static bool canonical(uint64_t va, unsigned bits)
{
    uint64_t top = va >> (bits - 1);

    return top == 0 || top == (UINT64_MAX >> (bits - 1));
}

int gpm__mmu_x86_64_xlate(const gpm__mmu_state_t *st, uint64_t va,
                          gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    bool la57 = (st->reg[MMU_X86_CR4] & CR4_LA57) != 0;
    unsigned levels = la57 ? 5 : 4, level;
    uint64_t table = st->reg[MMU_X86_CR3] & PTE_ADDR;
    bool rw = true, us = true;

    if (!canonical(va, la57 ? 57 : 48)) {
        return GPM_EFAULT;
    }
    /* Level 1 is the page table, 2 the page directory, 3 the PDPT. */
    for (level = levels; level >= 1; level--) {
        unsigned shift = 12 + 9 * (level - 1);
        uint64_t e, size, off;

        if (gpm__mmu_read_desc(rd, opaque, table + ((va >> shift) & 511) * 8, 8,
                               false, &e) != 0 ||
            !(e & PTE_P)) {
            return GPM_EFAULT;
        }
        /* A user write needs RW and US at every level, a read US. */
        rw = rw && (e & PTE_RW);
        us = us && (e & PTE_US);
        if (level > 1 && !(e & PTE_PS)) {
            table = e & PTE_ADDR;
            continue;
        }
        if (level > 3) {
            return GPM_EFAULT; /* PS is reserved in PML4 and PML5 entries */
        }
        /* A 1 GiB (level 3), 2 MiB (level 2) or 4 KiB page. */
        size = 1ull << shift;
        off = va & (size - 1);
        out->phys = (e & PTE_ADDR & ~(size - 1)) | off;
        out->page_left = size - off;
        out->user = us;
        out->writable = us && rw;
        return 0;
    }
    return GPM_EFAULT; /* not reached: level 1 always returns */
}
