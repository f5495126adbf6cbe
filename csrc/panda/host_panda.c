/*
 * host_panda.c - gpm_host_ops_t over PANDA: registers through the
 * target's CPUArchState (regs_*.c), memory through
 * panda_virtual_memory_rw(), writes checked against the guest's page
 * tables where pandagpm can walk them, and on x86_64 reads checked too
 * (see gpm_panda_host.h).
 */
#include <limits.h>

#include "gpm_panda_host.h"
#include "gpm_panda_mem.h"

/* The largest piece handed to PANDA at once (its length is an int). */
#define CHUNK (1u << 20)

/* CR4.LA57 (5-level paging); spelled out for QEMU trees without it. */
#define GPM_CR4_LA57 (1ull << 12)

static int host_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    return gpm_panda_read_reg(cpu, regno, val);
}

static int host_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    return gpm_panda_write_reg(cpu, regno, val);
}

/* True if [addr, addr + len) fits the target's virtual address width. */
static bool in_target_range(uint64_t addr, size_t len)
{
    uint64_t max = (uint64_t)(target_ulong)-1;

    return addr <= max && (len == 0 || (uint64_t)(len - 1) <= max - addr);
}

#if defined(TARGET_X86_64)
static int phys_read(void *opaque, uint64_t paddr, void *buf, size_t len)
{
    (void)opaque;
    if (panda_physical_memory_rw((hwaddr)paddr, buf, (int)len, false) != 0)
        return GPM_EFAULT;
    return 0;
}

/*
 * The page-table check for a host access on behalf of the guest program
 * (gpm_panda_mem.h); 1 if the CPU is not in long mode (nothing checked).
 */
static int check_user(CPUState *cs, uint64_t addr, size_t len, bool write)
{
    CPUX86State *env = cs->env_ptr;
    bool la57 = (env->cr[4] & GPM_CR4_LA57) != 0;

    if (!(env->hflags & HF_LMA_MASK))
        return 1;
    return write ? gpm_x86_64_check_user_write(env->cr[3], la57, addr, len,
                                               phys_read, NULL)
                 : gpm_x86_64_check_user_read(env->cr[3], la57, addr, len,
                                              phys_read, NULL);
}
#endif

static int host_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    uint8_t *p = buf;

    if (!in_target_range(addr, len))
        return GPM_EFAULT;
#if defined(TARGET_X86_64)
    {
        /* PANDA's accessor translates kernel pages as well: check first. */
        int rc = check_user(cpu, addr, len, false);

        if (rc < 0)
            return rc;
    }
#endif
    while (len > 0) {
        size_t n = len < CHUNK ? len : CHUNK;

        if (panda_virtual_memory_rw(cpu, (target_ulong)addr, p, (int)n,
                                    false) != 0)
            return GPM_EFAULT;
        addr += n;
        p += n;
        len -= n;
    }
    return 0;
}

static int host_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    CPUState *cs = cpu;
    /* PANDA's accessor takes a non-const buffer; it only reads it here. */
    uint8_t *p = (uint8_t *)(uintptr_t)buf;
    int fail = GPM_EROFS;

    if (!in_target_range(addr, len))
        return GPM_EFAULT;
#if defined(TARGET_X86_64)
    {
        int rc = check_user(cs, addr, len, true);

        if (rc < 0)
            return rc;
        /* Checked: a failure now is not the guest's to retry. */
        if (rc == 0)
            fail = GPM_EFAULT;
    }
#endif
    while (len > 0) {
        size_t n = len < CHUNK ? len : CHUNK;

        if (panda_virtual_memory_rw(cs, (target_ulong)addr, p, (int)n, true) !=
            0)
            return fail;
        addr += n;
        p += n;
        len -= n;
    }
    return 0;
}

const gpm_host_ops_t gpm_panda_host_ops = {
    host_read_reg,
    host_write_reg,
    host_read_mem,
    host_write_mem,
};
