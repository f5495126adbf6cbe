/*
 * regs_x86.c - GDB register numbers to CPUX86State fields (TARGET_I386,
 * which includes TARGET_X86_64).
 *
 * GDB's x86_64 order is rax rbx rcx rdx rsi rdi rbp rsp r8-r15 (0-15),
 * rip (16); QEMU's env->regs[] is in the hardware order R_EAX, R_ECX,
 * R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI, then r8-r15. GDB's i386 order
 * (eax ecx edx ebx esp ebp esi edi, eip 8) is the hardware order.
 */
#include "gpm_panda_host.h"

#include "arch/arch_ops.h"

#if defined(TARGET_I386)

#if defined(TARGET_X86_64)
/* The GDB -> env->regs[] map is the x86_64 backend's (csrc/arch). */
#define gdb_to_qemu  (gpm__arch_ops(GPM_ARCH_X86_64)->env_gpr_index)
#define GPM_X86_NGPR (gpm__arch_ops(GPM_ARCH_X86_64)->env_ngpr)
#define GPM_X86_PC   16u
#else
static const int gdb_to_qemu[8] = {
    R_EAX, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI,
};
#define GPM_X86_NGPR 8u
#define GPM_X86_PC   8u
#endif

int gpm_panda_guest_arch(gpm_arch_t *out)
{
#if defined(TARGET_X86_64)
    *out = GPM_ARCH_X86_64;
#else
    *out = GPM_ARCH_I386;
#endif
    return 0;
}

int gpm_panda_read_reg(CPUState *cpu, unsigned regno, uint64_t *val)
{
    CPUX86State *env = cpu->env_ptr;

    if (regno < GPM_X86_NGPR)
        *val = (uint64_t)env->regs[gdb_to_qemu[regno]];
    else if (regno == GPM_X86_PC)
        *val = (uint64_t)env->eip;
    else
        return GPM_EINVAL;
    return 0;
}

int gpm_panda_write_reg(CPUState *cpu, unsigned regno, uint64_t val)
{
    CPUX86State *env = cpu->env_ptr;

    if (regno < GPM_X86_NGPR)
        env->regs[gdb_to_qemu[regno]] = (target_ulong)val;
    else if (regno == GPM_X86_PC)
        env->eip = (target_ulong)val;
    else
        return GPM_EINVAL;
    return 0;
}

#endif /* TARGET_I386 */
