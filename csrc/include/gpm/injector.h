/*
 * gpm/injector.h - linjector: start a program in a running guest without
 * its cooperation, by hijacking one process at a system call entry.
 *
 * The host stops the guest at every system call entry while the injector
 * is armed and calls gpm_injector_on_syscall() with the stopped thread's
 * identity. The injector picks a target thread (filters: process name,
 * root only), saves its registers, and runs a chain of injected system
 * calls by rewriting the call number and arguments and pointing the user
 * return address back at the syscall instruction, so that the thread enters
 * again with the injected call's result:
 *
 *   parent: [getuid] mmap(scratch, MAP_POPULATE) -> memfd_create (or open
 *           a /tmp file) -> write the ELF in pieces through the scratch
 *           area -> [close the /tmp file | open and close
 *           /proc/self/fd/N, so a process without /proc fails before it
 *           forks] -> fork -> [close memfd] -> munmap -> restore every
 *           saved register; the original call runs.
 *   child:  setsid -> execve("/proc/self/fd/N" or the /tmp file)
 *           -> exit_group(127) if execve failed.
 *
 * Every injected call's failure is logged and the parent is cleaned up
 * (descriptor closed, scratch unmapped) and restored exactly.
 *
 * At each stop the host must present the thread's USER registers in GDB
 * numbering with the system call number in the arch's number register and
 * the user return address in its return-address register (x86_64: stopped
 * at entry_SYSCALL_64, RAX = number, RCX = address after the syscall).
 *
 * Threads: an injector is used by one thread at a time (the emulator's).
 */
#ifndef GPM_INJECTOR_H
#define GPM_INJECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpm/arch.h"
#include "gpm/host.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpm_injector gpm_injector_t;

/* What the host knows about the stopped thread; -1 where it does not. */
typedef struct gpm_inj_thread {
    int64_t tid;  /* kernel task id (task_struct.pid) */
    int64_t tgid; /* process id (task_struct.tgid) */
    int64_t ppid; /* tgid of the parent (real_parent->tgid) */
    int64_t uid;  /* real uid, or -1: the injector then asks with getuid */
    char comm[16];
    /*
     * Bytes of the system call instruction the thread entered with, where
     * the arch has more than one (ARM: 4 in ARM state, 2 in Thumb); 0
     * means the arch's usual length.
     */
    unsigned insn_len;
} gpm_inj_thread_t;

typedef enum gpm_inj_state {
    GPM_INJ_WAITING = 0, /* no target chosen yet */
    GPM_INJ_RUNNING,     /* injected calls under way */
    GPM_INJ_DONE,        /* parent restored, child told to execve */
    GPM_INJ_FAILED,      /* parent restored after a failure */
} gpm_inj_state_t;

enum gpm_inj_log_level { GPM_INJ_LOG_INFO = 0, GPM_INJ_LOG_ERROR = 1 };

/* Receives one log line; @msg is only valid during the call. */
typedef void (*gpm_inj_log_cb)(int level, const char *msg, void *opaque);

typedef struct gpm_inj_config {
    gpm_arch_t arch;
    const uint8_t *elf; /* the program; copied by gpm_injector_new() */
    size_t elf_len;
    const char *proc_name;   /* only a process with this comm; NULL: any */
    bool require_root;       /* only a process whose real uid is 0 */
    const char *const *argv; /* extra arguments after argv[0]; NULL-ended */
    gpm_inj_log_cb log;
    void *log_opaque;
} gpm_inj_config_t;

/**
 * gpm_injector_new() - prepare an injection.
 * @cfg: copied, including the ELF and the arguments.
 * @out: receives the injector; free it with gpm_injector_free().
 *
 * Returns 0, GPM_EINVAL (empty ELF, too many arguments), GPM_ENOSYS (no
 * system call table for @cfg->arch yet) or GPM_ENOMEM.
 */
int gpm_injector_new(const gpm_inj_config_t *cfg, gpm_injector_t **out);

/** gpm_injector_free() - free an injector; NULL is ignored. */
void gpm_injector_free(gpm_injector_t *inj);

/**
 * gpm_injector_on_syscall() - a thread is stopped at system call entry.
 * @ops, @cpu: access to the stopped CPU, used only during this call.
 * @t: the stopped thread.
 *
 * Rewrites registers (and the scratch area's memory) when the thread is
 * the target or its forked child; leaves every other thread untouched.
 * Returns 0, or a negative GPM_E* code if the host ops failed (the
 * injection is then abandoned as GPM_INJ_FAILED without restoring).
 */
int gpm_injector_on_syscall(gpm_injector_t *inj, const gpm_host_ops_t *ops,
                            void *cpu, const gpm_inj_thread_t *t);

/**
 * gpm_injector_wants() - would @inj hijack thread @t at its next entry?
 *
 * True while a target is still wanted (GPM_INJ_WAITING) and @t passes the
 * configured checks (not init, not rejected, proc_name, a uid that is not
 * known to be non-root when require_root): what
 * gpm_injector_on_syscall() would decide, without changing anything.
 * Hosts use it to prepare an entry the injector cannot rewind (i386's
 * sysenter, see linjector_qemu.c) for the wanted threads only.
 */
bool gpm_injector_wants(const gpm_injector_t *inj, const gpm_inj_thread_t *t);

/** gpm_injector_state() - where the injection is. */
gpm_inj_state_t gpm_injector_state(const gpm_injector_t *inj);

/**
 * gpm_injector_target() - the hijacked process and its forked child.
 * @tgid, @child: either may be NULL; -1 while unknown.
 */
void gpm_injector_target(const gpm_injector_t *inj, int64_t *tgid,
                         int64_t *child);

/**
 * gpm_injector_settled() - true when no guest thread still needs @inj.
 *
 * That is: no target chosen yet, or the hijacked process has been
 * restored and its forked child (if any) was told to exit after a failed
 * execve, or is executing the program. A GPM_INJ_FAILED injector that is
 * settled may be freed and replaced to try another process; freeing one
 * that is not settled leaves a process in an injected call. NULL: true.
 */
bool gpm_injector_settled(const gpm_injector_t *inj);

/**
 * gpm_injector_error() - the first failure's message, or NULL.
 * The string lives as long as @inj.
 */
const char *gpm_injector_error(const gpm_injector_t *inj);

#ifdef __cplusplus
}
#endif

#endif /* GPM_INJECTOR_H */
