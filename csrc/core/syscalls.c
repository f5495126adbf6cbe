/*
 * syscalls.c - system call tables for the injector.
 *
 * x86_64, i386, aarch64, arm and MIPS (o32 and n64, both byte orders)
 * are injectable: their registers at the stock-QEMU host's syscall entry
 * stop are known. The other
 * tables hold the numbers so that the hosts for those architectures only need
 * to add their registers.
 */
#include <stddef.h>

#include "syscalls.h"

#define NONE               GPM_NR_NONE
/* O_RDWR 02 | O_CREAT 0100 | O_TRUNC 01000 | O_CLOEXEC 02000000. */
#define OPEN_FLAGS_GENERIC 0x80242u
/* MIPS: O_CREAT 0x100 and O_TRUNC 0x200. */
#define OPEN_FLAGS_MIPS    0x80302u

/*
 * MIPS's own constants (both ABIs): MAP_ANONYMOUS 0x800, MAP_POPULATE
 * 0x10000; SIG_SETMASK 3; _NSIG 128, so sigset_t is 16 bytes.
 */
#define MIPS_CONSTANTS                                                         \
    .mmap_flags = 0x02u | 0x800u | 0x10000u, .sig_setmask = 3,                 \
    .sigset_bytes = 16

/* MIPS o32 numbers start at 4000; both byte orders share them. */
/* The MIPS injector registers (see the rows), both byte orders. */
#define MIPS_O32_REGS                                                          \
    .injectable = true, .nr_reg = 2, .ret_reg = 2, .retaddr_reg = 37,          \
    .arg_regs = {4, 5, 6, 7, 13, 14}, .insn_len = 4, .err_flag = true,         \
    .err_flag_reg = 7
#define MIPS_N64_REGS                                                          \
    .injectable = true, .nr_reg = 2, .ret_reg = 2, .retaddr_reg = 37,          \
    .arg_regs = {4, 5, 6, 7, 8, 9}, .insn_len = 4, .err_flag = true,           \
    .err_flag_reg = 7

#define MIPS_O32_NUMBERS                                                       \
    .getuid = 4024, .mmap = 4090, .munmap = 4091, .memfd_create = 4354,        \
    .open = 4005, .openat = 4288, .write = 4004, .close = 4006, .fork = 4002,  \
    .clone = 4120, .setsid = 4066, .execve = 4011, .exit_group = 4246,         \
    .rt_sigprocmask = 4195, .open_flags = OPEN_FLAGS_MIPS, MIPS_CONSTANTS

/* MIPS n64 numbers start at 5000; both byte orders share them. */
#define MIPS_N64_NUMBERS                                                       \
    .getuid = 5100, .mmap = 5009, .munmap = 5011, .memfd_create = 5314,        \
    .open = 5002, .openat = 5247, .write = 5001, .close = 5003, .fork = 5056,  \
    .clone = 5055, .setsid = 5110, .execve = 5057, .exit_group = 5205,         \
    .rt_sigprocmask = 5014, .open_flags = OPEN_FLAGS_MIPS, MIPS_CONSTANTS

