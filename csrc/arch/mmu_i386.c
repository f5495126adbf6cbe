/*
 * mmu_i386.c - the 32-bit x86 page walk: PAE paging (CR4.PAE: a 4-entry
 * page-directory-pointer table, then 512-entry tables of 8-byte entries,
 * 4 KiB and 2 MiB pages) and classic 2-level paging (1024-entry tables of
 * 4-byte entries, 4 KiB pages and, with CR4.PSE, 4 MiB pages with the
 * PSE-36 high address bits). See arch_ops.h.
 *
 * Inputs: st->reg[0] = CR3 (PAE: bits 31:5 locate the PDPT; else bits
 * 31:12 the page directory), st->reg[1] = CR4 (PAE and PSE are used),
 * st->reg[2] = CR0 (PG: paging off is the identity map below 4 GiB).
 *
 * PAE PDPT entries have no RW or US bits (the CPU loads all four when CR3
 * is written; a present bit is all that matters). Not modelled, as on
 * x86_64: NX, SMAP/SMEP, protection keys and reserved-bit checks.
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

#define PTE_P        (1ull << 0)
#define PTE_RW       (1ull << 1)
#define PTE_US       (1ull << 2)
#define PTE_PS       (1ull << 7)
#define PAE_ADDR     0x000ffffffffff000ull /* bits 51:12 */
#define CR0_PG       (1ull << 31)
#define CR4_PSE      (1ull << 4)
#define CR4_PAE      (1ull << 5)
#define MMU_I386_CR3 0
#define MMU_I386_CR4 1
#define MMU_I386_CR0 2

/* Fills @out for a page of 2^@shift bytes at @base holding @va. */
static int found(uint64_t base, unsigned shift, uint64_t va, bool us, bool rw,
                 gpm__xlate_t *out)
{
    uint64_t size = 1ull << shift, off = va & (size - 1);

    out->phys = (base & ~(size - 1)) | off;
    out->page_left = size - off;
    out->user = us;
    out->writable = us && rw;
    return 0;
}

static int walk_pae(const gpm__mmu_state_t *st, uint64_t va,
                    gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    uint64_t pdpt = st->reg[MMU_I386_CR3] & 0xffffffe0ull, e;
    bool rw = true, us = true;

    if (gpm__mmu_read_desc(rd, opaque, pdpt + ((va >> 30) & 3) * 8, 8, false,
                           &e) != 0 ||
        !(e & PTE_P))
        return GPM_EFAULT;
    /* The page directory: a 2 MiB page or a page table. */
    if (gpm__mmu_read_desc(rd, opaque, (e & PAE_ADDR) + ((va >> 21) & 511) * 8,
                           8, false, &e) != 0 ||
        !(e & PTE_P))
        return GPM_EFAULT;
    rw = rw && (e & PTE_RW);
    us = us && (e & PTE_US);
    if (e & PTE_PS)
        return found(e & PAE_ADDR, 21, va, us, rw, out);
    if (gpm__mmu_read_desc(rd, opaque, (e & PAE_ADDR) + ((va >> 12) & 511) * 8,
                           8, false, &e) != 0 ||
        !(e & PTE_P))
        return GPM_EFAULT;
    rw = rw && (e & PTE_RW);
    us = us && (e & PTE_US);
    return found(e & PAE_ADDR, 12, va, us, rw, out);
}

static int walk_2level(const gpm__mmu_state_t *st, uint64_t va,
                       gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    uint64_t pd = st->reg[MMU_I386_CR3] & 0xfffff000ull, e;
    bool rw, us;

    if (gpm__mmu_read_desc(rd, opaque, pd + ((va >> 22) & 1023) * 4, 4, false,
                           &e) != 0 ||
        !(e & PTE_P))
        return GPM_EFAULT;
    rw = (e & PTE_RW) != 0;
    us = (e & PTE_US) != 0;
    if ((e & PTE_PS) && (st->reg[MMU_I386_CR4] & CR4_PSE)) {
        /* PSE-36: PDE bits 20:13 are physical address bits 39:32. */
        uint64_t base = (e & 0xffc00000ull) | ((e >> 13) & 0xffull) << 32;

        return found(base, 22, va, us, rw, out);
    }
    if (gpm__mmu_read_desc(rd, opaque,
                           (e & 0xfffff000ull) + ((va >> 12) & 1023) * 4, 4,
                           false, &e) != 0 ||
        !(e & PTE_P))
        return GPM_EFAULT;
    rw = rw && (e & PTE_RW);
    us = us && (e & PTE_US);
    return found(e & 0xfffff000ull, 12, va, us, rw, out);
}

int gpm__mmu_i386_xlate(const gpm__mmu_state_t *st, uint64_t va,
                        gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    if (va >> 32)
        return GPM_EFAULT; /* a 32-bit CPU has no such address */
    if (!(st->reg[MMU_I386_CR0] & CR0_PG))
        return gpm__mmu_identity(va, 1ull << 32, out);
    if (st->reg[MMU_I386_CR4] & CR4_PAE)
        return walk_pae(st, va, rd, opaque, out);
    return walk_2level(st, va, rd, opaque, out);
}
