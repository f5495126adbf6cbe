/* Compile-only stand-in for QEMU's monitor/monitor.h (see ../README.md). */
#ifndef GPM_STUB_MONITOR_H
#define GPM_STUB_MONITOR_H

int monitor_printf(Monitor *mon, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
