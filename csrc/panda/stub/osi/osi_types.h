/* Compile-only stand-in for PANDA's osi/osi_types.h (see ../README.md). */
#ifndef GPM_STUB_OSI_TYPES_H
#define GPM_STUB_OSI_TYPES_H

typedef int32_t target_pid_t;

typedef struct OsiPage {
    target_ulong start;
    target_ulong len;
} OsiPage;

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
