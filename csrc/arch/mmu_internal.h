/*
 * mmu_internal.h - what the page walkers of csrc/arch/ share (internal to
 * csrc/arch/): reading a descriptor, the identity map of an MMU that is
 * off, and the VMSA long-descriptor table walk (mmu_lpae.c).
 *
 * AArch64 stage 1 and ARMv7-A LPAE (TTBCR.EAE=1) use the same descriptor
 * format and differ only in how the start table, the input size and the
 * granule are chosen. Each front end (mmu_aarch64.c, mmu_armv7.c) picks
 * them from its registers and calls gpm__lpae_walk() for the descriptors.
 *
 * Threads: works on caller-owned state only; thread-safe.
 */
#ifndef GPM_ARCH_MMU_INTERNAL_H
#define GPM_ARCH_MMU_INTERNAL_H

#include "arch/arch_ops.h"

/* Descriptor bits shared by both front ends. */
#define GPM__LPAE_VALID    (1ull << 0)
#define GPM__LPAE_TABLE    (1ull << 1) /* table (levels 0-2) or page (3) */
#define GPM__LPAE_AP1      (1ull << 6) /* EL0/PL0 may access */
#define GPM__LPAE_AP2      (1ull << 7) /* read-only at every level */
#define GPM__LPAE_AF       (1ull << 10)
#define GPM__LPAE_DBM      (1ull << 51) /* AArch64 hardware dirty state */
#define GPM__LPAE_APT_USER (1ull << 61) /* APTable[0]: no EL0 below */
#define GPM__LPAE_APT_RO   (1ull << 62) /* APTable[1]: no writes below */

/* One walk's parameters, filled by a front end. */
typedef struct gpm__lpae_walk {
    uint64_t table;    /* guest-physical start table (TTBR's base bits) */
    uint64_t oa_mask;  /* implemented output-address bits, e.g. 47:0 */
    unsigned granule;  /* log2 of the granule: 12, 14 or 16 */
    unsigned insize;   /* how many low VA bits the tables translate */
    bool big_endian;   /* descriptors in memory are big-endian (EE) */
    bool hpd;          /* APTable bits are ignored (TCR_EL1.HPDx) */
    bool user_allowed; /* false: EL0 may not use this range (E0PDx) */
} gpm__lpae_walk_t;

/*
 * Translates @va (only its low @w->insize bits are used: the caller has
 * checked the rest) through the tables @w describes. Returns 0 with @out
 * filled, or GPM_EFAULT for an invalid descriptor at any level, a block
 * where the granule allows none, an access flag of 0, an unusable
 * @w (granule or input size the format has no walk for), or a table the
 * @rd callback cannot read. Reads at most four descriptors, so a table
 * that points at itself or anywhere else ends the walk just the same.
 */
int gpm__lpae_walk(const gpm__lpae_walk_t *w, uint64_t va, gpm_phys_read_fn rd,
                   void *opaque, gpm__xlate_t *out);

/*
 * Reads a @size-byte (4 or 8) descriptor at @paddr in the given byte
 * order (mmu.c). Returns 0, or GPM_EFAULT whatever error @rd returned: a
 * walk that cannot read a table has found no mapping.
 */
int gpm__mmu_read_desc(gpm_phys_read_fn rd, void *opaque, uint64_t paddr,
                       unsigned size, bool big_endian, uint64_t *val);

/*
 * The identity map of an MMU that is off (mmu.c): [0, @limit) maps to
 * itself in 4 KiB steps, readable and writable by every mode (nothing is
 * checked with the MMU off). Returns 0, or GPM_EFAULT at or above @limit.
 */
int gpm__mmu_identity(uint64_t va, uint64_t limit, gpm__xlate_t *out);

#endif /* GPM_ARCH_MMU_INTERNAL_H */
