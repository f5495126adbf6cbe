/*
 * arch_ops.c - TEMPORARY x86_64-only table until the per-arch backends
 * land (branch mmu). Replaced at merge.
 */
#include "arch/arch_ops.h"

#include "gpm/abi.h"

static bool x86_user(uint64_t cs)
{
    return (cs & 3) == 3;
}

static const gpm__arch_ops_t x86_64_ops = {
    .arch = GPM_ARCH_X86_64,
    .hc_addr = GPM_HC_X86_ADDR,
    .hc_insn = {0x0f, 0xa2},
    .hc_insn_len = 2,
    .mode_reg = "cs",
    .mode_is_user = x86_user,
    .gdb_xml_arch = "i386",
    .pc_reg = "rip",
    .bp_kind = 1,
    .user_top = 0x0000800000000000ull,
    .syscall_entry_symbol = "entry_SYSCALL_64",
    .current_task_symbol = "current_task",
    .user_percpu_reg = "k_gs_base",
    .mmu_regs = {"cr3", "cr4", NULL, NULL},
    .xlate = NULL,
};

const gpm__arch_ops_t *gpm__arch_ops(gpm_arch_t arch)
{
    return arch == GPM_ARCH_X86_64 ? &x86_64_ops : NULL;
}
