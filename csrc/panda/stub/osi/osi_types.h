/* Compile-only stand-in for PANDA's osi/osi_types.h (see ../README.md). */
#ifndef GPM_STUB_OSI_TYPES_H
#define GPM_STUB_OSI_TYPES_H

typedef int32_t target_pid_t;

typedef struct OsiPage {
    target_ulong start;
    target_ulong len;
} OsiPage;

/* Used by osi_provider.c; the real one has target_ptr_t members. */
typedef struct OsiModule {
    target_ulong modd;
    target_ulong base;
    target_ulong size;
    char *file;
    char *name;
    target_ulong offset;
    target_ulong flags;
} OsiModule;

typedef struct OsiThread {
    target_pid_t pid;
    target_pid_t tid;
} OsiThread;

typedef struct OsiProc {
    target_ulong taskd;
    target_ulong pgd;
    target_ulong asid;
    target_pid_t pid;
    target_pid_t ppid;
    char *name;
    OsiPage *pages;
    uint64_t create_time;
} OsiProc;

#endif
