/*
 * qh_internal.h - the stock-QEMU host's private state, shared by its files
 * (internal; see qemu_host.h for the public API).
 *
 *   qh_proto.c  gdbstub exchanges: commands, stop replies, target.xml
 *   qh_regs.c   the register cache over 'g'/'p'/'P'
 *   qh_mem.c    guest memory: the RAM file with the arch's page walk, or 'm'
 *   qh_stops.c  breakpoints, hypercall stops, stepping off, resuming
 *   qh_io.c     the I/O thread: setup, its loop, commands from other threads
 *   qh_ring.c   the ring thread serving the shared-memory channel rings
 *   qemu_host.c the public functions
 *
 * Thread model: one I/O thread per host owns the connection, the register
 * cache and the breakpoint table. Other threads queue commands (struct
 * cmd, on their own stack) under h->lock, wake the I/O thread through a
 * pipe, and wait on h->cond until the command is done. The I/O thread
 * takes a command off the queue before running it; a waiter that times out
 * may only unlink a command nobody has taken yet. Every gpm__qh_ function
 * below runs on the I/O thread unless it says otherwise.
 */
#ifndef GPM_QEMU_QH_INTERNAL_H
#define GPM_QEMU_QH_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "arch/arch_ops.h"
#include "gpm/abi.h"
#include "gpm/error.h"
#include "qemu/gdb_remote.h"
#include "qemu/guest_ram.h"
#include "qemu/qemu_host.h"

#define MAX_BPS            64
#define MAX_G_BYTES        32768
#define MAX_XML            (1u << 20)
#define MAX_STEPS          16
#define DEFAULT_TIMEOUT_MS 5000

enum { RS_VALID = 1, RS_DIRTY = 2 };

typedef enum cmd_kind {
    CMD_CALL,
    CMD_PAUSE,
    CMD_RESUME,
    CMD_SHUTDOWN,
} cmd_kind_t;

typedef struct cmd {
    cmd_kind_t kind;
    int (*fn)(gpm_qemu_host_t *h, void *arg);
    void *arg;
    uint64_t pc; /* CMD_PAUSE: where it stopped */
    int result;
    bool taken, done;
    struct cmd *next;
} cmd_t;

/* The ring thread (qh_ring.c); mu guards all but running and thread. */
typedef struct gpm__qh_rings {
    bool running; /* under the host's lock */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop, kicked;
    uint64_t passes, busy_passes, sleeps;
} gpm__qh_rings_t;

typedef struct bp {
    uint64_t addr;
    gpm_qemu_stop_cb cb;
    void *opaque;
    bool internal; /* the hypercall breakpoint */
} bp_t;

struct gpm_qemu_host {
    gpm_qemu_host_config_t cfg;
    char *sock_path;
    char *ram_path;
    gpm__ram_t ram;
    bool have_ram;
    uint8_t *doorbell; /* the doorbell page in the RAM mapping, or NULL */
    gpm__qh_rings_t rings;

    /* I/O thread only. */
    gpm__gdb_conn_t conn;
    gpm__tdesc_t td;
    const gpm_arch_info_t *ai;   /* numbers of cfg.arch */
    const gpm__arch_ops_t *aops; /* its backend */
    int reg_pc, reg_mode;        /* from the target description */
    int reg_mmu[GPM__MMU_NREGS]; /* the walker's inputs, -1 past the last */
    uint64_t task_base_cache;    /* its value at user-mode stops, or 0 */
    unsigned task_gen_seen;      /* task_gen when the cache was filled */
    char *reply;
    size_t reply_cap;
    uint8_t g[MAX_G_BYTES];
    size_t glen;
    bool g_valid;
    uint64_t regs[GPM__TDESC_MAX_REGS];
    uint8_t rstate[GPM__TDESC_MAX_REGS];
    bp_t bps[MAX_BPS];
    unsigned nbps;
    bool running;
    bool shutdown;
    bool free_on_exit; /* gpm_qemu_host_free() ran on this thread */
    int64_t stop_t0;

