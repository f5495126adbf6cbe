/*
 * regs_mips.c - GDB register numbers to CPUMIPSState fields (TARGET_MIPS,
 * which includes TARGET_MIPS64).
 *
 * GDB numbers zero..ra as 0-31 (env->active_tc.gpr[]), then sr 32, lo 33,
 * hi 34, bad 35, cause 36 and pc 37 (env->active_tc.PC).
 */
#include "gpm_panda_host.h"

#if defined(TARGET_MIPS)

#define GPM_MIPS_PC 37u

int gpm_panda_guest_arch(gpm_arch_t *out)
{
#if defined(TARGET_MIPS64) && defined(TARGET_WORDS_BIGENDIAN)
    *out = GPM_ARCH_MIPS64;
#elif defined(TARGET_MIPS64)
    *out = GPM_ARCH_MIPS64EL;
#elif defined(TARGET_WORDS_BIGENDIAN)
    *out = GPM_ARCH_MIPS;
#else
    *out = GPM_ARCH_MIPSEL;
#endif
    return 0;
}

int gpm_panda_read_reg(CPUState *cpu, unsigned regno, uint64_t *val)
{
    CPUMIPSState *env = cpu->env_ptr;

    if (regno < 32)
        *val = (uint64_t)env->active_tc.gpr[regno];
    else if (regno == GPM_MIPS_PC)
        *val = (uint64_t)env->active_tc.PC;
    else
        return GPM_EINVAL;
    return 0;
}

int gpm_panda_write_reg(CPUState *cpu, unsigned regno, uint64_t val)
{
    CPUMIPSState *env = cpu->env_ptr;

    if (regno == 0)
        return 0; /* $zero stays zero */
    if (regno < 32)
        env->active_tc.gpr[regno] = (target_ulong)val;
    else if (regno == GPM_MIPS_PC)
        env->active_tc.PC = (target_ulong)val;
    else
        return GPM_EINVAL;
    return 0;
}

#endif /* TARGET_MIPS */
