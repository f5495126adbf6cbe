/*
 * mmu_aarch64.c - AArch64 stage-1 translation of the EL1&0 regime, as
 * Linux uses it: TTBR0_EL1 maps the lower VA range (user space),
 * TTBR1_EL1 the upper one (the kernel). See arch_ops.h.
 *
 * Inputs (gdbstub names in QEMU 10's system-registers.xml):
 * st->reg[0] = TTBR0_EL1, reg[1] = TTBR1_EL1, reg[2] = TCR_EL1,
 * reg[3] = SCTLR_EL1 (QEMU names it "SCTLR"). The ASID (TTBRx bits 63:48)
 * and CnP (bit 0) are ignored; so are 52-bit output addresses: tables
 * and pages are taken from descriptor bits 47:granule.
 *
 * Handled: the 4 KiB granule (Debian's arm64 kernel) and also 16 KiB and
 * 64 KiB, T0SZ/T1SZ from 16 to 39 (12 to 15 with 64 KiB: 52-bit VAs),
 * EPD0/EPD1, TBI0/TBI1 (Linux sets TBI0: user pointers may carry a tag
 * in bits 63:56), E0PD0/E0PD1 (no EL0 access to that range), HPD0/HPD1,
 * SCTLR_EL1.EE (big-endian descriptors) and SCTLR_EL1.M = 0 (the MMU is
 * off: physical = virtual below 2^48). Any other TCR value (a reserved
 * granule, an out-of-range TxSZ) gives GPM_EFAULT rather than a guess.
 * The descriptors themselves are walked by gpm__lpae_walk().
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

#define A64_TTBR0 0
#define A64_TTBR1 1
#define A64_TCR   2
#define A64_SCTLR 3

#define SCTLR_M      (1ull << 0)
#define SCTLR_EE     (1ull << 25)
#define TTBR_BADDR   0x0000fffffffffffeull /* bits 47:1 */
#define OA_MASK_48   0x0000ffffffffffffull
#define TCR_EPD0     (1ull << 7)
#define TCR_EPD1     (1ull << 23)
#define TCR_TBI0     (1ull << 37)
#define TCR_TBI1     (1ull << 38)
#define TCR_HPD0     (1ull << 41)
#define TCR_HPD1     (1ull << 42)
#define TCR_E0PD0    (1ull << 55)
#define TCR_E0PD1    (1ull << 56)
#define VA_RANGE_BIT 55

/* log2 of the granule TG0 (@upper false) or TG1 selects; 0 if reserved. */
static unsigned granule(uint64_t tcr, bool upper)
{
    static const unsigned tg0[4] = {12, 16, 14, 0};
    static const unsigned tg1[4] = {0, 14, 12, 16};

    return upper ? tg1[(tcr >> 30) & 3] : tg0[(tcr >> 14) & 3];
}

int gpm__mmu_aarch64_xlate(const gpm__mmu_state_t *st, uint64_t va,
                           gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out)
{
    uint64_t tcr = st->reg[A64_TCR], sctlr = st->reg[A64_SCTLR];
    bool upper = (va >> VA_RANGE_BIT) & 1;
    unsigned txsz = (unsigned)(tcr >> (upper ? 16 : 0)) & 0x3f;
    unsigned top = (tcr & (upper ? TCR_TBI1 : TCR_TBI0)) ? 56 : 64;
    gpm__lpae_walk_t w;
    uint64_t high, want;

    if (!(sctlr & SCTLR_M)) {
        return gpm__mmu_identity(va, 1ull << 48, out);
    }
    w.granule = granule(tcr, upper);
    w.insize = 64 - txsz;
    if (w.granule == 0 || txsz > 39 || (txsz < 16 && w.granule != 16) ||
        txsz < 12) {
        return GPM_EFAULT;
    }
    /*
     * Bits insize..top-1 must all equal bit 55 (the top byte is ignored
     * with TBI); anything else is outside both ranges.
     */
    high = (va >> w.insize) & ((1ull << (top - w.insize)) - 1);
    want = upper ? (1ull << (top - w.insize)) - 1 : 0;
    if (high != want) {
        return GPM_EFAULT;
    }
    if (tcr & (upper ? TCR_EPD1 : TCR_EPD0)) {
        return GPM_EFAULT; /* walks of this range are disabled */
    }
    w.table = st->reg[upper ? A64_TTBR1 : A64_TTBR0] & TTBR_BADDR;
    w.oa_mask = OA_MASK_48;
    w.big_endian = (sctlr & SCTLR_EE) != 0;
    w.hpd = (tcr & (upper ? TCR_HPD1 : TCR_HPD0)) != 0;
    w.user_allowed = !(tcr & (upper ? TCR_E0PD1 : TCR_E0PD0));
    return gpm__lpae_walk(&w, va, rd, opaque, out);
}
