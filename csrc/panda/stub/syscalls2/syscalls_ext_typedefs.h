/* Compile-only stand-in for syscalls2/syscalls_ext_typedefs.h. */
#ifndef GPM_STUB_SYSCALLS_EXT_TYPEDEFS_H
#define GPM_STUB_SYSCALLS_EXT_TYPEDEFS_H

typedef void (*on_all_sys_enter_t)(CPUState *cpu, target_ulong pc,
                                   target_ulong callno);
typedef void (*on_all_sys_return_t)(CPUState *cpu, target_ulong pc,
                                    target_ulong callno);

#endif
