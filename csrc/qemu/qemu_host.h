/*
 * qemu_host.h - the stock-QEMU host: a guest CPU reached through QEMU's
 * gdbstub, guest RAM through a shared memory-backend-file.
 *
 * A gpm_qemu_host_t owns one I/O thread, the only reader and writer of the
 * gdbstub socket. The thread sets a breakpoint at GPM_HC_X86_ADDR, lets the
 * guest run, and at each stop there that comes from user mode hands the
 * CPU to gpm_hypercall_handle() (registers from one cached 'g' reply,
 * memory through the page walk over the RAM file), writes back what
 * changed, moves RIP past the CPUID and continues. A stop it does not
 * handle is stepped off (remove the breakpoint, 's', insert it again).
 *
 * Other threads talk to the I/O thread through a command queue: a request
 * that needs the CPU stopped while the guest runs interrupts it (0x03),
 * is served, and the guest is resumed unless it was asked to stay paused.
 * Every wait is bounded; when QEMU goes away (W/X reply, EOF) every
 * waiter and every later call gets GPM_ECONNRESET.
 *
 * The arch comes from the config; everything arch-specific (the stub's
 * address and trap length, the user-mode test, the page walk's registers)
 * from its backend in csrc/arch/.
 *
 * Threads: every function may be called from any thread. Stop and call
 * callbacks run on the I/O thread with the CPU stopped; a request made
 * from one (e.g. removing its own breakpoint, reading a register) runs at
 * once instead of being queued, and gpm_qemu_host_wait_paused() fails
 * there with GPM_EINVAL. Callbacks should use the ops they are given.
 */
#ifndef GPM_QEMU_HOST_H
#define GPM_QEMU_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpm/arch.h"
#include "gpm/host.h"
#include "gpm/manager.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpm_qemu_host gpm_qemu_host_t;

typedef struct gpm_qemu_host_config {
    const char *gdb_socket_path; /* QEMU's "-gdb chardev:" unix socket */
    const char *ram_path;        /* the memory-backend-file, or NULL */
    uint64_t ram_size;           /* guest RAM bytes (-m); needed with RAM */
    uint64_t ram_below_4g;       /* RAM bytes below the PCI hole; 0: all */
    uint64_t ram_base;           /* guest-physical address of RAM's first
                                  * byte: 0 on x86, 0x40000000 on ARM virt */
    gpm_arch_t arch;             /* an arch with a backend (csrc/arch) */
    gpm_manager_t *manager;      /* hypercall dispatcher, or NULL */
    int timeout_ms;              /* per protocol exchange; 0: 5000 */
} gpm_qemu_host_config_t;

/* What a stop callback asks for. */
enum gpm_qemu_stop_action {
    GPM_QEMU_STOP_CONTINUE = 0, /* let the guest run (stepping off) */
    GPM_QEMU_STOP_PAUSE = 1,    /* stay paused until resumed */
};

/*
 * Called on the I/O thread when the guest stops at a breakpoint added with
 * gpm_qemu_host_add_breakpoint(). @ops and @cpu reach the stopped CPU and
 * are valid only during the call; register writes are applied before the
 * guest runs again. If the callback leaves RIP at a breakpoint address the
 * host steps off it. Returns a gpm_qemu_stop_action.
 */
typedef int (*gpm_qemu_stop_cb)(gpm_qemu_host_t *h, const gpm_host_ops_t *ops,
                                void *cpu, uint64_t pc, void *opaque);

/*
 * A function run on the I/O thread with the CPU stopped, see
 * gpm_qemu_host_call(). Its return value is handed back to the caller.
 */
typedef int (*gpm_qemu_call_cb)(gpm_qemu_host_t *h, const gpm_host_ops_t *ops,
                                void *cpu, void *opaque);

