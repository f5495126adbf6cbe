/*
 * arch_ops.c - the per-architecture backend table. See arch_ops.h.
 *
 * Sources of the facts: the register names are those of QEMU 10's
 * gdbstub target descriptions (checked with qXfer:features:read on
 * qemu-system-x86_64, qemu-system-aarch64 -M virt -cpu max and
 * qemu-system-arm -M virt); the trap encodings are PANDA's hypercall
 * instructions as the assemblers emit them.
 */
#include "arch/arch_ops.h"

#include "gpm/abi.h"

/* CS's low two bits are the current privilege level; 3 is user. */
static bool x86_64_is_user(uint64_t cs)
{
    return (cs & 3) == 3;
}

/*
 * PSTATE as QEMU's "cpsr" shows it: EL in bits 3:2, nRW in bit 4 (1: the
 * CPU runs AArch32). Only AArch64 EL0 counts as user mode here.
 */
static bool aarch64_is_user(uint64_t cpsr)
{
    return ((cpsr >> 2) & 3) == 0 && !(cpsr & 0x10);
}

/* CPSR.M (bits 4:0) is 0x10 in User mode. */
static bool arm_is_user(uint64_t cpsr)
{
    return (cpsr & 0x1f) == 0x10;
}

/*
 * MIPS Status (CP0 register 12): KSU (bits 4:3) = 2 is user mode, unless
 * EXL (bit 1) or ERL (bit 2) holds the CPU in kernel mode (an exception
 * being taken).
 */
static bool mips_is_user(uint64_t status)
{
    return ((status >> 3) & 3) == 2 && !(status & 6);
}

/*
 * GDB's x86_64 order is rax rbx rcx rdx rsi rdi rbp rsp r8-r15; QEMU's
 * env->regs[] is the hardware order R_EAX R_ECX R_EDX R_EBX R_ESP R_EBP
 * R_ESI R_EDI, then r8-r15.
 */
static const uint8_t x86_64_env_gpr[16] = {0, 3, 1,  2,  6,  7,  5,  4,
                                           8, 9, 10, 11, 12, 13, 14, 15};
/*
 * GDB's i386 order (eax ecx edx ebx esp ebp esi edi) is the hardware
 * order of env->regs[].
 */
