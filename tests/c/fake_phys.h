/*
 * fake_phys.h - guest-physical memory for the page-walk tests: a
 * malloc'd buffer standing for RAM at [base, base + size), reached only
 * through a gpm_phys_read_fn that refuses everything outside it and
 * counts the reads. Single-threaded, test use only.
 */
#ifndef GPM_TEST_FAKE_PHYS_H
#define GPM_TEST_FAKE_PHYS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch_ops.h"
#include "gpm/error.h"

typedef struct fake_phys {
    uint8_t *mem;     /* owned; freed by fake_phys_free() */
    uint64_t base;    /* guest-physical address of mem[0] */
    uint64_t size;    /* bytes of RAM */
    bool big_endian;  /* byte order of the put_*() helpers */
    unsigned reads;   /* successful and refused reads so far */
    unsigned refused; /* reads outside RAM */
} fake_phys_t;

static inline void fake_phys_init(fake_phys_t *p, uint64_t base, uint64_t size)
{
    memset(p, 0, sizeof(*p));
    p->mem = calloc(1, (size_t)size);
    p->base = base;
    p->size = size;
}

static inline void fake_phys_free(fake_phys_t *p)
{
    free(p->mem);
    p->mem = NULL;
}

/* The gpm_phys_read_fn: @opaque is the fake_phys_t. */
static inline int fake_phys_read(void *opaque, uint64_t paddr, void *buf,
                                 size_t len)
{
    fake_phys_t *p = opaque;

    p->reads++;
    if (paddr < p->base || paddr - p->base > p->size ||
        len > p->size - (paddr - p->base)) {
        p->refused++;
        return GPM_EFAULT;
    }
    memcpy(buf, p->mem + (paddr - p->base), len);
    return 0;
}

/* Stores the @size-byte (4 or 8) value @v at guest-physical @paddr. */
static inline void fake_phys_put(fake_phys_t *p, uint64_t paddr, unsigned size,
                                 uint64_t v)
{
    uint8_t *d = p->mem + (paddr - p->base);

    for (unsigned i = 0; i < size; i++) {
        unsigned k = p->big_endian ? size - 1 - i : i;

        d[k] = (uint8_t)(v >> (8 * i));
    }
}

static inline void fake_phys_put64(fake_phys_t *p, uint64_t table, unsigned idx,
                                   uint64_t v)
{
    fake_phys_put(p, table + 8ull * idx, 8, v);
}

static inline void fake_phys_put32(fake_phys_t *p, uint64_t table, unsigned idx,
                                   uint32_t v)
{
    fake_phys_put(p, table + 4ull * idx, 4, v);
}

/* A small deterministic generator (xorshift64) for the hostile tests. */
static inline uint64_t fake_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * Fills RAM with random descriptors (most pointing into RAM) and
 * translates @n random addresses (most of them in the usual ranges) with @xlate
 * under @st. Returns the
 * largest number of reads one walk made; the walks must not crash and
 * no read may reach outside RAM (fake_phys_read refuses those).
 */
static inline unsigned fake_phys_garbage_walks(fake_phys_t *p,
                                               gpm__xlate_fn xlate,
                                               const gpm__mmu_state_t *st,
                                               unsigned n, uint64_t seed)
{
    unsigned most = 0;

    /* Three words in four point into RAM, so walks go deep. */
    for (uint64_t i = 0; i < p->size; i += 8) {
        uint64_t r = fake_rand(&seed), into = fake_rand(&seed) % p->size;

        if (r & 0x300) {
            r = (r & ~0x000ffffffffff000ull) |
                ((p->base + into) & 0x000ffffffffff000ull);
        }
        memcpy(p->mem + i, &r, 8);
    }
    for (unsigned i = 0; i < n; i++) {
        gpm__xlate_t x;
        uint64_t va = fake_rand(&seed);
        unsigned before = p->reads;

        /* Below 4 GiB, in the low or high 48-bit half, or anything. */
        if ((i & 3) == 0) {
            va &= 0xffffffffull;
        } else if ((i & 3) == 1) {
            va &= 0x0000ffffffffffffull;
        } else if ((i & 3) == 2) {
            va |= 0xffff000000000000ull;
        }
        if (xlate(st, va, fake_phys_read, p, &x) == 0 && x.page_left == 0) {
            return ~0u; /* a mapping must cover its own byte */
        }
        if (p->reads - before > most) {
            most = p->reads - before;
        }
    }
    return most;
}

#endif /* GPM_TEST_FAKE_PHYS_H */
