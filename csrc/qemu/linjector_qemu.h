/*
 * linjector_qemu.h - linjector on the stock-QEMU host.
 *
 * A breakpoint at the kernel's system call entry (the arch backend's
 * syscall_entry_symbol, e.g. entry_SYSCALL_64) is armed only while an
 * injection runs: every stop there costs the whole guest a flush of
 * QEMU's translated code. At each stop the thread is identified from the
 * per-CPU current-task pointer (the per-CPU base register of the backend,
 * e.g. k_gs_base before swapgs, TPIDR_EL1 on arm64) and the task_struct
 * offsets of the image profile, and handed to the injector with its user
 * registers (live, or the pt_regs the kernel saved, as the backend says);
 * the host then steps off the entry instruction or the backend does.
 *
 * An arch with a second entry the injector cannot rewind (arch_ops
 * bounce_*, i386's sysenter) gets two more breakpoints: a wanted thread's
 * call there is run as nothing and, at its exit, rewound onto the
 * instruction of the main entry (the vDSO's int $0x80), which it then
 * enters with its own registers (docs/arch.md).
 */
#ifndef GPM_QEMU_LINJECTOR_H
#define GPM_QEMU_LINJECTOR_H

#include <stdint.h>

#include "gpm/error.h"
#include "gpm/injector.h"
#include "qemu/qemu_host.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPM_KERNEL_MAX_ENTRIES 4

/* What the host must know about the guest kernel (the image profile). */
typedef struct gpm_kernel_profile {
    gpm_arch_t arch; /* the guest's; its backend (csrc/arch) says
                      * which symbols and registers these are */
    /* The breakpoints: arch_ops.syscall_entry_symbol and its alternatives
     * the kernel has; 0 ends the list (at least one is needed). */
    uint64_t entry_syscall[GPM_KERNEL_MAX_ENTRIES];
    /* arch_ops.bounce_entry_symbol and bounce_exit_symbol, or 0 (none):
     * both or neither. */
    uint64_t bounce_entry;
    uint64_t bounce_exit;
    uint64_t current_task; /* per-CPU offset of the current task pointer */
    uint32_t task_pid;     /* offsetof(struct task_struct, pid) */
    uint32_t task_tgid;
    uint32_t task_comm;
    uint32_t task_real_parent;
    uint32_t task_cred;
    uint32_t cred_uid; /* offsetof(struct cred, uid) */
} gpm_kernel_profile_t;

typedef struct gpm_qemu_inject gpm_qemu_inject_t;

/**
 * gpm_qemu_inject_start() - arm the syscall-entry breakpoint for @inj.
 * @h:    a started host. @prof: copied. @inj: owned by the caller; it must
 *        outlive the returned handle and not be used elsewhere meanwhile.
 * @out:  receives the handle; free it with gpm_qemu_inject_free().
 *
 * Call from any thread but the host's I/O thread. Returns 0,
 * GPM_EINVAL (no backend for @prof->arch), GPM_ENOENT (no per-CPU base
 * register on the target), GPM_ENOMEM, or an
 * error of gpm_qemu_host_add_breakpoint().
 */
int gpm_qemu_inject_start(gpm_qemu_host_t *h, const gpm_kernel_profile_t *prof,
                          gpm_injector_t *inj, gpm_qemu_inject_t **out);

/**
 * gpm_qemu_inject_wait() - wait until the injection has ended.
 * @timeout_ms: < 0 waits without limit.
 *
 * Disarms the breakpoint once the injector is done or has failed.
 * Returns 0 (done), GPM_ECANCELED (failed: see gpm_injector_error()),
 * GPM_ETIMEDOUT (still waiting for a target, or under way), or a
 * transport error.
 */
int gpm_qemu_inject_wait(gpm_qemu_inject_t *qi, int timeout_ms);

/**
 * gpm_qemu_inject_stops() - syscall entries seen so far.
 */
uint64_t gpm_qemu_inject_stops(gpm_qemu_inject_t *qi);

/**
 * gpm_qemu_inject_entry() - the kernel symbol of the entry the hijacked
 * thread used: arch_ops.syscall_entry_symbol, or bounce_entry_symbol if
 * its call came by that entry and was bounced (i386: entry_SYSENTER_32);
 * NULL while no thread is hijacked.
 * @bounces: if not NULL, receives how many calls were bounced so far.
 */
const char *gpm_qemu_inject_entry(gpm_qemu_inject_t *qi, uint64_t *bounces);

/**
 * gpm_qemu_inject_free() - disarm the breakpoint if still armed and free.
 *
 * If an injection is under way its process is left as the injector left
 * it; call only after gpm_qemu_inject_wait() returned 0 or GPM_ECANCELED
 * unless the guest is being thrown away. NULL is ignored.
 */
void gpm_qemu_inject_free(gpm_qemu_inject_t *qi);

#ifdef __cplusplus
}
#endif

#endif /* GPM_QEMU_LINJECTOR_H */
