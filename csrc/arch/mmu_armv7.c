/*
 * mmu_armv7.c - ARMv7-A stage-1 translation for PL0 and PL1: the
 * short-descriptor format (TTBCR.EAE = 0: Debian's armmp kernel) and the
 * long-descriptor LPAE format (TTBCR.EAE = 1: armmp-lpae). See
 * arch_ops.h.
 *
 * Inputs (gdbstub names in QEMU 10's system-registers.xml for
 * qemu-system-arm): st->reg[0] = TTBR0 and reg[1] = TTBR1 (the 64-bit
 * views; the 32-bit ones are called TTBR0_EL1/TTBR1_EL1 there and hold
 * the low half), reg[2] = TTBCR, reg[3] = SCTLR.
 *
 * Short descriptors: TTBCR.N splits the range between TTBR0 and TTBR1,
 * TTBCR.PD0/PD1 disable a walk; sections (1 MiB), supersections (16 MiB,
 * up to 40-bit output), coarse page tables with small (4 KiB) and large
 * (64 KiB) pages; AP[2:0] with SCTLR.AFE (AP[0] as the access flag).
 * Domains are not checked: Linux puts every mapping in a client domain,
 * so the AP bits decide, and with CONFIG_CPU_SW_DOMAIN_PAN it sets the
 * user domain to "no access" whenever it runs in the kernel, so a DACR
 * check would refuse all user memory while the CPU is stopped in the
 * kernel (at the system-call entry, for one). Manager domains, which
 * would skip the AP check, are never used by ARMv7 Linux.
 *
 * Long descriptors: T0SZ/T1SZ select the range, EPD0/EPD1, three levels
 * with 4 KiB granule, 40-bit output; the walk is gpm__lpae_walk().
 *
 * SCTLR.M = 0: the MMU is off, physical = virtual. SCTLR.EE: the tables
 * are big-endian. Virtual addresses are 32 bits; anything above is
 * GPM_EFAULT.
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

#define V7_TTBR0 0
#define V7_TTBR1 1
#define V7_TTBCR 2
#define V7_SCTLR 3

#define SCTLR_M    (1ull << 0)
#define SCTLR_EE   (1ull << 25)
#define SCTLR_AFE  (1ull << 29)
#define TTBCR_EAE  (1ull << 31)
#define TTBCR_PD0  (1ull << 4)
#define TTBCR_PD1  (1ull << 5)
#define TTBCR_EPD0 (1ull << 7)
#define TTBCR_EPD1 (1ull << 23)
#define FOUR_G     (1ull << 32)

/* Short-descriptor first-level bits. */
#define L1_TYPE_MASK   3u
#define L1_FAULT       0u
#define L1_PAGE_TABLE  1u
#define L1_SUPERSECT   (1u << 18)
#define L2_TYPE_MASK   3u
#define L2_FAULT       0u
#define L2_LARGE       1u
#define LPAE_BADDR     0x000000fffffffffeull /* TTBR bits 39:1 */
#define LPAE_OA_MASK   0x000000ffffffffffull /* 40-bit output */
#define SECTION_SIZE   (1ull << 20)
#define SUPERSECT_SIZE (1ull << 24)
#define LARGE_SIZE     (1ull << 16)
#define SMALL_SIZE     (1ull << 12)

/*
 * Fills @out from an AP[2:0] value: PL0 may read when AP[1] is set and
 * write only with AP = 0b011 (AP[2] = 0, AP[1:0] = 0b11). With
 * SCTLR.AFE, AP[0] is the access flag: 0 is a fault.
 */
static int short_perms(unsigned ap, bool afe, uint64_t phys, uint64_t size,
                       gpm__xlate_t *out)
{
    if (afe && !(ap & 1)) {
        return GPM_EFAULT;
    }
    out->phys = phys;
    out->page_left = size - (phys & (size - 1));
    out->user = (ap & 2) != 0;
    out->writable = ap == 3;
    return 0;
}

