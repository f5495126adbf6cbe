/*
 * mmu.c - what every page walker shares, and the range check over any
 * walker. See arch_ops.h and mmu_internal.h.
 */
#include "arch/mmu_internal.h"

#include "gpm/error.h"

int gpm__mmu_read_desc(gpm_phys_read_fn rd, void *opaque, uint64_t paddr,
                       unsigned size, bool big_endian, uint64_t *val)
{
    uint8_t b[8];
    uint64_t v = 0;
    unsigned i;

    if (size != 4 && size != 8) {
        return GPM_EFAULT;
    }
    if (rd(opaque, paddr, b, size) != 0) {
        return GPM_EFAULT;
    }
    for (i = 0; i < size; i++) {
        unsigned k = big_endian ? i : size - 1 - i;

        v = (v << 8) | b[k];
    }
    *val = v;
    return 0;
}

int gpm__mmu_identity(uint64_t va, uint64_t limit, gpm__xlate_t *out)
{
    if (va >= limit) {
        return GPM_EFAULT;
    }
    out->phys = va;
    out->page_left = 4096 - (va & 4095);
    out->user = true;
    out->writable = true;
    return 0;
}

int gpm__mmu_check_user(const gpm__arch_ops_t *ops, const gpm__mmu_state_t *st,
                        uint64_t va, size_t len, bool write,
                        gpm_phys_read_fn rd, void *opaque)
{
    uint64_t last;
    int result = 0;

    if (!ops || !ops->xlate || !st || !rd) {
        return GPM_EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    last = va + (uint64_t)(len - 1);
    if (last < va) {
        return GPM_EFAULT;
    }
    for (;;) {
        gpm__xlate_t x;
        int rc = ops->xlate(st, va, rd, opaque, &x);

        if (rc != 0) {
            return rc;
        }
        /* Kernel memory is never the program's: no "touch and retry". */
        if (!x.user || x.page_left == 0) {
            return GPM_EFAULT;
        }
        /*
         * Keep walking after a read-only page: an unmapped page further
         * on makes the whole range a fault, and the guest must not be
         * told to retry a range that can never pass.
         */
        if (write && !x.writable) {
            result = GPM_EROFS;
        }
        if (x.page_left > last - va) {
            return result;
        }
        va += x.page_left;
    }
}