typedef struct gpm_qemu_host_stats {
    uint64_t stops;        /* stop replies received */
    uint64_t hypercalls;   /* handled by the manager */
    uint64_t hc_unhandled; /* stops at the hypercall address passed on */
    uint64_t bp_hits;      /* stops at other breakpoints */
    uint64_t interrupts;   /* 0x03 sent to serve a request */
    uint64_t steps;        /* single steps off a breakpoint */
    uint64_t handler_ns;   /* total time in gpm_hypercall_handle() */
    uint64_t stop_ns;      /* total time from a stop reply to 'c' sent */
    uint64_t g_packets;    /* 'g' requests */
    uint64_t p_packets;    /* 'p' requests */
    uint64_t P_packets;    /* 'P' requests */
    uint64_t packets_sent;
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t retransmits;
    uint64_t ring_passes;      /* ring thread passes over the rings */
    uint64_t ring_busy_passes; /* passes that moved something */
    uint64_t ring_sleeps;      /* times the ring thread slept */
    bool running;              /* the guest was running when sampled */
    bool connected;            /* the gdbstub connection is up */
} gpm_qemu_host_stats_t;

/**
 * gpm_qemu_host_new() - create a host; no I/O yet.
 * @cfg: copied (the strings too). @cfg->manager must outlive the host.
 * @out: receives the host; free it with gpm_qemu_host_free().
 *
 * Returns 0, GPM_EINVAL (no socket path, an arch without a backend, RAM
 * path without size) or GPM_ENOMEM.
 */
int gpm_qemu_host_new(const gpm_qemu_host_config_t *cfg, gpm_qemu_host_t **out);

/**
 * gpm_qemu_host_start() - connect, prepare and let the guest run.
 *
 * Maps the RAM file, starts the I/O thread, which connects to the gdbstub
 * (retrying for up to the timeout while QEMU starts), reads the target
 * description, inserts the hypercall breakpoint and continues the guest.
 * Waits only for that preparation, not for the guest. Returns 0 or the
 * first error (GPM_ETIMEDOUT, GPM_ECONNRESET, GPM_EPROTO, GPM_ENOSYS if
 * breakpoints are refused, errors of the RAM file); GPM_EBUSY if already
 * started.
 */
int gpm_qemu_host_start(gpm_qemu_host_t *h);

/**
 * gpm_qemu_host_pause() - stop the guest and keep it stopped.
 * @pc: if not NULL, receives the program counter where it stopped.
 * Returns 0 or GPM_ECONNRESET, GPM_ETIMEDOUT, GPM_EINVAL (not started).
 */
int gpm_qemu_host_pause(gpm_qemu_host_t *h, uint64_t *pc);

/**
 * gpm_qemu_host_resume() - let a paused guest run again (stepping off a
 * breakpoint if it is on one). Returns once the guest runs (or has stopped
 * again at a pausing breakpoint the step landed on); 0 or an error as for
 * pause. From a callback on the I/O thread it takes effect when the stop
 * handling ends.
 */
int gpm_qemu_host_resume(gpm_qemu_host_t *h);

/**
 * gpm_qemu_host_wait_paused() - wait until the guest is paused (by
 * gpm_qemu_host_pause() or a breakpoint that pauses).
 * @timeout_ms: < 0 waits without limit. @pc: may be NULL.
 * Returns 0, GPM_ETIMEDOUT or GPM_ECONNRESET.
 */
int gpm_qemu_host_wait_paused(gpm_qemu_host_t *h, int timeout_ms, uint64_t *pc);

/**
 * gpm_qemu_host_read_reg() - read register @regno (GDB numbering, at most
 * 64 bits). If the guest runs it is stopped for the read and resumed.
 * Returns 0, GPM_EINVAL (no such register or wider than 64 bits), or a
 * transport error.
 */
int gpm_qemu_host_read_reg(gpm_qemu_host_t *h, unsigned regno, uint64_t *val);

/**
 * gpm_qemu_host_write_reg() - write register @regno. Meant for a paused
 * guest; applied before it runs again. Errors as for read_reg.
 */
int gpm_qemu_host_write_reg(gpm_qemu_host_t *h, unsigned regno, uint64_t val);

/**
 * gpm_qemu_host_read_virt() - read guest virtual memory of the current
 * address space (the CPU's cr3) through the page walk; kernel addresses
 * are allowed. Without a RAM file, reads through 'm' packets.
 * Returns 0, GPM_EFAULT, or a transport error.
 */
