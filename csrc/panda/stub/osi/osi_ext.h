/* Compile-only stand-in for PANDA's generated osi/osi_ext.h. */
#ifndef GPM_STUB_OSI_EXT_H
#define GPM_STUB_OSI_EXT_H

bool init_osi_api(void);
OsiThread *get_current_thread(CPUState *cpu);
OsiProc *get_current_process(CPUState *cpu);

#endif
