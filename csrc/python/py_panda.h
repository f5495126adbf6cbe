/*
 * py_panda.h - internal contract between the pypanda files of pandagpm._gpm
 * (py_panda.c: the hypercall hot path and its CPU view; py_panda_inject.c:
 * the injector driven by syscalls2).
 */
#ifndef GPM_PY_PANDA_H
#define GPM_PY_PANDA_H

#include <stdint.h>

#include "gpm/host.h"

/*
 * Called by gpm__panda_with_cpu() with host ops over @cpu's registers and
 * memory (pass @view as their cpu argument) and @cpu's CPUArchState @env.
 * Returns 0 or a negative GPM_E* code, handed back to the caller.
 */
typedef int (*gpm__panda_cpu_fn)(const gpm_host_ops_t *ops, void *view,
                                 uint8_t *env, void *opaque);

/*
 * Runs @fn on a view of PANDA's CPUState @cpu made from the context that
 * _gpm.panda_hc_install() set up (register offsets, libpanda's memory
 * functions), holding the context lock, so it never races a context swap.
 * Returns @fn's result, or GPM_ENOSYS when no context is installed.
 * PANDA's CPU thread only; never with the GIL held.
 */
int gpm__panda_with_cpu(void *cpu, gpm__panda_cpu_fn fn, void *opaque);

/*
 * Gives the daemon channel of the installed context's manager to the
 * guest process @tgid (the injected daemon), when callers' tgids are
 * known (_gpm.panda_hc_set_task()). Returns 0, GPM_ENOSYS (no context,
 * or tgids unknown: nothing to do) or the core's error. Any thread;
 * never with the GIL held.
 */
int gpm__panda_set_daemon_owner(int64_t tgid);

#endif /* GPM_PY_PANDA_H */
