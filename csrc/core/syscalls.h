/*
 * syscalls.h - per-architecture system call numbers and registers that the
 * injector needs. Numbers are the kernel's ABI facts for each arch.
 */
#ifndef GPM_CORE_SYSCALLS_H
#define GPM_CORE_SYSCALLS_H

#include <stdbool.h>

#include "gpm/arch.h"

/* A number that an arch does not have. */
#define GPM_NR_NONE (-1)

typedef struct gpm__sys_table {
    bool injectable;      /* registers below are known and tested */
    unsigned nr_reg;      /* GDB number of the call number register */
    unsigned ret_reg;     /* where the result appears at re-entry */
    unsigned retaddr_reg; /* holds the user address after the syscall */
    unsigned arg_regs[6];
    unsigned insn_len; /* bytes of the syscall instruction */
    int getuid, mmap, munmap, memfd_create, open, openat, write, close, fork,
        clone, setsid, execve, exit_group, rt_sigprocmask;
    bool mmap_pgoff; /* mmap2: the offset counts pages */
    /*
     * err_flag: a failed call returns a positive errno in ret_reg and a
     * non-zero err_flag_reg (MIPS: a3); the injector reads -errno.
     */
    bool err_flag;
    unsigned err_flag_reg;
    /*
     * Where the ABI's constants differ from the common ones (0: the
     * common value): MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, SIG_SETMASK
     * and the kernel's sigset_t size (MIPS: 0x10802, 3 and 16 bytes).
     */
    unsigned mmap_flags;
    unsigned sig_setmask;
    unsigned sigset_bytes;
    unsigned open_flags; /* O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC */
} gpm__sys_table_t;

/* The table for @arch, or NULL if none is known. */
const gpm__sys_table_t *gpm__sys_table(gpm_arch_t arch);

#endif /* GPM_CORE_SYSCALLS_H */
