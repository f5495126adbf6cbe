/*
 * arch.c - the per-architecture table: hypercall registers in GDB's
 * numbering, word size, byte order and ELF identity.
 */
#include <stddef.h>
#include <string.h>

#include "gpm/arch.h"
#include "gpm/error.h"

/* ELF e_machine values. */
enum {
    ELF_EM_386 = 3,
    ELF_EM_MIPS = 8,
    ELF_EM_PPC = 20,
    ELF_EM_ARM = 40,
    ELF_EM_X86_64 = 62,
    ELF_EM_AARCH64 = 183,
};

/*
 * GDB numbering per architecture: x86_64 rax 0, rbx 1, rcx 2, rdx 3,
 * rsi 4, rdi 5, rip 16; i386 eax 0, ecx 1, edx 2, ebx 3, edi 7, eip 8;
 * arm r0-r15; aarch64 x0-x30, sp 31, pc 32; mips zero..ra 0-31, pc 37
 * (v0 2, a0-a3 4-7); ppc r0-r31, pc 64.
 */
static const gpm_arch_info_t arch_table[GPM_ARCH_COUNT] = {
    [GPM_ARCH_X86_64] =
        {"x86_64", 64, false, ELF_EM_X86_64, 2, {0, 1, 2, 3, 5}, 0, 16},
    [GPM_ARCH_I386] = {"i386", 32, false, ELF_EM_386, 1, {0, 3, 1, 2, 7}, 0, 8},
    [GPM_ARCH_ARM] = {"arm", 32, false, ELF_EM_ARM, 1, {0, 1, 2, 3, 4}, 0, 15},
    [GPM_ARCH_AARCH64] =
        {"aarch64", 64, false, ELF_EM_AARCH64, 2, {0, 1, 2, 3, 4}, 0, 32},
    [GPM_ARCH_MIPS] =
        {"mips", 32, true, ELF_EM_MIPS, 1, {2, 4, 5, 6, 7}, 2, 37},
    [GPM_ARCH_MIPSEL] =
        {"mipsel", 32, false, ELF_EM_MIPS, 1, {2, 4, 5, 6, 7}, 2, 37},
    [GPM_ARCH_MIPS64] =
        {"mips64", 64, true, ELF_EM_MIPS, 2, {2, 4, 5, 6, 7}, 2, 37},
    [GPM_ARCH_PPC] = {"ppc", 32, true, ELF_EM_PPC, 1, {3, 4, 5, 6, 7}, 3, 64},
    [GPM_ARCH_MIPS64EL] =
        {"mips64el", 64, false, ELF_EM_MIPS, 2, {2, 4, 5, 6, 7}, 2, 37},
};

const gpm_arch_info_t *gpm_arch_info(gpm_arch_t arch)
{
    if ((unsigned)arch >= GPM_ARCH_COUNT)
        return NULL;
    return &arch_table[arch];
}

int gpm_arch_from_name(const char *name, gpm_arch_t *out)
{
    if (name == NULL || out == NULL)
        return GPM_EINVAL;
    for (unsigned i = 0; i < GPM_ARCH_COUNT; i++) {
        if (strcmp(arch_table[i].name, name) == 0) {
            *out = (gpm_arch_t)i;
            return 0;
        }
    }
    return GPM_EINVAL;
}
