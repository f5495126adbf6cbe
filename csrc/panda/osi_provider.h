/*
 * osi_provider.h - guest_plugin_manager as a provider of PANDA's OSI API:
 * process lists and memory maps from the guest agent (the "procs" guest
 * plugin) instead of a kernel profile.
 *
 * Opt-in: -panda guest_plugin_manager:osi_provider=true. Needs PANDA's
 * osi plugin loaded (the framework; osi_linux is not needed); our
 * callbacks are added to its on_get_processes and on_get_mappings. When
 * the guest daemon says hello the procs plugin is loaded, and while the
 * guest makes hypercalls the process list is refreshed every
 * GPM_OSI_PERIOD_MS of host time (see osi_snapshot.h for how fresh an
 * answer is). Without an agent every answer is "nothing".
 *
 * Threads: all functions run on the emulator thread (PANDA callbacks and
 * the manager's event callback).
 */
#ifndef GPM_OSI_PROVIDER_H
#define GPM_OSI_PROVIDER_H

#include <stdbool.h>

#include "gpm_panda_api.h"

/* How often the process list is asked for while the guest runs. */
#define GPM_OSI_PERIOD_MS 500

/**
 * gpm_osi_provider_init() - register with the osi plugin.
 *
 * Returns false, with one line on stderr, if osi is not loaded or lacks
 * the callbacks; nothing is registered then.
 */
GPM_PANDA_INTERNAL bool gpm_osi_provider_init(void);

/* gpm_osi_provider_fini() - unregister and free the snapshot. */
GPM_PANDA_INTERNAL void gpm_osi_provider_fini(void);

/* gpm_osi_provider_event() - the manager's events (daemon ready, exits). */
GPM_PANDA_INTERNAL void gpm_osi_provider_event(const gpm_event_t *ev);

/* gpm_osi_provider_reset() - the guest state is gone (a snapshot load). */
GPM_PANDA_INTERNAL void gpm_osi_provider_reset(void);

/* gpm_osi_provider_tick() - after a hypercall: send a refresh if due. */
GPM_PANDA_INTERNAL void gpm_osi_provider_tick(void);

#endif /* GPM_OSI_PROVIDER_H */
