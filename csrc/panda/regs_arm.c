/*
 * regs_arm.c - GDB register numbers to CPUARMState fields (TARGET_ARM,
 * which includes TARGET_AARCH64).
 *
 * AArch64 (env->aarch64 set): x0-x30 are 0-30 in env->xregs[], sp is 31
 * (env->xregs[31] holds the current SP in AArch64 state), pc is 32
 * (env->pc). AArch32: r0-r15 are 0-15 in env->regs[], r15 being the pc.
 */
#include "gpm_panda_host.h"

#if defined(TARGET_ARM)

int gpm_panda_guest_arch(gpm_arch_t *out)
{
#if defined(TARGET_AARCH64)
    *out = GPM_ARCH_AARCH64;
#else
    *out = GPM_ARCH_ARM;
#endif
    return 0;
}

int gpm_panda_read_reg(CPUState *cpu, unsigned regno, uint64_t *val)
{
    CPUARMState *env = cpu->env_ptr;

#if defined(TARGET_AARCH64)
    if (env->aarch64) {
        if (regno < 32)
            *val = env->xregs[regno];
        else if (regno == 32)
            *val = env->pc;
        else
            return GPM_EINVAL;
        return 0;
    }
#endif
    if (regno >= 16)
        return GPM_EINVAL;
    *val = env->regs[regno];
    return 0;
}

int gpm_panda_write_reg(CPUState *cpu, unsigned regno, uint64_t val)
{
    CPUARMState *env = cpu->env_ptr;

#if defined(TARGET_AARCH64)
    if (env->aarch64) {
        if (regno < 32)
            env->xregs[regno] = val;
        else if (regno == 32)
            env->pc = val;
        else
            return GPM_EINVAL;
        return 0;
    }
#endif
    if (regno >= 16)
        return GPM_EINVAL;
    env->regs[regno] = (uint32_t)val;
    return 0;
}

#endif /* TARGET_ARM */