static const gpm__sys_table_t tables[GPM_ARCH_COUNT] = {
    /* rax 0, rcx 2, rdx 3, rsi 4, rdi 5, r8 8, r9 9, r10 10. */
    [GPM_ARCH_X86_64] = {.injectable = true,
                         .nr_reg = 0,
                         .ret_reg = 0,
                         .retaddr_reg = 2,
                         .arg_regs = {5, 4, 3, 10, 8, 9},
                         .insn_len = 2,
                         .getuid = 102,
                         .mmap = 9,
                         .munmap = 11,
                         .memfd_create = 319,
                         .open = 2,
                         .openat = 257,
                         .write = 1,
                         .close = 3,
                         .fork = 57,
                         .clone = 56,
                         .setsid = 112,
                         .execve = 59,
                         .rt_sigprocmask = 14,
                         .exit_group = 231,
                         .open_flags = OPEN_FLAGS_GENERIC},
    /*
     * At entry_INT80_32: eax = number, ebx ecx edx esi edi ebp (GDB 3 1 2
     * 6 7 5) = arguments, eip (GDB 8, the iret frame's word that the host
     * presents as a register) = the address after the int $0x80 (2
     * bytes), eax = the result at the re-entry.
     */
    [GPM_ARCH_I386] = {.injectable = true,
                       .nr_reg = 0,
                       .ret_reg = 0,
                       .retaddr_reg = 8,
                       .arg_regs = {3, 1, 2, 6, 7, 5},
                       .insn_len = 2,
                       .getuid = 199, /* getuid32 */
                       .mmap = 192,   /* mmap2 */
                       .munmap = 91,
                       .memfd_create = 356,
                       .open = 5,
                       .openat = 295,
                       .write = 4,
                       .close = 6,
                       .fork = 2,
                       .clone = 120,
                       .setsid = 66,
                       .execve = 11,
                       .rt_sigprocmask = 175,
                       .exit_group = 252,
                       .mmap_pgoff = true,
                       .open_flags = OPEN_FLAGS_GENERIC},
    /*
     * At vector_swi: r7 = number, r0-r5 = arguments, lr (r14, the SVC
     * mode's) = the user address after the svc, r0 = the result at the
     * re-entry. The svc is 4 bytes in ARM state, 2 in Thumb: the host
     * tells which (gpm_inj_thread_t.insn_len).
     */
    [GPM_ARCH_ARM] = {.injectable = true,
                      .nr_reg = 7,
                      .ret_reg = 0,
                      .retaddr_reg = 14,
                      .arg_regs = {0, 1, 2, 3, 4, 5},
                      .insn_len = 4,
                      .getuid = 199,
                      .mmap = 192,
                      .munmap = 91,
                      .memfd_create = 385,
                      .open = 5,
                      .openat = 322,
                      .write = 4,
                      .close = 6,
                      .fork = 2,
                      .clone = 120,
                      .setsid = 66,
                      .execve = 11,
                      .rt_sigprocmask = 175,
                      .exit_group = 248,
                      .mmap_pgoff = true,
                      .open_flags = OPEN_FLAGS_GENERIC},
    /*
     * x8 = number, x0-x5 = arguments, pc (GDB 32) = the address after the
     * svc, x0 = the result at the re-entry; the host presents the user
     * registers the kernel saved (a pt_regs view).
     */
    [GPM_ARCH_AARCH64] = {.injectable = true,
                          .nr_reg = 8,
                          .ret_reg = 0,
                          .retaddr_reg = 32,
                          .arg_regs = {0, 1, 2, 3, 4, 5},
                          .insn_len = 4,
                          .getuid = 174,
                          .mmap = 222,
                          .munmap = 215,
                          .memfd_create = 279,
                          .open = NONE,
                          .openat = 56,
                          .write = 64,
                          .close = 57,
                          .fork = NONE,
                          .clone = 220,
                          .setsid = 157,
                          .execve = 221,
                          .rt_sigprocmask = 135,
                          .exit_group = 94,
                          .open_flags = OPEN_FLAGS_GENERIC},
    /*
     * At handle_sys's loads_done: v0 (GDB 2) = number, a0-a3 (4-7) and
     * t5, t6 (13, 14: arguments 5 and 6, which o32 passes on the user
     * stack and the entry has just loaded) = arguments, pc (37: the
     * pt_regs word the host presents) = the address after the 4-byte
     * syscall instruction. At the re-entry v0 is the result and a3 (7)
     * is 1 when it failed (v0 is then the positive errno). The registers
     * do not depend on the byte order.
     */
    [GPM_ARCH_MIPS] = {MIPS_O32_REGS, MIPS_O32_NUMBERS},
    [GPM_ARCH_MIPSEL] = {MIPS_O32_REGS, MIPS_O32_NUMBERS},
    /*
     * At handle_sys64: v0 = number, a0-a5 (GDB 4-9) = arguments, pc (37:
     * the pt_regs word the host presents) = the address after the
     * syscall; v0 and a3 at the re-entry as for o32.
     */
    [GPM_ARCH_MIPS64] = {MIPS_N64_REGS, MIPS_N64_NUMBERS},
    [GPM_ARCH_MIPS64EL] = {MIPS_N64_REGS, MIPS_N64_NUMBERS},
    [GPM_ARCH_PPC] = {.getuid = 24,
                      .mmap = 90,
                      .munmap = 91,
                      .memfd_create = 360,
                      .open = 5,
                      .openat = 286,
                      .write = 4,
                      .close = 6,
                      .fork = 2,
                      .clone = 120,
                      .setsid = 66,
                      .execve = 11,
                      .rt_sigprocmask = 174,
                      .exit_group = 234,
                      .open_flags = OPEN_FLAGS_GENERIC},
};

const gpm__sys_table_t *gpm__sys_table(gpm_arch_t arch)
{
    if ((unsigned)arch >= GPM_ARCH_COUNT)
        return NULL;
    return &tables[arch];
}
