/*
 * mmu_lpae.c - the VMSA long-descriptor table walk that AArch64 stage 1
 * and ARMv7-A LPAE share. See mmu_internal.h.
 *
 * A walk starts at the level whose entries the input size leaves partly
 * used and reads one 8-byte descriptor per level down to level 3. Level
 * n's entries each map 2^(granule + (granule - 3) * (3 - n)) bytes.
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

int gpm__lpae_walk(const gpm__lpae_walk_t *w, uint64_t va, gpm_phys_read_fn rd,
                   void *opaque, gpm__xlate_t *out)
{
    unsigned g = w->granule, stride = g - 3, levels, level, start;
    uint64_t table, page_mask = (1ull << g) - 1;
    bool no_user = !w->user_allowed, read_only = false;

    if ((g != 12 && g != 14 && g != 16) || w->insize <= g || w->insize > 52) {
        return GPM_EFAULT;
    }
    levels = (w->insize - g + stride - 1) / stride;
    if (levels > 4) {
        return GPM_EFAULT; /* 52-bit input with 4K/16K needs level -1 */
    }
    start = 4 - levels;
    /* The start table is aligned to its size (at least 8 bytes). */
    table = w->table & w->oa_mask &
            ~((8ull << (w->insize - (g + stride * (3 - start)))) - 1);
    for (level = start; level <= 3; level++) {
        unsigned shift = g + stride * (3 - level);
        unsigned bits = level == start ? w->insize - shift : stride;
        uint64_t idx = (va >> shift) & ((1ull << bits) - 1);
        uint64_t d, size, off;

        if (gpm__mmu_read_desc(rd, opaque, table + idx * 8, 8, w->big_endian,
                               &d) != 0) {
            return GPM_EFAULT;
        }
        if (!(d & GPM__LPAE_VALID)) {
            return GPM_EFAULT;
        }
        if (level < 3 && (d & GPM__LPAE_TABLE)) {
            if (!w->hpd) {
                no_user = no_user || (d & GPM__LPAE_APT_USER);
                read_only = read_only || (d & GPM__LPAE_APT_RO);
            }
            table = d & w->oa_mask & ~page_mask;
            continue;
        }
        /*
         * A block: level 1 or 2 with the 4K granule, level 2 with 16K and
         * 64K (larger blocks need FEAT_LPA or DS, which no walk here
         * uses). At level 3, bits[1:0] = 01 is reserved.
         */
        if (level == 3 ? !(d & GPM__LPAE_TABLE) : level < (g == 12 ? 1u : 2u)) {
            return GPM_EFAULT;
        }
        /* An access flag of 0 faults: the guest's touch sets it. */
        if (!(d & GPM__LPAE_AF)) {
            return GPM_EFAULT;
        }
        size = 1ull << shift;
        off = va & (size - 1);
        out->phys = (d & w->oa_mask & ~(size - 1)) | off;
        out->page_left = size - off;
        out->user = !no_user && (d & GPM__LPAE_AP1);
        /*
         * AP[2] = 1 is read-only for everyone. That includes AArch64's
         * clean writable pages (DBM = 1, AP[2] = 1): the MMU makes them
         * dirty on the first write, which a host write behind the guest's
         * back would skip, so they count as read-only (touch and retry).
         */
        out->writable = out->user && !read_only && !(d & GPM__LPAE_AP2);
        return 0;
    }
    return GPM_EFAULT; /* not reached: level 3 always returns */
}