int gpm_qemu_host_read_virt(gpm_qemu_host_t *h, uint64_t va, void *buf,
                            size_t len);

/**
 * gpm_qemu_host_write_virt() - write guest virtual memory through the page
 * walk, only to present, writable, user pages (never the zero page or a
 * copy-on-write page). Returns 0, GPM_EFAULT, GPM_EROFS, GPM_ENOSYS
 * (no RAM file) or a transport error.
 */
int gpm_qemu_host_write_virt(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                             size_t len);

/**
 * gpm_qemu_host_read_phys() - read guest-physical RAM directly. Does not
 * involve the I/O thread; content read while the guest runs may be torn.
 * Returns 0, GPM_EFAULT (outside RAM) or GPM_ENOSYS (no RAM file).
 */
int gpm_qemu_host_read_phys(gpm_qemu_host_t *h, uint64_t pa, void *buf,
                            size_t len);

/**
 * gpm_qemu_host_gdb_read_mem() - read guest virtual memory through 'm'
 * packets (slow; for checks and hosts without a RAM file).
 * Returns 0, GPM_EFAULT or a transport error.
 */
int gpm_qemu_host_gdb_read_mem(gpm_qemu_host_t *h, uint64_t va, void *buf,
                               size_t len);

/**
 * gpm_qemu_host_gdb_write_mem() - write guest virtual memory through 'M'
 * packets, as QEMU's debugger access does: kernel memory too, with no
 * permission check. For host code that must change what the kernel
 * saved (linjector's registers in a pt_regs), never for guest-supplied
 * pointers. Returns 0, GPM_EFAULT (refused by QEMU), GPM_ENOMEM or a
 * transport error.
 */
int gpm_qemu_host_gdb_write_mem(gpm_qemu_host_t *h, uint64_t va,
                                const void *buf, size_t len);

/**
 * gpm_qemu_host_add_breakpoint() - insert a breakpoint at virtual @va.
 * @cb: called on each hit (see gpm_qemu_stop_cb); NULL pauses the guest at
 *      each hit. @opaque: passed to @cb; owned by the caller, who keeps it
 *      alive until the breakpoint is removed.
 *
 * Returns 0, GPM_EEXIST (already set, including GPM_HC_X86_ADDR),
 * GPM_ENOSPC (too many), GPM_ENOSYS (refused by QEMU) or a transport error.
 */
int gpm_qemu_host_add_breakpoint(gpm_qemu_host_t *h, uint64_t va,
                                 gpm_qemu_stop_cb cb, void *opaque);

/**
 * gpm_qemu_host_remove_breakpoint() - remove a breakpoint added with
 * gpm_qemu_host_add_breakpoint(). Once it returns @cb is not running and
 * will not run again. Returns 0, GPM_ENOENT, or a transport error.
 */
int gpm_qemu_host_remove_breakpoint(gpm_qemu_host_t *h, uint64_t va);

/**
 * gpm_qemu_host_call() - run @fn on the I/O thread with the CPU stopped
 * (stopping a running guest for it, then resuming it). Returns @fn's
 * value, or a transport error if it could not run (then @fn never runs).
 */
int gpm_qemu_host_call(gpm_qemu_host_t *h, gpm_qemu_call_cb fn, void *opaque);

/**
 * gpm_qemu_host_bench_regs() - time @iters 'g' requests and @iters groups
 * of five 'p' requests (the hypercall registers), with the CPU stopped.
 * @g_ns, @p5_ns: receive the mean time per 'g' and per five 'p's.
 */
int gpm_qemu_host_bench_regs(gpm_qemu_host_t *h, unsigned iters, uint64_t *g_ns,
                             uint64_t *p5_ns);

/**
 * gpm_qemu_host_reg_number() - the GDB number of register @name ("rip",
 * "cr3", ...) from the target description, or GPM_ENOENT. Valid after a
 * successful start.
 */