/* ARM r0-r15 and AArch64 x0-x30 plus sp (31) are in GDB's order. */
static const uint8_t identity_env_gpr[32] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static const gpm__arch_ops_t ops_table[GPM_ARCH_COUNT] = {
    [GPM_ARCH_X86_64] =
        {
            .arch = GPM_ARCH_X86_64,
            .hc_addr = GPM_HC_ADDR_X86_64,
            .hc_insn = {0x0f, 0xa2}, /* cpuid */
            .hc_insn_len = 2,
            .mode_reg = "cs",
            .mode_is_user = x86_64_is_user,
            .gdb_xml_arch = "i386",
            .pc_reg = "rip",
            .bp_kind = 1,
            .user_top = 0x0000800000000000ull,
            .syscall_entry_symbol = "entry_SYSCALL_64",
            .current_task_symbol = "current_task",
            .user_percpu_reg = "k_gs_base",
            .entry_step_over = gpm__entry_x86_64_step_over,
            .env_gpr_field = "regs",
            .env_gpr_index = x86_64_env_gpr,
            .env_ngpr = 16,
            .env_pc_field = "eip",
            .mmu_regs = {"cr3", "cr4"},
            .xlate = gpm__mmu_x86_64_xlate,
        },
    [GPM_ARCH_I386] =
        {
            .arch = GPM_ARCH_I386,
            .hc_addr = GPM_HC_ADDR_I386,
            .hc_insn = {0x0f, 0xa2}, /* cpuid */
            .hc_insn_len = 2,
            .mode_reg = "cs",
            .mode_is_user = x86_64_is_user,
            .gdb_xml_arch = "i386",
            .pc_reg = "eip",
            .bp_kind = 1,
            .user_top = 0xc0000000ull,
            /*
             * The kernel facts (docs/image.md): at entry_INT80_32's first
             * instruction eax-ebp are the user's and the return address
             * is the iret frame's first word at esp (GDB 4). The kernel
             * reaches current_task through %fs, a base the user does not
             * have; with one vCPU the profile gives its address as
             * &current_task + __per_cpu_offset[0] (no base register).
             */
            .syscall_entry_symbol = "entry_INT80_32",
            .current_task_symbol = "current_task",
            .user_percpu_reg = NULL,
            .percpu_base_const = true,
            .entry_ret_word = true,
            .entry_ret_base_reg = 4,
            .entry_ret_offset = 0,
            /*
             * sysenter (docs/arch.md): at entry_SYSENTER_32 eax is the
             * number (-1 runs nothing); the kernel (regparm) calls
             * syscall_exit_to_user_mode(regs) with regs in eax, whose ax
             * and ip are words 6 and 12 of the i386 pt_regs (bx, cx,
             * dx, si, di, bp, ax, ds, es, fs, gs, orig_ax, ip, ...), ip
             * then the vDSO's int80_landing_pad, after int $0x80.
             */
            .bounce_entry_symbol = "entry_SYSENTER_32",
            .bounce_exit_symbol = "syscall_exit_to_user_mode",
            .bounce_skip_nr = 0xffffffffu,
            .bounce_exit_regs_reg = 0,
            .bounce_pt_ax = 24,
            .bounce_pt_ip = 48,
            .bounce_insn = {0xcd, 0x80}, /* int $0x80 */
            .bounce_insn_len = 2,
            .env_gpr_field = "regs",
            .env_gpr_index = identity_env_gpr,
            .env_ngpr = 8,
            .env_pc_field = "eip",
            .mmu_regs = {"cr3", "cr4", "cr0"},
            .xlate = gpm__mmu_i386_xlate,
        },
    [GPM_ARCH_AARCH64] =
        {
            .arch = GPM_ARCH_AARCH64,
            .hc_addr = GPM_HC_ADDR_AARCH64,
            /* msr S0_0_c5_c0_0, xzr = 0xd500501f, little-endian. */
            .hc_insn = {0x1f, 0x50, 0x00, 0xd5},
            .hc_insn_len = 4,
            .mode_reg = "cpsr",
            .mode_is_user = aarch64_is_user,
            .gdb_xml_arch = "aarch64",
            .pc_reg = "pc",
            .bp_kind = 4,
            .user_top = 0x0001000000000000ull,
            /*
             * The kernel facts (docs/image.md): el0_svc(regs) runs for
             * system calls only, x0 pointing at the saved x0-x30, sp, pc;
             * the per-CPU __entry_task (at TPIDR_EL1 + its address) is the
             * running task in user mode and in the kernel.
             */
            .syscall_entry_symbol = "el0_svc",
            .current_task_symbol = "__entry_task",
            .user_percpu_reg = "TPIDR_EL1",
            .entry_pt_regs = true,
            .entry_pt_regs_reg = 0,
            .entry_pt_regs_n = 33,
            .env_gpr_field = "xregs",
            .env_gpr_index = identity_env_gpr,
            .env_ngpr = 32,
            .env_pc_field = "pc",
            .mmu_regs = {"TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "SCTLR"},
            .xlate = gpm__mmu_aarch64_xlate,
        },
    [GPM_ARCH_ARM] =
        {
            .arch = GPM_ARCH_ARM,
            .hc_addr = GPM_HC_ADDR_ARM,
            /*
             * ARM state: mcr p7, 0, r0, c0, c0, 0 = 0xee000710. ARMv7
             * instructions are little-endian in memory even on BE8.
             */
            .hc_insn = {0x10, 0x07, 0x00, 0xee},
            .hc_insn_len = 4,
            .mode_reg = "cpsr",
            .mode_is_user = arm_is_user,
            .gdb_xml_arch = "arm",
            .pc_reg = "pc",
            .bp_kind = 4,
            .user_top = 0xc0000000ull,
            /*
             * vector_swi's first instruction: r0-r12 are the user's, r7
             * the number, lr_svc the return address; the per-CPU
             * __entry_task (at TPIDRPRW + its address) is the running task.
             */
            .syscall_entry_symbol = "vector_swi",
            .syscall_entry_alt = {"vector_bhb_loop8_swi",
                                  "vector_bhb_bpiall_swi"},
            .current_task_symbol = "__entry_task",
            .user_percpu_reg = "TPIDRPRW",
            .entry_insn_len = gpm__entry_arm_insn_len,
            .env_gpr_field = "regs",
            .env_gpr_index = identity_env_gpr,
            .env_ngpr = 16,
            .env_pc_field = NULL, /* pc is r15 */
            .mmu_regs = {"TTBR0", "TTBR1", "TTBCR", "SCTLR"},
            .xlate = gpm__mmu_armv7_xlate,
        },
    [GPM_ARCH_MIPSEL] =
        {
            .arch = GPM_ARCH_MIPSEL,
            .hc_addr = GPM_HC_ADDR_MIPSEL,
            /* movz $zero, $zero, $zero = 0x0000000a, little-endian. */
            .hc_insn = {0x0a, 0x00, 0x00, 0x00},
            .hc_insn_len = 4,
            .mode_reg = "status",
            .mode_is_user = mips_is_user,
            .gdb_xml_arch = "mips",
            .pc_reg = "pc",
            .bp_kind = 4,
            .user_top = 0x80000000ull,
            /*
             * The kernel facts (docs/image.md, image_mips.py): at
             * handle_sys's local label loads_done v0, a0-a3, t5, t6 are
             * the number and arguments (live), sp the pt_regs, whose
             * cp0_epc (sp + 180) holds the address after the syscall;
             * the number and a0-a3 are also saved there (regs[n] at sp +
             * 32 + 4n) and a3 once more in regs[26] for restarts. The
             * running task: kernelsp[0] (a constant address) points into
             * its 8 KiB kernel stack, whose base holds its thread_info.
             */
            .syscall_entry_symbol = "loads_done",
            .current_task_symbol = "kernelsp",
            .user_percpu_reg = NULL,
            .percpu_base_const = true,
            .current_stack_mask = ~(uint64_t)(8192 - 1),
            .entry_ret_word = true,
            .entry_ret_base_reg = 29,
            .entry_ret_offset = 180,
            .entry_saved = {{2, 32 + 4 * 2},
                            {4, 32 + 4 * 4},
                            {5, 32 + 4 * 5},
                            {6, 32 + 4 * 6},
                            {7, 32 + 4 * 7},
                            {7, 32 + 4 * 26}},
            .entry_saved_n = 6,
            .env_gpr_field = "active_tc.gpr",
            .env_gpr_index = identity_env_gpr,
            .env_ngpr = 32,
            .env_pc_field = "active_tc.PC",
            .mmu_inputs_const = true,
            .mmu_ninputs = 1,
            .xlate = gpm__mmu_mips32_xlate,
            .gdb_builtin_xml = gpm__gdb_mips32_xml,
        },
    [GPM_ARCH_MIPS64EL] =
        {
            .arch = GPM_ARCH_MIPS64EL,
            .hc_addr = GPM_HC_ADDR_MIPS64EL,
            .hc_insn = {0x0a, 0x00, 0x00, 0x00}, /* movz $zero, ... */
            .hc_insn_len = 4,
            .mode_reg = "status",
            .mode_is_user = mips_is_user,
            .gdb_xml_arch = "mips",
            .pc_reg = "pc",
            .bp_kind = 4,
            .user_top = 1ull << 40,
            /*
             * The kernel facts (docs/image.md, image_mips.py): the syscall
             * exception's handler (o32's handle_sys) saves the user's
             * registers in pt_regs at sp, stores EPC + 4 in its cp0_epc
             * (sp + 296) and passes n64 numbers on to handle_sys64, at
             * whose first instruction v0 and a0-a5 are live; the number
             * and a0-a2, a4, a5 are saved at sp + 8n (a3's restart copy
             * is stored by that first instruction). kernelsp[0] points
             * into the running thread's 16 KiB kernel stack.
             */
            .syscall_entry_symbol = "handle_sys64",
            .current_task_symbol = "kernelsp",
            .user_percpu_reg = NULL,
            .percpu_base_const = true,
            .current_stack_mask = ~(uint64_t)(16384 - 1),
            .entry_ret_word = true,
            .entry_ret_base_reg = 29,
            .entry_ret_offset = 296,
            .entry_saved = {{2, 8 * 2},
                            {4, 8 * 4},
                            {5, 8 * 5},
                            {6, 8 * 6},
                            {8, 8 * 8},
                            {9, 8 * 9}},
            .entry_saved_n = 6,
            .env_gpr_field = "active_tc.gpr",
            .env_gpr_index = identity_env_gpr,
            .env_ngpr = 32,
            .env_pc_field = "active_tc.PC",
            .mmu_inputs_const = true,
            .mmu_ninputs = 3,
            .xlate = gpm__mmu_mips64_xlate,
            .gdb_builtin_xml = gpm__gdb_mips64_xml,
        },
};

const gpm__arch_ops_t *gpm__arch_ops(gpm_arch_t arch)
{
    if ((unsigned)arch >= GPM_ARCH_COUNT || !ops_table[arch].mode_reg) {
        return NULL;
    }
    return &ops_table[arch];
}
