/*
 * regs_ppc.c - GDB register numbers to CPUPPCState fields (TARGET_PPC).
 *
 * GDB numbers r0-r31 as 0-31 (env->gpr[]), the 32 FPRs as 32-63, and the
 * pc as 64 (env->nip). pandagpm knows 32-bit PowerPC guests only.
 */
#include "gpm_panda_host.h"

#if defined(TARGET_PPC)

#define GPM_PPC_PC 64u

int gpm_panda_guest_arch(gpm_arch_t *out)
{
#if defined(TARGET_PPC64)
    (void)out;
    return GPM_ENOSYS;
#else
    *out = GPM_ARCH_PPC;
    return 0;
#endif
}

int gpm_panda_read_reg(CPUState *cpu, unsigned regno, uint64_t *val)
{
    CPUPPCState *env = cpu->env_ptr;

    if (regno < 32)
        *val = (uint64_t)env->gpr[regno];
    else if (regno == GPM_PPC_PC)
        *val = (uint64_t)env->nip;
    else
        return GPM_EINVAL;
    return 0;
}

int gpm_panda_write_reg(CPUState *cpu, unsigned regno, uint64_t val)
{
    CPUPPCState *env = cpu->env_ptr;

    if (regno < 32)
        env->gpr[regno] = (target_ulong)val;
    else if (regno == GPM_PPC_PC)
        env->nip = (target_ulong)val;
    else
        return GPM_EINVAL;
    return 0;
}

#endif /* TARGET_PPC */
