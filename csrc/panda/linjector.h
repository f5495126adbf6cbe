/*
 * linjector.h - what the linjector PANDA plugin offers other plugins.
 *
 * Self-contained; no PANDA header needed.
 */
#ifndef LINJECTOR_H
#define LINJECTOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * PPP callback (PPP_REG_CB("linjector", before_guest_inject, fn)): a
 * process has just been chosen and its registers saved; the first
 * injected system call runs when the guest continues. @cpu is only valid
 * during the call. Runs on the emulator thread, once per injection.
 */
struct CPUState;
typedef void (*before_guest_inject_t)(struct CPUState *cpu);
/* The same, registered with PPP_REG_CB_WITH_CONTEXT(); @context is yours. */
typedef void (*before_guest_inject_with_context_t)(void *context,
                                                   struct CPUState *cpu);

/*
 * PPP callback (PPP_REG_CB("linjector", after_guest_inject, fn)): the
 * hijacked process @pid has been restored and its forked child @child
 * (a process id, as the guest's getpid() gives it) was told to execute
 * the program. If that execve fails, linjector tries another process and
 * this runs again with the new ones. guest_plugin_manager uses it to give
 * the daemon's channel to @child alone. Emulator thread; @cpu only valid
 * during the call.
 */
typedef void (*after_guest_inject_t)(struct CPUState *cpu, int64_t pid,
                                     int64_t child);
typedef void (*after_guest_inject_with_context_t)(void *context,
                                                  struct CPUState *cpu,
                                                  int64_t pid, int64_t child);

#ifdef __cplusplus
}
#endif

#endif /* LINJECTOR_H */