    /* Shared, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cmd_t *head, *tail;
    bool started, joined, dead, closing;
    bool start_done;
    int start_result;
    bool user_paused;
    uint64_t paused_pc;
    gpm_qemu_host_stats_t st;
    int reg_task_base;     /* register holding the per-CPU base in user
                            * mode ("k_gs_base", "TPIDR_EL1"), -1: none */
    uint64_t task_current; /* per-CPU offset of the current task, 0: off */
    uint32_t task_tgid;    /* offset of tgid in task_struct */
    unsigned task_gen;     /* counts set_task_profile() calls */

    int wake[2];
    pthread_t thread;
};

static inline int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int tmo(const gpm_qemu_host_t *h)
{
    return h->cfg.timeout_ms;
}

#define STAT_ADD(h, field, v)                                                  \
    do {                                                                       \
        pthread_mutex_lock(&(h)->lock);                                        \
        (h)->st.field += (v);                                                  \
        pthread_mutex_unlock(&(h)->lock);                                      \
    } while (0)

/* qh_proto.c */
int gpm__qh_command(gpm_qemu_host_t *h, const char *cmd, size_t *len);
int gpm__qh_command_ok(gpm_qemu_host_t *h, const char *cmd);
int gpm__qh_wait_stop(gpm_qemu_host_t *h, int timeout_ms, gpm__rsp_stop_t *s);
int gpm__qh_fetch_xml(void *opaque, const char *name, char **out, size_t *len);

/* qh_regs.c */
void gpm__qh_regs_invalidate(gpm_qemu_host_t *h);
uint64_t gpm__qh_decode(const gpm_qemu_host_t *h, const uint8_t *p,
                        unsigned bytes);
int gpm__qh_fetch_g(gpm_qemu_host_t *h);
int gpm__qh_reg_get(gpm_qemu_host_t *h, unsigned n, uint64_t *val);
int gpm__qh_reg_set(gpm_qemu_host_t *h, unsigned n, uint64_t val);
int gpm__qh_regs_flush_but(gpm_qemu_host_t *h, int skip);
int gpm__qh_regs_flush(gpm_qemu_host_t *h);

/* qh_mem.c */
int gpm__qh_gdb_read_mem(gpm_qemu_host_t *h, uint64_t va, void *buf,
                         size_t len);
int gpm__qh_gdb_write_mem(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                          size_t len);
int gpm__qh_mem_read(gpm_qemu_host_t *h, uint64_t va, void *buf, size_t len,
                     unsigned flags);
int gpm__qh_mem_write(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                      size_t len);
/* Ops for hypercalls (guest pointers must be user memory)... */
extern const gpm_host_ops_t gpm__qh_hc_ops;
/* ...and for host code (breakpoint and call callbacks): kernel reads too. */
extern const gpm_host_ops_t gpm__qh_full_ops;

/* qh_stops.c */
int gpm__qh_bp_find(const gpm_qemu_host_t *h, uint64_t addr);
int gpm__qh_bp_packet(gpm_qemu_host_t *h, char op, uint64_t addr);
int gpm__qh_bp_insert(gpm_qemu_host_t *h, uint64_t addr, gpm_qemu_stop_cb cb,
                      void *opaque, bool internal);
int gpm__qh_bp_remove(gpm_qemu_host_t *h, uint64_t addr, bool allow_internal);
/* Any thread. */
void gpm__qh_set_paused(gpm_qemu_host_t *h, bool paused, uint64_t pc);
int gpm__qh_dispatch(gpm_qemu_host_t *h, uint64_t pc, bool *pause);
int gpm__qh_handle_stop(gpm_qemu_host_t *h);
int gpm__qh_resume_guest(gpm_qemu_host_t *h);

/* qh_io.c */
void *gpm__qh_io_main(void *arg);
int gpm__qh_run_cmd(gpm_qemu_host_t *h, cmd_t *c, bool direct);

/* qh_ring.c: stops the ring thread and withdraws the rings (a thread
 * other than the ring thread, before the RAM file is unmapped), and adds
 * its counters. */
void gpm__qh_rings_stop(gpm_qemu_host_t *h);
void gpm__qh_rings_stats(gpm_qemu_host_t *h, gpm_qemu_host_stats_t *out);

/* qemu_host.c: frees @h's memory (not the RAM mapping). Any thread. */
void gpm__qh_release(gpm_qemu_host_t *h);

#endif /* GPM_QEMU_QH_INTERNAL_H */
