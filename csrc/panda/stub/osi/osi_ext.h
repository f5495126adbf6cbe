/*
 * Compile-only stand-in for PANDA's generated osi/osi_ext.h. Like the
 * real one, it defines its function pointers and init_osi_api() only in
 * the unit compiled with -DPLUGIN_MAIN (panda.mak passes it to the unit
 * named like the plugin), so a .so whose main unit is misnamed is left
 * with undefined symbols, which the glue check's link detects.
 */
#ifndef GPM_STUB_OSI_EXT_H
#define GPM_STUB_OSI_EXT_H

#include <stddef.h>

typedef OsiThread *(*get_current_thread_t)(CPUState *cpu);
typedef OsiProc *(*get_current_process_t)(CPUState *cpu);
extern get_current_thread_t gpm_stub_get_current_thread;
extern get_current_process_t gpm_stub_get_current_process;

static inline OsiThread *get_current_thread(CPUState *cpu)
{
    return gpm_stub_get_current_thread(cpu);
}

static inline OsiProc *get_current_process(CPUState *cpu)
{
    return gpm_stub_get_current_process(cpu);
}

bool init_osi_api(void);

#ifdef PLUGIN_MAIN
get_current_thread_t gpm_stub_get_current_thread = NULL;
get_current_process_t gpm_stub_get_current_process = NULL;

bool init_osi_api(void)
{
    return gpm_stub_get_current_thread != NULL &&
           gpm_stub_get_current_process != NULL;
}
#endif

#endif
