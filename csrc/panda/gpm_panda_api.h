/*
 * gpm_panda_api.h - the PANDA-independent half of the guest_plugin_manager
 * plugin: one process-wide gpm_manager_t behind the exported C API of
 * guest_plugin_manager.h, a record of the plugins and channels made
 * through it, and the monitor's text commands.
 *
 * Nothing here includes a PANDA header, so it builds (and is tested) on a
 * machine without PANDA; guest_plugin_manager.c connects it to PANDA's
 * callbacks.
 *
 * Threads: gpm_panda_api_init() and gpm_panda_api_fini() run on PANDA's
 * main thread (plugin load and unload) with no other call under way. Every
 * other function may be called from any thread; the record takes its own
 * lock and the manager is thread-safe.
 */
#ifndef GPM_PANDA_API_H
#define GPM_PANDA_API_H

#include <stdbool.h>
#include <stddef.h>

#include "gpm/gpm.h"
#include "guest_plugin_manager.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Internal to the plugin's .so; only guest_plugin_manager.h is exported. */
#if defined(__GNUC__)
#define GPM_PANDA_INTERNAL __attribute__((visibility("hidden")))
#else
#define GPM_PANDA_INTERNAL
#endif

/* Receives one line of text (no newline); @line lives during the call. */
typedef void (*gpm_panda_print_fn)(void *opaque, const char *line);

/**
 * gpm_panda_api_init() - create the manager behind the exported API.
 * @arch:     the guest's architecture.
 * @event_cb: also receives every manager event after the record has been
 *            updated (e.g. to run PPP callbacks); may be NULL. Called on
 *            the emulator thread inside a hypercall.
 * @opaque:   passed to @event_cb; owned by the caller, who keeps it alive
 *            until gpm_panda_api_fini().
 *
 * Returns 0, GPM_EBUSY if already initialised, or the manager's error.
 */
GPM_PANDA_INTERNAL int gpm_panda_api_init(gpm_arch_t arch,
                                          gpm_event_cb event_cb, void *opaque);

/**
 * gpm_panda_api_fini() - free the manager, every channel and the record.
 *
 * Afterwards the exported functions fail with GPM_EPERM until the next
 * gpm_panda_api_init(). Safe to call when not initialised.
 */
GPM_PANDA_INTERNAL void gpm_panda_api_fini(void);

/**
 * gpm_panda_api_reset_if_used() - start over after a snapshot was loaded.
 *
 * If the guest has made a hypercall since the manager was made, the
 * guest-side state those hypercalls built (the daemon, started plugins,
 * channels it opened) is gone with the restored snapshot: free the
 * manager and every channel (their ids then fail with GPM_EBADF) and make
 * a new one with the same architecture and event callback. Otherwise
 * keep everything, so plugins added before the first snapshot load (e.g.
 * from init_plugin, before "-loadvm") still start.
 *
 * Returns 1 if it started over, 0 if not, or a negative GPM_E* code (the
 * API is then uninitialised). Same thread rules as gpm_panda_api_init().
 */
GPM_PANDA_INTERNAL int gpm_panda_api_reset_if_used(void);

/**
 * gpm_panda_api_manager() - the manager, or NULL when not initialised.
 * The pointer stays valid until gpm_panda_api_fini().
 */
GPM_PANDA_INTERNAL gpm_manager_t *gpm_panda_api_manager(void);

/**
 * gpm_panda_api_count_no_doorbell() - the glue answered a GET_DOORBELL
 * query "none" (PANDA has no doorbell page); "gpm stats" shows these
 * apart from the guest's errors. Any thread.
 */
GPM_PANDA_INTERNAL void gpm_panda_api_count_no_doorbell(void);

/**
 * gpm_panda_api_set_log() - where failures are reported.
 * @fn: NULL restores the default (one line on stderr, prefixed with
 *      "guest_plugin_manager: "). @opaque is owned by the caller.
 */
GPM_PANDA_INTERNAL void gpm_panda_api_set_log(gpm_panda_print_fn fn,
                                              void *opaque);

/**
 * gpm_panda_api_describe() - print the plugins and channels, one per line.
 *
 * Lists what was made through the exported API and the channels the
 * guest allocated, with what is queued on each and whether the guest
 * started it.
 */
GPM_PANDA_INTERNAL void gpm_panda_api_describe(gpm_panda_print_fn print,
                                               void *opaque);

/**
 * gpm_panda_api_monitor() - run one monitor command.
 * @cmd: the text after PANDA's "plugin_cmd", e.g. "help", "gpm plugins".
 *
 * Understands "help", "gpm help", "gpm list" (plugins and channels),
 * "gpm plugins", "gpm channels" and "gpm stats", and the one-word forms
 * "gpm-list" etc. (PANDA's plugin_cmd takes one word unless quoted). Returns
 * true if @cmd was one of ours (after printing its answer), false otherwise
 * (nothing printed, except for "help", which prints our part and returns false
 * so other plugins print theirs).
 */
GPM_PANDA_INTERNAL bool
gpm_panda_api_monitor(const char *cmd, gpm_panda_print_fn print, void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* GPM_PANDA_API_H */