int gpm_qemu_host_reg_number(gpm_qemu_host_t *h, const char *name);

/* The guest architecture @h was created for. Any thread. */
gpm_arch_t gpm_qemu_host_arch(const gpm_qemu_host_t *h);

/* Copies the counters into @out. Any thread, including the I/O thread. */
void gpm_qemu_host_stats(gpm_qemu_host_t *h, gpm_qemu_host_stats_t *out);

/**
 * gpm_qemu_host_enable_doorbell() - offer the guest the doorbell page at
 * guest-physical @phys (see GPM_HC_OP_GET_DOORBELL): the manager's host
 * writes then count into it directly in the RAM file, without a stop.
 * The page must be RAM the guest kernel never uses (the generic image
 * reserves it with memmap=). Call after a successful start; withdrawn by
 * gpm_qemu_host_close(). Returns 0, GPM_EINVAL (unaligned or outside
 * RAM) or GPM_ENOSYS (no RAM file or no manager).
 */
int gpm_qemu_host_enable_doorbell(gpm_qemu_host_t *h, uint64_t phys);

/**
 * gpm_qemu_host_enable_rings() - offer the guest shared-memory channel rings
 * in the guest-physical region [@phys, @phys + @size) (gpm/ring_abi.h),
 * served by a ring thread of this host without stopping the guest.
 *
 * The region must be RAM the guest kernel never uses (the generic images
 * reserve it with memmap= or mem=). From then on, a channel whose guest
 * side attached a ring gets its receive callback on the ring thread (one
 * call per message, as for WRITE), and host writes to it are moved into
 * its ring by that thread. Call after a successful start, from any thread
 * but the host's own; withdrawn by gpm_qemu_host_close(). Returns 0,
 * GPM_EINVAL (unaligned, smaller than one pair, outside RAM), GPM_ENOSYS
 * (no RAM file or no manager), GPM_EEXIST (already on) or GPM_ENOMEM.
 */
int gpm_qemu_host_enable_rings(gpm_qemu_host_t *h, uint64_t phys, size_t size);

/**
 * gpm_qemu_host_set_task_profile() - let the host tell which guest process
 * makes each hypercall, for channel ownership (gpm_hypercall_handle_as()).
 * @base_reg:     the gdbstub name of the register that holds the kernel's
 *                per-CPU base while the CPU is in user mode ("k_gs_base"
 *                on x86_64, "TPIDR_EL1" on arm64); copied. "" when the
 *                arch has none (i386): @current_task is then the
 *                variable's address (CPU 0's, the only vCPU).
 * @current_task: the per-CPU offset of the variable that points at the
 *                running task (x86_64: current_task; arm64:
 *                __entry_task), from the image profile; 0 turns the lookup
 *                off, and every hypercall's caller is then unknown.
 * @task_tgid:    the offset of tgid in task_struct (from BTF).
 *
 * Any thread, after a successful start; takes effect at the next
 * hypercall. Returns 0, GPM_EINVAL, or GPM_ENOENT (no such register).
 */
int gpm_qemu_host_set_task_profile(gpm_qemu_host_t *h, const char *base_reg,
                                   uint64_t current_task, uint32_t task_tgid);

/**
 * gpm_qemu_host_close() - stop serving the guest and join the I/O thread.
 *
 * Removes the breakpoints and detaches, which leaves the guest running
 * without the host; a later call on @h returns GPM_ECONNRESET. Returns 0
 * or the error of the detach (the thread is joined regardless).
 * Idempotent; a second caller waits for the first. Called from a callback
 * on the I/O thread it only asks the thread to wind down after the current
 * stop; a later call from another thread joins it.
 */
int gpm_qemu_host_close(gpm_qemu_host_t *h);

/*
 * Closes @h if needed and frees it. NULL is ignored. No other call on @h
 * may be under way or follow. Called from a callback on the I/O thread,
 * the thread frees @h itself when it ends.
 */
void gpm_qemu_host_free(gpm_qemu_host_t *h);

#ifdef __cplusplus
}
#endif

#endif /* GPM_QEMU_HOST_H */
