/*
 * fake_cpu.h - a small in-process guest CPU for testing the core: a
 * register file and a few pages of memory, each page present or not and
 * writable or not, reached only through gpm_host_ops_t.
 */
#ifndef GPM_TEST_FAKE_CPU_H
#define GPM_TEST_FAKE_CPU_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gpm/gpm.h"

#define FAKE_PAGE 4096u
#ifndef FAKE_PAGES
#define FAKE_PAGES 8u
#endif
#define FAKE_BASE  0x400000u
#define FAKE_NREGS 80u

enum { FAKE_PRESENT = 1, FAKE_WRITABLE = 2 };

typedef struct fake_cpu {
    uint64_t regs[FAKE_NREGS];
    uint8_t mem[FAKE_PAGES * FAKE_PAGE];
    uint8_t flags[FAKE_PAGES];
    bool fail_regs; /* make register access fail with GPM_EIO */
    unsigned mem_writes;
} fake_cpu_t;

static inline void fake_init(fake_cpu_t *c)
{
    memset(c, 0, sizeof(*c));
    for (unsigned i = 0; i < FAKE_PAGES; i++)
        c->flags[i] = FAKE_PRESENT | FAKE_WRITABLE;
}

/* The page index of @addr, or -1 outside the fake memory. */
static inline long fake_page(uint64_t addr)
{
    if (addr < FAKE_BASE || addr >= FAKE_BASE + FAKE_PAGES * FAKE_PAGE)
        return -1;
    return (long)((addr - FAKE_BASE) / FAKE_PAGE);
}

static inline int fake_check(fake_cpu_t *c, uint64_t addr, size_t len,
                             bool write)
{
    for (size_t i = 0; i < len; i += FAKE_PAGE) {
        long p = fake_page(addr + i);

        if (p < 0 || !(c->flags[p] & FAKE_PRESENT))
            return GPM_EFAULT;
        if (write && !(c->flags[p] & FAKE_WRITABLE))
            return GPM_EROFS;
    }
    if (len > 0) {
        long p = fake_page(addr + len - 1);

        if (p < 0 || !(c->flags[p] & FAKE_PRESENT))
            return GPM_EFAULT;
        if (write && !(c->flags[p] & FAKE_WRITABLE))
            return GPM_EROFS;
    }
    return 0;
}

static inline int fake_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    fake_cpu_t *c = cpu;

    if (c->fail_regs || regno >= FAKE_NREGS)
        return GPM_EIO;
    *val = c->regs[regno];
    return 0;
}

static inline int fake_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    fake_cpu_t *c = cpu;

    if (c->fail_regs || regno >= FAKE_NREGS)
        return GPM_EIO;
    c->regs[regno] = val;
    return 0;
}

static inline int fake_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    fake_cpu_t *c = cpu;
    int rc = fake_check(c, addr, len, false);

    if (rc == 0 && len > 0)
        memcpy(buf, c->mem + (addr - FAKE_BASE), len);
    return rc;
}

static inline int fake_write_mem(void *cpu, uint64_t addr, const void *buf,
                                 size_t len)
{
    fake_cpu_t *c = cpu;
    int rc = fake_check(c, addr, len, true);

    if (rc == 0 && len > 0) {
        memcpy(c->mem + (addr - FAKE_BASE), buf, len);
        c->mem_writes++;
    }
    return rc;
}

static const gpm_host_ops_t fake_ops = {
    fake_read_reg,
    fake_write_reg,
    fake_read_mem,
    fake_write_mem,
};

/*
 * Loads the x86_64 hypercall registers and runs the dispatcher as guest
 * process @tgid (GPM_TGID_UNKNOWN: an unknown caller).
 */
static inline int64_t fake_hc_as(gpm_manager_t *m, fake_cpu_t *c, int64_t tgid,
                                 uint64_t op, uint64_t chan, uint64_t a1,
                                 uint64_t a2, bool *handled)
{
    const gpm_arch_info_t *a = gpm_arch_info(gpm_manager_arch(m));
    uint64_t mask = a->word_bits == 64 ? UINT64_MAX : UINT32_MAX;
    bool h = false;
    int64_t r;

    c->regs[a->hc_regs[0]] = GPM_HC_MAGIC;
    c->regs[a->hc_regs[1]] = op;
    c->regs[a->hc_regs[2]] = chan;
    c->regs[a->hc_regs[3]] = a1;
    c->regs[a->hc_regs[4]] = a2;
    if (gpm_hypercall_handle_as(m, &fake_ops, c, tgid, &h) != 0)
        return INT64_MIN;
    if (handled != NULL)
        *handled = h;
    r = (int64_t)(c->regs[a->ret_reg] & mask);
    /* Sign-extend a 32-bit result so errors compare as negative. */
    if (a->word_bits == 32)
        r = (int32_t)(uint32_t)r;
    return r;
}

/* fake_hc_as() for an unknown caller, as hosts without tgids call. */
static inline int64_t fake_hc(gpm_manager_t *m, fake_cpu_t *c, uint64_t op,
                              uint64_t chan, uint64_t a1, uint64_t a2,
                              bool *handled)
{
    return fake_hc_as(m, c, GPM_TGID_UNKNOWN, op, chan, a1, a2, handled);
}

#endif /* GPM_TEST_FAKE_CPU_H */
