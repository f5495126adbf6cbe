/*
 * linjector.h - what the linjector PANDA plugin offers other plugins.
 *
 * Self-contained; no PANDA header needed.
 */
#ifndef LINJECTOR_H
#define LINJECTOR_H

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

#ifdef __cplusplus
}
#endif

#endif /* LINJECTOR_H */