static int short_xlate(const gpm__mmu_state_t *st, uint32_t va,
                       gpm_phys_read_fn rd, void *opaque, bool be,
                       gpm__xlate_t *out)
{
    uint64_t ttbcr = st->reg[V7_TTBCR];
    bool afe = (st->reg[V7_SCTLR] & SCTLR_AFE) != 0;
    unsigned n = (unsigned)ttbcr & 7, ap;
    uint64_t base, idx, l1, l2;

    if (n == 0 || (va >> (32 - n)) == 0) {
        if (ttbcr & TTBCR_PD0) {
            return GPM_EFAULT;
        }
        /* TTBR0's table holds 4096 >> N entries, aligned to its size. */
        base = st->reg[V7_TTBR0] & 0xffffffffu & ~((0x4000ull >> n) - 1);
        idx = (va >> 20) & ((0x1000u >> n) - 1);
    } else {
        if (ttbcr & TTBCR_PD1) {
            return GPM_EFAULT;
        }
        base = st->reg[V7_TTBR1] & 0xffffc000u;
        idx = va >> 20;
    }
    if (gpm__mmu_read_desc(rd, opaque, base + idx * 4, 4, be, &l1) != 0) {
        return GPM_EFAULT;
    }
    switch (l1 & L1_TYPE_MASK) {
    case L1_FAULT:
        return GPM_EFAULT;
    case L1_PAGE_TABLE:
        /* A coarse table: 256 entries at bits 31:10, indexed by 19:12. */
        if (gpm__mmu_read_desc(rd, opaque,
                               (l1 & 0xfffffc00u) + ((va >> 12) & 0xff) * 4, 4,
                               be, &l2) != 0) {
            return GPM_EFAULT;
        }
        ap = (unsigned)((l2 >> 4) & 3) | (unsigned)((l2 >> 7) & 4);
        switch (l2 & L2_TYPE_MASK) {
        case L2_FAULT:
            return GPM_EFAULT;
        case L2_LARGE:
            return short_perms(ap, afe,
                               (l2 & 0xffff0000u) | (va & (LARGE_SIZE - 1)),
                               LARGE_SIZE, out);
        default: /* 1x: a small page (bit 0 is XN) */
            return short_perms(ap, afe,
                               (l2 & 0xfffff000u) | (va & (SMALL_SIZE - 1)),
                               SMALL_SIZE, out);
        }
    default: /* 1x: a section or supersection (bit 0 is PXN) */
        ap = (unsigned)((l1 >> 10) & 3) | (unsigned)((l1 >> 13) & 4);
        if (l1 & L1_SUPERSECT) {
            /* PA[31:24] = 31:24, PA[35:32] = 23:20, PA[39:36] = 8:5. */
            uint64_t pa = (l1 & 0xff000000u) | ((l1 >> 20) & 0xf) << 32 |
                          ((l1 >> 5) & 0xf) << 36;

            return short_perms(ap, afe, pa | (va & (SUPERSECT_SIZE - 1)),
                               SUPERSECT_SIZE, out);
        }
        return short_perms(ap, afe,
                           (l1 & 0xfff00000u) | (va & (SECTION_SIZE - 1)),
                           SECTION_SIZE, out);
    }
}

/*
 * Long descriptors: TTBR0 maps [0, 2^(32-T0SZ)) and TTBR1 the top
 * 2^(32-T1SZ) bytes; a size of 0 means "everything the other one does
 * not map", and with both sizes non-zero the gap between them faults.
 */
static int lpae_xlate(const gpm__mmu_state_t *st, uint32_t va,
                      gpm_phys_read_fn rd, void *opaque, bool be,
                      gpm__xlate_t *out)
{
    uint64_t ttbcr = st->reg[V7_TTBCR];
    unsigned t0 = (unsigned)ttbcr & 7, t1 = (unsigned)(ttbcr >> 16) & 7;
    bool use1;
    gpm__lpae_walk_t w;

    if (t1 != 0 && va >= FOUR_G - (FOUR_G >> t1)) {
        use1 = true;
    } else if (t0 != 0 && va < (FOUR_G >> t0)) {
        use1 = false;
    } else if (t0 == 0) {
        use1 = false;
    } else if (t1 == 0) {
        use1 = true;
    } else {
        return GPM_EFAULT; /* between the two ranges */
    }
    if (ttbcr & (use1 ? TTBCR_EPD1 : TTBCR_EPD0)) {
        return GPM_EFAULT;
    }
    /* A size of 0 covers the other range too: the table is indexed so. */
    w.insize = 32 - (use1 ? t1 : t0);
    w.table = st->reg[use1 ? V7_TTBR1 : V7_TTBR0] & LPAE_BADDR;
    w.oa_mask = LPAE_OA_MASK;
    w.granule = 12;
    w.big_endian = be;
    w.hpd = false;
    w.user_allowed = true;
    return gpm__lpae_walk(&w, va, rd, opaque, out);
}

int gpm__mmu_armv7_xlate(const gpm__mmu_state_t *st, uint64_t va,
                         gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    uint64_t sctlr = st->reg[V7_SCTLR];
    bool be = (sctlr & SCTLR_EE) != 0;

    if (va >= FOUR_G) {
        return GPM_EFAULT;
    }
    if (!(sctlr & SCTLR_M)) {
        return gpm__mmu_identity(va, FOUR_G, out);
    }
    if (st->reg[V7_TTBCR] & TTBCR_EAE) {
        return lpae_xlate(st, (uint32_t)va, rd, opaque, be, out);
    }
    return short_xlate(st, (uint32_t)va, rd, opaque, be, out);
}
