/*
 * qemu_host.c - the stock-QEMU host over the gdbstub. See qemu_host.h.
 *
 * Thread model: one I/O thread per host owns the connection, the register
 * cache and the breakpoint table. Other threads queue commands (struct
 * cmd, on their own stack) under h->lock, wake the I/O thread through a
 * pipe, and wait on h->cond until the command is done. The I/O thread
 * takes a command off the queue before running it; a waiter that times out
 * may only unlink a command nobody has taken yet.
 */
#define _GNU_SOURCE
#include "qemu/qemu_host.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpm/abi.h"
#include "gpm/error.h"
#include "qemu/gdb_remote.h"
#include "qemu/guest_ram.h"

#define MAX_BPS            64
#define MAX_G_BYTES        8192
#define MAX_XML            (1u << 20)
#define MAX_STEPS          16
#define DEFAULT_TIMEOUT_MS 5000
#define X86_CPUID_LEN      2
#define USER_TOP           0x0000800000000000ull

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

    /* I/O thread only. */
    gpm__gdb_conn_t conn;
    gpm__tdesc_t td;
    int reg_rip, reg_cs, reg_cr3, reg_kgs;
    uint64_t kgs_cache; /* the per-CPU base at user-mode stops, or 0 */
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
    uint64_t task_current; /* per-CPU offset of current_task, 0: unknown */
    uint32_t task_tgid;    /* offset of tgid in task_struct */

    int wake[2];
    pthread_t thread;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int tmo(const gpm_qemu_host_t *h)
{
    return h->cfg.timeout_ms;
}

#define STAT_ADD(h, field, v)                                                  \
    do {                                                                       \
        pthread_mutex_lock(&(h)->lock);                                        \
        (h)->st.field += (v);                                                  \
        pthread_mutex_unlock(&(h)->lock);                                      \
    } while (0)

static bool on_io_thread(gpm_qemu_host_t *h)
{
    bool started;

    pthread_mutex_lock(&h->lock);
    started = h->started && !h->joined;
    pthread_mutex_unlock(&h->lock);
    return started && pthread_equal(pthread_self(), h->thread);
}

/* ------------------------------------------------------------------ */
/* Protocol helpers (I/O thread). */

static int command(gpm_qemu_host_t *h, const char *cmd, size_t *len)
{
    return gpm__gdb_command(&h->conn, cmd, h->reply, h->reply_cap, len, tmo(h));
}

static int command_ok(gpm_qemu_host_t *h, const char *cmd)
{
    size_t len = 0;
    int err = command(h, cmd, &len);

    if (err < 0) {
        return err;
    }
    if (len == 0) {
        return GPM_ENOSYS;
    }
    return strcmp(h->reply, "OK") == 0 ? 0 : GPM_EPROTO;
}

/* Waits for a stop reply, skipping console output. */
static int wait_stop(gpm_qemu_host_t *h, int timeout_ms, gpm__rsp_stop_t *s)
{
    int i;

    for (i = 0; i < 64; i++) {
        size_t len = 0;
        int err =
            gpm__gdb_recv(&h->conn, h->reply, h->reply_cap, &len, timeout_ms);

        if (err < 0) {
            return err;
        }
        if (len > 0 && h->reply[0] == 'O') {
            continue;
        }
        if (gpm__rsp_parse_stop(h->reply, len, s) == 0) {
            STAT_ADD(h, stops, 1);
            if (s->kind == 'W' || s->kind == 'X') {
                return GPM_ECONNRESET;
            }
            return 0;
        }
    }
    return GPM_EPROTO;
}

typedef struct xml_fetch {
    gpm_qemu_host_t *h;
} xml_fetch_t;

static int fetch_xml(void *opaque, const char *name, char **out, size_t *len)
{
    gpm_qemu_host_t *h = ((xml_fetch_t *)opaque)->h;
    size_t off = 0, cap = 0, chunk = h->conn.packet_size - 16;
    char *doc = NULL;

    for (;;) {
        char cmd[256];
        size_t rlen = 0;
        int err;

        if (strlen(name) > 128) {
            free(doc);
            return GPM_EPROTO;
        }
        snprintf(cmd, sizeof(cmd), "qXfer:features:read:%s:%zx,%zx", name, off,
                 chunk);
        err = command(h, cmd, &rlen);
        if (err < 0 || rlen == 0 ||
            (h->reply[0] != 'm' && h->reply[0] != 'l')) {
            free(doc);
            return err < 0 ? err : GPM_EPROTO;
        }
        if (off + rlen > MAX_XML) {
            free(doc);
            return GPM_EPROTO;
        }
        if (off + rlen > cap) {
            char *n = realloc(doc, off + rlen + 1);

            if (!n) {
                free(doc);
                return GPM_ENOMEM;
            }
            doc = n;
            cap = off + rlen;
        }
        memcpy(doc + off, h->reply + 1, rlen - 1);
        off += rlen - 1;
        if (h->reply[0] == 'l') {
            break;
        }
        if (rlen == 1) {
            free(doc);
            return GPM_EPROTO; /* 'm' with no data would loop forever */
        }
    }
    *out = doc;
    *len = off;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Register cache (I/O thread). */

static void regs_invalidate(gpm_qemu_host_t *h)
{
    h->g_valid = false;
    memset(h->rstate, 0, sizeof(h->rstate));
}

static uint64_t le_value(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;

    while (bytes--) {
        v = (v << 8) | p[bytes];
    }
    return v;
}

static int fetch_g(gpm_qemu_host_t *h)
{
    size_t len = 0;
    unsigned i;
    int err;

    STAT_ADD(h, g_packets, 1);
    err = command(h, "g", &len);
    if (err < 0) {
        return err;
    }
    if (len % 2 || len / 2 > sizeof(h->g) ||
        gpm__hex_decode(h->reply, len, h->g) < 0) {
        return GPM_EPROTO;
    }
    h->glen = len / 2;
    h->g_valid = true;
    for (i = 0; i < h->td.nregs; i++) {
        const gpm__tdesc_reg_t *r = &h->td.regs[i];
        unsigned bytes = r->bitsize / 8;

        if (r->g_offset < 0 || bytes == 0 || bytes > 8 ||
            (size_t)r->g_offset + bytes > h->glen ||
            (h->rstate[i] & RS_DIRTY)) {
            continue;
        }
        h->regs[i] = le_value(h->g + r->g_offset, bytes);
        h->rstate[i] = RS_VALID;
    }
    return 0;
}

static int reg_check(const gpm_qemu_host_t *h, unsigned n)
{
    if (n >= h->td.nregs || h->td.regs[n].bitsize == 0 ||
        h->td.regs[n].bitsize > 64) {
        return GPM_EINVAL;
    }
    return 0;
}

static int reg_get(gpm_qemu_host_t *h, unsigned n, uint64_t *val)
{
    uint8_t buf[8];
    char cmd[32];
    size_t len = 0;
    unsigned bytes;
    int err = reg_check(h, n);

    if (err < 0) {
        return err;
    }
    if (!(h->rstate[n] & RS_VALID) && !h->g_valid &&
        h->td.regs[n].g_offset >= 0) {
        err = fetch_g(h);
        if (err < 0) {
            return err;
        }
    }
    if (!(h->rstate[n] & RS_VALID)) {
        bytes = h->td.regs[n].bitsize / 8;
        snprintf(cmd, sizeof(cmd), "p%x", n);
        STAT_ADD(h, p_packets, 1);
        err = command(h, cmd, &len);
        if (err < 0) {
            return err;
        }
        if (len != 2 * bytes || gpm__hex_decode(h->reply, len, buf) < 0) {
            return len == 0 ? GPM_ENOSYS : GPM_EPROTO;
        }
        h->regs[n] = le_value(buf, bytes);
        h->rstate[n] = RS_VALID;
    }
    *val = h->regs[n];
    return 0;
}

static int reg_set(gpm_qemu_host_t *h, unsigned n, uint64_t val)
{
    unsigned bits;
    int err = reg_check(h, n);

    if (err < 0) {
        return err;
    }
    bits = h->td.regs[n].bitsize;
    if (bits < 64) {
        val &= (1ull << bits) - 1;
    }
    h->regs[n] = val;
    h->rstate[n] = RS_VALID | RS_DIRTY;
    return 0;
}

/* Writes back every changed register except @skip (-1: none). */
static int regs_flush_but(gpm_qemu_host_t *h, int skip)
{
    unsigned i;

    for (i = 0; i < h->td.nregs; i++) {
        char cmd[48];
        uint8_t le[8];
        unsigned b, bytes;
        int n, err;

        if (!(h->rstate[i] & RS_DIRTY) || (int)i == skip) {
            continue;
        }
        bytes = h->td.regs[i].bitsize / 8;
        for (b = 0; b < bytes; b++) {
            le[b] = (uint8_t)(h->regs[i] >> (8 * b));
        }
        n = snprintf(cmd, sizeof(cmd), "P%x=", i);
        gpm__hex_encode(le, bytes, cmd + n);
        cmd[n + 2 * bytes] = '\0';
        STAT_ADD(h, P_packets, 1);
        err = command_ok(h, cmd);
        if (err < 0) {
            return err;
        }
        h->rstate[i] &= (uint8_t)~RS_DIRTY;
    }
    return 0;
}

static int regs_flush(gpm_qemu_host_t *h)
{
    return regs_flush_but(h, -1);
}

/* ------------------------------------------------------------------ */
/* Memory (I/O thread). */

static int gdb_read_mem(gpm_qemu_host_t *h, uint64_t va, void *buf, size_t len)
{
    size_t chunk = h->conn.packet_size / 2 - 16;
    uint8_t *dst = buf;

    if (chunk > 2048) {
        chunk = 2048;
    }
    while (len) {
        size_t n = len < chunk ? len : chunk, rlen = 0;
        char cmd[64];
        int err;

        snprintf(cmd, sizeof(cmd), "m%" PRIx64 ",%zx", va, n);
        err = command(h, cmd, &rlen);
        if (err == GPM_EIO) {
            return GPM_EFAULT;
        }
        if (err < 0) {
            return err;
        }
        if (rlen == 0 || rlen % 2 || rlen / 2 > n ||
            gpm__hex_decode(h->reply, rlen, dst) < 0) {
            return rlen == 0 ? GPM_EFAULT : GPM_EPROTO;
        }
        dst += rlen / 2;
        va += rlen / 2;
        len -= rlen / 2;
    }
    return 0;
}

static int mem_read(gpm_qemu_host_t *h, uint64_t va, void *buf, size_t len,
                    unsigned flags)
{
    uint64_t cr3;
    int err;

    if (!h->have_ram) {
        if ((flags & GPM__RAM_USER) &&
            (va >= USER_TOP || len > USER_TOP - va)) {
            return GPM_EFAULT;
        }
        return gdb_read_mem(h, va, buf, len);
    }
    err = reg_get(h, (unsigned)h->reg_cr3, &cr3);
    if (err < 0) {
        return err;
    }
    return gpm__ram_read_virt(&h->ram, cr3, va, buf, len, flags);
}

static int mem_write(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                     size_t len)
{
    uint64_t cr3;
    int err;

    if (!h->have_ram) {
        return GPM_ENOSYS;
    }
    err = reg_get(h, (unsigned)h->reg_cr3, &cr3);
    if (err < 0) {
        return err;
    }
    return gpm__ram_write_virt(&h->ram, cr3, va, buf, len);
}

/* Ops for hypercalls: guest pointers must be user memory. */
static int hc_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    return reg_get(cpu, regno, val);
}

static int hc_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    return reg_set(cpu, regno, val);
}

static int hc_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    return mem_read(cpu, addr, buf, len, GPM__RAM_USER);
}

static int hc_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    int err = mem_write(cpu, addr, buf, len);

    return err == GPM_ENOSYS ? GPM_EROFS : err;
}

/* Ops for host code (breakpoint and call callbacks): kernel reads too. */
static int full_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    return mem_read(cpu, addr, buf, len, 0);
}

static const gpm_host_ops_t hc_ops = {hc_read_reg, hc_write_reg, hc_read_mem,
                                      hc_write_mem};
static const gpm_host_ops_t full_ops = {hc_read_reg, hc_write_reg,
                                        full_read_mem, hc_write_mem};

/* ------------------------------------------------------------------ */
/* Breakpoints (I/O thread). */

static int bp_find(const gpm_qemu_host_t *h, uint64_t addr)
{
    unsigned i;

    for (i = 0; i < h->nbps; i++) {
        if (h->bps[i].addr == addr) {
            return (int)i;
        }
    }
    return -1;
}

static int bp_packet(gpm_qemu_host_t *h, char op, uint64_t addr)
{
    char cmd[64];

    snprintf(cmd, sizeof(cmd), "%c0,%" PRIx64 ",1", op, addr);
    return command_ok(h, cmd);
}

static int bp_insert(gpm_qemu_host_t *h, uint64_t addr, gpm_qemu_stop_cb cb,
                     void *opaque, bool internal)
{
    int err;

    if (bp_find(h, addr) >= 0) {
        return GPM_EEXIST;
    }
    if (h->nbps >= MAX_BPS) {
        return GPM_ENOSPC;
    }
    err = bp_packet(h, 'Z', addr);
    if (err < 0) {
        return err;
    }
    h->bps[h->nbps].addr = addr;
    h->bps[h->nbps].cb = cb;
    h->bps[h->nbps].opaque = opaque;
    h->bps[h->nbps].internal = internal;
    h->nbps++;
    return 0;
}

static int bp_remove(gpm_qemu_host_t *h, uint64_t addr, bool allow_internal)
{
    int i = bp_find(h, addr);
    int err;

    if (i < 0 || (h->bps[i].internal && !allow_internal)) {
        return GPM_ENOENT;
    }
    err = bp_packet(h, 'z', addr);
    h->bps[i] = h->bps[--h->nbps];
    return err;
}

/* ------------------------------------------------------------------ */
/* Stops (I/O thread). */

static void set_paused(gpm_qemu_host_t *h, bool paused, uint64_t pc)
{
    pthread_mutex_lock(&h->lock);
    h->user_paused = paused;
    if (paused) {
        h->paused_pc = pc;
    }
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/*
 * The thread-group id of the process whose thread stopped at a user-mode
 * hypercall: in user mode the kernel's per-CPU base is in k_gs_base, and
 * current_task there points at the thread's task_struct. With one vCPU the
 * base never changes, so it is read once. GPM_TGID_UNKNOWN without a
 * profile or if any read fails (the core then falls back to no checks).
 */
static int64_t caller_tgid(gpm_qemu_host_t *h)
{
    uint64_t off, task;
    uint32_t tgid_off;
    int32_t tgid;

    pthread_mutex_lock(&h->lock);
    off = h->task_current;
    tgid_off = h->task_tgid;
    pthread_mutex_unlock(&h->lock);
    if (off == 0 || h->reg_kgs < 0) {
        return GPM_TGID_UNKNOWN;
    }
    if (h->kgs_cache == 0 &&
        (reg_get(h, (unsigned)h->reg_kgs, &h->kgs_cache) < 0 ||
         h->kgs_cache < USER_TOP)) {
        h->kgs_cache = 0;
        return GPM_TGID_UNKNOWN;
    }
    if (mem_read(h, h->kgs_cache + off, &task, sizeof(task), 0) < 0 ||
        mem_read(h, task + tgid_off, &tgid, sizeof(tgid), 0) < 0) {
        h->kgs_cache = 0;
        return GPM_TGID_UNKNOWN;
    }
    return tgid > 0 ? tgid : GPM_TGID_UNKNOWN;
}

int gpm_qemu_host_set_task_profile(gpm_qemu_host_t *h, uint64_t current_task,
                                   uint32_t task_tgid)
{
    if (!h || (current_task != 0 && task_tgid == 0)) {
        return GPM_EINVAL;
    }
    pthread_mutex_lock(&h->lock);
    h->task_current = current_task;
    h->task_tgid = task_tgid;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static int handle_hypercall(gpm_qemu_host_t *h, uint64_t pc)
{
    uint64_t cs = 0;
    bool handled = false;
    int64_t t0;
    int err;

    if (!h->cfg.manager) {
        STAT_ADD(h, hc_unhandled, 1);
        return 0;
    }
    err = reg_get(h, (unsigned)h->reg_cs, &cs);
    if (err < 0) {
        return err;
    }
    if ((cs & 3) != 3) {
        STAT_ADD(h, hc_unhandled, 1);
        return 0;
    }
    t0 = now_ns();
    err = gpm_hypercall_handle_as(h->cfg.manager, &hc_ops, h, caller_tgid(h),
                                  &handled);
    STAT_ADD(h, handler_ns, (uint64_t)(now_ns() - t0));
    if (err < 0 || !handled) {
        /* The registers may be half written: drop what is not flushed. */
        if (err < 0) {
            regs_invalidate(h);
        }
        STAT_ADD(h, hc_unhandled, 1);
        return err == GPM_ECONNRESET || err == GPM_ETIMEDOUT ? err : 0;
    }
    STAT_ADD(h, hypercalls, 1);
    return reg_set(h, (unsigned)h->reg_rip, pc + X86_CPUID_LEN);
}

/*
 * Dispatches a stop at @pc to its breakpoint's handler. Returns 0 or a
 * fatal error; sets *@pause if the guest is to stay paused.
 */
static int dispatch(gpm_qemu_host_t *h, uint64_t pc, bool *pause)
{
    gpm_qemu_stop_cb cb;
    void *opaque;
    int i = bp_find(h, pc);
    int action;

    *pause = false;
    if (i < 0) {
        return 0;
    }
    if (h->bps[i].internal) {
        return handle_hypercall(h, pc);
    }
    STAT_ADD(h, bp_hits, 1);
    cb = h->bps[i].cb;
    opaque = h->bps[i].opaque;
    action = cb ? cb(h, &full_ops, h, pc, opaque) : GPM_QEMU_STOP_PAUSE;
    if (action == GPM_QEMU_STOP_PAUSE) {
        *pause = true;
        set_paused(h, true, pc);
    }
    return 0;
}

static int handle_stop(gpm_qemu_host_t *h)
{
    uint64_t pc;
    bool pause;
    int err;

    h->running = false;
    h->stop_t0 = now_ns();
    /* Seen by stats() at once: a long callback shows as a stopped guest. */
    pthread_mutex_lock(&h->lock);
    h->st.running = false;
    pthread_mutex_unlock(&h->lock);
    regs_invalidate(h);
    err = reg_get(h, (unsigned)h->reg_rip, &pc);
    if (err < 0) {
        return err;
    }
    return dispatch(h, pc, &pause);
}

/*
 * Lets the guest run: writes back registers, steps off a breakpoint at the
 * current pc (dispatching a breakpoint the step lands on), sends 'c'.
 */
static int do_resume(gpm_qemu_host_t *h)
{
    int steps;
    int err;

    for (steps = 0; steps < MAX_STEPS; steps++) {
        gpm__rsp_stop_t s;
        uint64_t pc;
        bool pause;

        err = reg_get(h, (unsigned)h->reg_rip, &pc);
        if (err < 0) {
            return err;
        }
        if (bp_find(h, pc) < 0) {
            break;
        }
        err = regs_flush(h);
        if (err < 0) {
            return err;
        }
        err = bp_packet(h, 'z', pc);
        if (err < 0) {
            return err;
        }
        err = gpm__gdb_send(&h->conn, "s", 1, tmo(h));
        if (err == 0) {
            err = wait_stop(h, tmo(h), &s);
        }
        if (err < 0) {
            return err;
        }
        err = bp_packet(h, 'Z', pc);
        if (err < 0) {
            return err;
        }
        STAT_ADD(h, steps, 1);
        regs_invalidate(h);
        err = reg_get(h, (unsigned)h->reg_rip, &pc);
        if (err < 0) {
            return err;
        }
        err = dispatch(h, pc, &pause);
        if (err < 0) {
            return err;
        }
        if (pause) {
            return 0;
        }
    }
    /*
     * A changed RIP (a handled hypercall) goes with the continue packet
     * ("c ADDR") instead of its own 'P': one round trip less per stop.
     */
    err = regs_flush_but(h, h->reg_rip);
    if (err < 0) {
        return err;
    }
    if (h->rstate[h->reg_rip] & RS_DIRTY) {
        char cmd[32];
        int n = snprintf(cmd, sizeof(cmd), "c%" PRIx64, h->regs[h->reg_rip]);

        err = gpm__gdb_send(&h->conn, cmd, (size_t)n, tmo(h));
    } else {
        err = gpm__gdb_send(&h->conn, "c", 1, tmo(h));
    }
    if (err < 0) {
        return err;
    }
    h->running = true;
    regs_invalidate(h);
    pthread_mutex_lock(&h->lock);
    if (h->stop_t0) {
        h->st.stop_ns += (uint64_t)(now_ns() - h->stop_t0);
    }
    h->st.running = true;
    pthread_mutex_unlock(&h->lock);
    h->stop_t0 = 0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The I/O thread. */

static int setup(gpm_qemu_host_t *h)
{
    xml_fetch_t xf = {h};
    gpm__rsp_stop_t s;
    const char *ps;
    size_t len = 0;
    uint64_t v;
    int err;

    err = gpm__gdb_connect(&h->conn, h->sock_path, tmo(h));
    if (err < 0) {
        return err;
    }
    err = command(h, "qSupported:xmlRegisters=i386", &len);
    if (err < 0) {
        return err;
    }
    ps = strstr(h->reply, "PacketSize=");
    if (ps) {
        size_t n = strspn(ps + 11, "0123456789abcdefABCDEF");

        if (gpm__hex_u64(ps + 11, n, &v) == 0 && v >= 256 &&
            v <= GPM__RSP_MAX_PACKET) {
            h->conn.packet_size = (size_t)v;
        }
    }
    if (!strstr(h->reply, "qXfer:features:read+")) {
        return GPM_ENOSYS;
    }
    err = gpm__gdb_send(&h->conn, "?", 1, tmo(h));
    if (err == 0) {
        err = wait_stop(h, tmo(h), &s);
    }
    if (err < 0) {
        return err;
    }
    err = gpm__tdesc_load(fetch_xml, &xf, &h->td);
    if (err < 0) {
        return err;
    }
    h->reg_rip = gpm__tdesc_find(&h->td, "rip");
    h->reg_cs = gpm__tdesc_find(&h->td, "cs");
    h->reg_cr3 = gpm__tdesc_find(&h->td, "cr3");
    h->reg_kgs = gpm__tdesc_find(&h->td, "k_gs_base");
    if (h->reg_rip < 0 || h->reg_cs < 0 || h->reg_cr3 < 0) {
        return GPM_EPROTO; /* not an x86_64 target */
    }
    err = bp_insert(h, GPM_HC_X86_ADDR, NULL, NULL, true);
    if (err < 0) {
        return err;
    }
    h->running = false;
    regs_invalidate(h);
    return 0;
}

static void sync_conn_stats(gpm_qemu_host_t *h)
{
    pthread_mutex_lock(&h->lock);
    h->st.packets_sent = h->conn.packets_sent;
    h->st.bytes_sent = h->conn.bytes_sent;
    h->st.bytes_received = h->conn.bytes_received;
    h->st.retransmits = h->conn.retransmits;
    h->st.running = h->running;
    pthread_mutex_unlock(&h->lock);
}

static int do_resume(gpm_qemu_host_t *h);

/*
 * Runs one command with the CPU stopped. @direct: called from a callback on
 * the I/O thread, where a resume only takes effect when the stop handling
 * ends.
 */
static int run_cmd(gpm_qemu_host_t *h, cmd_t *c, bool direct)
{
    uint64_t pc = 0;
    int err;

    switch (c->kind) {
    case CMD_CALL:
        return c->fn(h, c->arg);
    case CMD_PAUSE:
        err = reg_get(h, (unsigned)h->reg_rip, &pc);
        c->pc = pc;
        set_paused(h, true, pc);
        return err;
    case CMD_RESUME:
        set_paused(h, false, 0);
        /* Return once the guest really runs (or stopped again). */
        return direct ? 0 : do_resume(h);
    case CMD_SHUTDOWN:
    default:
        h->shutdown = true;
        return 0;
    }
}

/* Runs every queued command; the CPU is stopped. */
static void process_cmds(gpm_qemu_host_t *h)
{
    for (;;) {
        cmd_t *c;
        int r;

        if (h->running || h->shutdown) {
            return; /* the rest waits for the next stop */
        }
        pthread_mutex_lock(&h->lock);
        c = h->head;
        if (c) {
            h->head = c->next;
            if (!h->head) {
                h->tail = NULL;
            }
            c->taken = true;
        }
        pthread_mutex_unlock(&h->lock);
        if (!c) {
            return;
        }
        r = run_cmd(h, c, false);
        pthread_mutex_lock(&h->lock);
        c->result = r;
        c->done = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
    }
}

static void drain_wake(gpm_qemu_host_t *h)
{
    char buf[64];

    while (read(h->wake[0], buf, sizeof(buf)) > 0) {
    }
}

static bool queue_empty(gpm_qemu_host_t *h)
{
    bool e;

    pthread_mutex_lock(&h->lock);
    e = h->head == NULL;
    pthread_mutex_unlock(&h->lock);
    return e;
}

static bool is_paused(gpm_qemu_host_t *h)
{
    bool p;

    pthread_mutex_lock(&h->lock);
    p = h->user_paused;
    pthread_mutex_unlock(&h->lock);
    return p;
}

/* One turn of the loop while the guest is stopped. */
static int turn_stopped(gpm_qemu_host_t *h)
{
    struct pollfd pfd[2];

    process_cmds(h);
    sync_conn_stats(h);
    if (h->shutdown || h->running) {
        return 0; /* a resume command already let the guest run */
    }
    if (!is_paused(h)) {
        return do_resume(h);
    }
    pfd[0].fd = h->wake[0];
    pfd[0].events = POLLIN;
    pfd[1].fd = h->conn.fd;
    pfd[1].events = POLLIN;
    pfd[0].revents = pfd[1].revents = 0;
    if (poll(pfd, 2, 1000) < 0 && errno != EINTR) {
        return GPM_EIO;
    }
    if (pfd[0].revents) {
        drain_wake(h);
    }
    if (pfd[1].revents || gpm__gdb_pending(&h->conn)) {
        /* Nothing is expected while stopped: a W/X reply, EOF or noise. */
        gpm__rsp_stop_t s;
        int err = wait_stop(h, 100, &s);

        if (err == GPM_ECONNRESET) {
            return err;
        }
    }
    return 0;
}

/* One turn of the loop while the guest runs. */
static int turn_running(gpm_qemu_host_t *h)
{
    struct pollfd pfd[2];
    gpm__rsp_stop_t s;
    int err;

    if (!gpm__gdb_pending(&h->conn) && !queue_empty(h)) {
        /* A request needs the CPU: interrupt the guest. */
        STAT_ADD(h, interrupts, 1);
        err = gpm__gdb_send_raw(&h->conn, "\x03", 1);
        if (err < 0) {
            return err;
        }
    } else if (!gpm__gdb_pending(&h->conn)) {
        pfd[0].fd = h->conn.fd;
        pfd[0].events = POLLIN;
        pfd[1].fd = h->wake[0];
        pfd[1].events = POLLIN;
        pfd[0].revents = pfd[1].revents = 0;
        if (poll(pfd, 2, -1) < 0) {
            return errno == EINTR ? 0 : GPM_EIO;
        }
        if (pfd[1].revents) {
            drain_wake(h);
        }
        if (!pfd[0].revents) {
            if (queue_empty(h)) {
                return 0;
            }
            /* A request needs the CPU: interrupt the guest. */
            STAT_ADD(h, interrupts, 1);
            err = gpm__gdb_send_raw(&h->conn, "\x03", 1);
            if (err < 0) {
                return err;
            }
        }
    }
    err = wait_stop(h, tmo(h), &s);
    if (err < 0) {
        return err;
    }
    err = handle_stop(h);
    sync_conn_stats(h);
    return err;
}

static void fail_all(gpm_qemu_host_t *h, int err)
{
    cmd_t *c;

    pthread_mutex_lock(&h->lock);
    h->dead = true;
    h->st.connected = false;
    h->st.running = false;
    while ((c = h->head) != NULL) {
        h->head = c->next;
        c->result = err;
        c->done = true;
    }
    h->tail = NULL;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

static void do_shutdown(gpm_qemu_host_t *h)
{
    size_t len;

    while (h->nbps > 0) {
        if (bp_remove(h, h->bps[0].addr, true) == GPM_ECONNRESET) {
            return;
        }
    }
    if (regs_flush(h) < 0) {
        return;
    }
    /* Detaching resumes the guest without us. */
    command(h, "D", &len);
}

static void host_release(gpm_qemu_host_t *h);

static void *io_main(void *arg)
{
    gpm_qemu_host_t *h = arg;
    int err = setup(h);

    pthread_mutex_lock(&h->lock);
    h->start_result = err;
    h->start_done = true;
    h->st.connected = err == 0;
    h->st.packets_sent = h->conn.packets_sent;
    h->st.bytes_sent = h->conn.bytes_sent;
    h->st.bytes_received = h->conn.bytes_received;
    h->st.retransmits = h->conn.retransmits;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    if (err == 0) {
        bool pause;
        uint64_t pc;

        /* The guest is stopped on connection; it may sit on a breakpoint. */
        err = reg_get(h, (unsigned)h->reg_rip, &pc);
        if (err == 0) {
            err = dispatch(h, pc, &pause);
        }
    }
    while (err == 0 && !h->shutdown) {
        err = h->running ? turn_running(h) : turn_stopped(h);
    }
    if (err == 0 && h->shutdown) {
        do_shutdown(h);
        err = GPM_ECONNRESET;
    }
    sync_conn_stats(h);
    fail_all(h, err == GPM_ETIMEDOUT ? err : GPM_ECONNRESET);
    gpm__gdb_close(&h->conn);
    if (h->free_on_exit) {
        pthread_detach(pthread_self());
        gpm__ram_close(&h->ram);
        host_release(h);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Requests from other threads. */

static int submit(gpm_qemu_host_t *h, cmd_t *c)
{
    struct timespec dl;
    int64_t ms = 2 * (int64_t)tmo(h) + 1000;

    if (on_io_thread(h)) {
        if (c->kind == CMD_SHUTDOWN) {
            return GPM_EINVAL;
        }
        return run_cmd(h, c, true);
    }
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&h->lock);
    if (!h->started || !h->start_done) {
        pthread_mutex_unlock(&h->lock);
        return GPM_EINVAL;
    }
    if (h->dead || h->joined) {
        pthread_mutex_unlock(&h->lock);
        return GPM_ECONNRESET;
    }
    c->next = NULL;
    c->taken = c->done = false;
    if (h->tail) {
        h->tail->next = c;
    } else {
        h->head = c;
    }
    h->tail = c;
    if (write(h->wake[1], "x", 1) < 0 && errno != EAGAIN) {
        /* The pipe is full or broken; the I/O thread polls it anyway. */
    }
    while (!c->done) {
        int r = c->taken ? pthread_cond_wait(&h->cond, &h->lock)
                         : pthread_cond_timedwait(&h->cond, &h->lock, &dl);

        if (r == ETIMEDOUT && !c->done && !c->taken) {
            cmd_t **pp = &h->head, *prev = NULL;

            while (*pp && *pp != c) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            if (*pp) {
                *pp = c->next;
                if (h->tail == c) {
                    h->tail = prev;
                }
            }
            pthread_mutex_unlock(&h->lock);
            return GPM_ETIMEDOUT;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return c->result;
}

static int call(gpm_qemu_host_t *h, int (*fn)(gpm_qemu_host_t *, void *),
                void *arg)
{
    cmd_t c;

    memset(&c, 0, sizeof(c));
    c.kind = CMD_CALL;
    c.fn = fn;
    c.arg = arg;
    return submit(h, &c);
}

int gpm_qemu_host_new(const gpm_qemu_host_config_t *cfg, gpm_qemu_host_t **out)
{
    gpm_qemu_host_t *h;

    if (!cfg || !out || !cfg->gdb_socket_path || cfg->arch != GPM_ARCH_X86_64 ||
        (cfg->ram_path && !cfg->ram_size)) {
        return GPM_EINVAL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        return GPM_ENOMEM;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->cfg = *cfg;
    if (h->cfg.timeout_ms <= 0) {
        h->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    }
    h->sock_path = strdup(cfg->gdb_socket_path);
    h->ram_path = cfg->ram_path ? strdup(cfg->ram_path) : NULL;
    h->reply_cap = GPM__RSP_MAX_PACKET + 1;
    h->reply = malloc(h->reply_cap);
    h->conn.fd = -1;
    h->ram.fd = -1;
    h->wake[0] = h->wake[1] = -1;
    if (!h->sock_path || (cfg->ram_path && !h->ram_path) || !h->reply) {
        gpm_qemu_host_free(h);
        return GPM_ENOMEM;
    }
    h->cfg.gdb_socket_path = h->sock_path;
    h->cfg.ram_path = h->ram_path;
    *out = h;
    return 0;
}

int gpm_qemu_host_start(gpm_qemu_host_t *h)
{
    int err;

    pthread_mutex_lock(&h->lock);
    if (h->started) {
        pthread_mutex_unlock(&h->lock);
        return GPM_EBUSY;
    }
    h->started = true;
    pthread_mutex_unlock(&h->lock);
    if (h->ram_path) {
        err = gpm__ram_open(&h->ram, h->ram_path, h->cfg.ram_size,
                            h->cfg.ram_below_4g);
        if (err < 0) {
            goto fail;
        }
        pthread_mutex_lock(&h->lock);
        h->have_ram = true;
        pthread_mutex_unlock(&h->lock);
    }
    if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        err = GPM_ENOMEM;
        goto fail;
    }
    if (pthread_create(&h->thread, NULL, io_main, h) != 0) {
        err = GPM_ENOMEM;
        goto fail;
    }
    pthread_mutex_lock(&h->lock);
    while (!h->start_done) {
        pthread_cond_wait(&h->cond, &h->lock);
    }
    err = h->start_result;
    pthread_mutex_unlock(&h->lock);
    if (err < 0) {
        pthread_join(h->thread, NULL);
        pthread_mutex_lock(&h->lock);
        h->joined = true;
        pthread_mutex_unlock(&h->lock);
    }
    return err;

fail:
    pthread_mutex_lock(&h->lock);
    h->start_done = true;
    h->start_result = err;
    h->dead = true;
    h->joined = true;
    pthread_mutex_unlock(&h->lock);
    return err;
}

int gpm_qemu_host_pause(gpm_qemu_host_t *h, uint64_t *pc)
{
    cmd_t c;
    int err;

    memset(&c, 0, sizeof(c));
    c.kind = CMD_PAUSE;
    err = submit(h, &c);
    if (err == 0 && pc) {
        *pc = c.pc;
    }
    return err;
}

int gpm_qemu_host_resume(gpm_qemu_host_t *h)
{
    cmd_t c;

    memset(&c, 0, sizeof(c));
    c.kind = CMD_RESUME;
    return submit(h, &c);
}

int gpm_qemu_host_wait_paused(gpm_qemu_host_t *h, int timeout_ms, uint64_t *pc)
{
    struct timespec dl;
    int err = 0;

    if (on_io_thread(h)) {
        return GPM_EINVAL;
    }
    clock_gettime(CLOCK_REALTIME, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&h->lock);
    for (;;) {
        if (h->user_paused) {
            if (pc) {
                *pc = h->paused_pc;
            }
            break;
        }
        if (h->dead || h->joined || !h->started) {
            err = GPM_ECONNRESET;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&h->cond, &h->lock);
        } else if (pthread_cond_timedwait(&h->cond, &h->lock, &dl) ==
                   ETIMEDOUT) {
            err = h->user_paused ? 0 : GPM_ETIMEDOUT;
            if (err == 0 && pc) {
                *pc = h->paused_pc;
            }
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return err;
}

typedef struct reg_arg {
    unsigned regno;
    uint64_t val;
} reg_arg_t;

static int do_read_reg(gpm_qemu_host_t *h, void *arg)
{
    reg_arg_t *a = arg;

    return reg_get(h, a->regno, &a->val);
}

static int do_write_reg(gpm_qemu_host_t *h, void *arg)
{
    reg_arg_t *a = arg;

    return reg_set(h, a->regno, a->val);
}

int gpm_qemu_host_read_reg(gpm_qemu_host_t *h, unsigned regno, uint64_t *val)
{
    reg_arg_t a = {regno, 0};
    int err = call(h, do_read_reg, &a);

    if (err == 0) {
        *val = a.val;
    }
    return err;
}

int gpm_qemu_host_write_reg(gpm_qemu_host_t *h, unsigned regno, uint64_t val)
{
    reg_arg_t a = {regno, val};

    return call(h, do_write_reg, &a);
}

typedef struct mem_arg {
    uint64_t va;
    void *buf;
    const void *cbuf;
    size_t len;
} mem_arg_t;

static int do_read_virt(gpm_qemu_host_t *h, void *arg)
{
    mem_arg_t *a = arg;

    return mem_read(h, a->va, a->buf, a->len, 0);
}

static int do_write_virt(gpm_qemu_host_t *h, void *arg)
{
    mem_arg_t *a = arg;

    return mem_write(h, a->va, a->cbuf, a->len);
}

static int do_gdb_read(gpm_qemu_host_t *h, void *arg)
{
    mem_arg_t *a = arg;

    return gdb_read_mem(h, a->va, a->buf, a->len);
}

int gpm_qemu_host_read_virt(gpm_qemu_host_t *h, uint64_t va, void *buf,
                            size_t len)
{
    mem_arg_t a = {va, buf, NULL, len};

    return call(h, do_read_virt, &a);
}

int gpm_qemu_host_write_virt(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                             size_t len)
{
    mem_arg_t a = {va, NULL, buf, len};

    return call(h, do_write_virt, &a);
}

int gpm_qemu_host_gdb_read_mem(gpm_qemu_host_t *h, uint64_t va, void *buf,
                               size_t len)
{
    mem_arg_t a = {va, buf, NULL, len};

    return call(h, do_gdb_read, &a);
}

int gpm_qemu_host_read_phys(gpm_qemu_host_t *h, uint64_t pa, void *buf,
                            size_t len)
{
    int err = GPM_ENOSYS;

    /* The lock keeps close() from unmapping RAM under the copy. */
    pthread_mutex_lock(&h->lock);
    if (h->have_ram && h->started && !h->joined) {
        err = gpm__ram_read_phys(&h->ram, pa, buf, len);
    }
    pthread_mutex_unlock(&h->lock);
    return err;
}

typedef struct bp_arg {
    uint64_t addr;
    gpm_qemu_stop_cb cb;
    void *opaque;
} bp_arg_t;

static int do_add_bp(gpm_qemu_host_t *h, void *arg)
{
    bp_arg_t *a = arg;

    return bp_insert(h, a->addr, a->cb, a->opaque, false);
}

static int do_remove_bp(gpm_qemu_host_t *h, void *arg)
{
    bp_arg_t *a = arg;

    return bp_remove(h, a->addr, false);
}

int gpm_qemu_host_add_breakpoint(gpm_qemu_host_t *h, uint64_t va,
                                 gpm_qemu_stop_cb cb, void *opaque)
{
    bp_arg_t a = {va, cb, opaque};

    return call(h, do_add_bp, &a);
}

int gpm_qemu_host_remove_breakpoint(gpm_qemu_host_t *h, uint64_t va)
{
    bp_arg_t a = {va, NULL, NULL};

    return call(h, do_remove_bp, &a);
}

typedef struct user_call {
    gpm_qemu_call_cb fn;
    void *opaque;
} user_call_t;

static int do_user_call(gpm_qemu_host_t *h, void *arg)
{
    user_call_t *u = arg;

    return u->fn(h, &full_ops, h, u->opaque);
}

int gpm_qemu_host_call(gpm_qemu_host_t *h, gpm_qemu_call_cb fn, void *opaque)
{
    user_call_t u = {fn, opaque};

    if (!fn) {
        return GPM_EINVAL;
    }
    return call(h, do_user_call, &u);
}

typedef struct bench_arg {
    unsigned iters;
    uint64_t g_ns, p5_ns;
} bench_arg_t;

static int do_bench(gpm_qemu_host_t *h, void *arg)
{
    bench_arg_t *b = arg;
    int64_t t0;
    unsigned i, k;
    int err;

    err = regs_flush(h);
    if (err < 0) {
        return err;
    }
    t0 = now_ns();
    for (i = 0; i < b->iters; i++) {
        regs_invalidate(h);
        err = fetch_g(h);
        if (err < 0) {
            return err;
        }
    }
    b->g_ns = (uint64_t)(now_ns() - t0) / b->iters;
    t0 = now_ns();
    for (i = 0; i < b->iters; i++) {
        for (k = 0; k < 5; k++) {
            static const unsigned hc[5] = {0, 1, 2, 3, 5};
            uint64_t v;

            /* Force 'p': mark the cache valid for g but not this one. */
            regs_invalidate(h);
            h->g_valid = true;
            err = reg_get(h, hc[k], &v);
            if (err < 0) {
                return err;
            }
        }
    }
    b->p5_ns = (uint64_t)(now_ns() - t0) / b->iters;
    regs_invalidate(h);
    return 0;
}

int gpm_qemu_host_bench_regs(gpm_qemu_host_t *h, unsigned iters, uint64_t *g_ns,
                             uint64_t *p5_ns)
{
    bench_arg_t b = {iters ? iters : 1, 0, 0};
    int err = call(h, do_bench, &b);

    if (err == 0) {
        *g_ns = b.g_ns;
        *p5_ns = b.p5_ns;
    }
    return err;
}

int gpm_qemu_host_reg_number(gpm_qemu_host_t *h, const char *name)
{
    bool ok;
    int n;

    pthread_mutex_lock(&h->lock);
    ok = h->start_done && h->start_result == 0;
    pthread_mutex_unlock(&h->lock);
    if (!ok || !name) {
        return GPM_ENOENT;
    }
    n = gpm__tdesc_find(&h->td, name);
    return n < 0 ? GPM_ENOENT : n;
}

void gpm_qemu_host_stats(gpm_qemu_host_t *h, gpm_qemu_host_stats_t *out)
{
    pthread_mutex_lock(&h->lock);
    *out = h->st;
    pthread_mutex_unlock(&h->lock);
}

static void host_release(gpm_qemu_host_t *h)
{
    if (h->wake[0] >= 0) {
        close(h->wake[0]);
        close(h->wake[1]);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h->sock_path);
    free(h->ram_path);
    free(h->reply);
    free(h);
}

/* Counts a queued message in @id's slot, straight into guest RAM. */
static void ring_doorbell(gpm_channel_id_t id, void *opaque)
{
    uint64_t *slots = opaque;

    __atomic_fetch_add(&slots[id % GPM_DOORBELL_SLOTS], 1, __ATOMIC_SEQ_CST);
}

int gpm_qemu_host_enable_doorbell(gpm_qemu_host_t *h, uint64_t phys)
{
    uint8_t *page;
    int rc;

    if (h == NULL || (phys & (GPM_DOORBELL_SIZE - 1)) != 0)
        return GPM_EINVAL;
    pthread_mutex_lock(&h->lock);
    if (!h->have_ram || h->cfg.manager == NULL) {
        pthread_mutex_unlock(&h->lock);
        return GPM_ENOSYS;
    }
    page = gpm__ram_phys(&h->ram, phys, GPM_DOORBELL_SIZE);
    if (page == NULL) {
        pthread_mutex_unlock(&h->lock);
        return GPM_EINVAL;
    }
    h->doorbell = page;
    rc = gpm_manager_set_doorbell(h->cfg.manager, phys, ring_doorbell, page);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int gpm_qemu_host_close(gpm_qemu_host_t *h)
{
    cmd_t c;
    bool join;
    int err = 0;

    if (on_io_thread(h)) {
        /* From a callback: wind down after this stop; joined later. */
        h->shutdown = true;
        return 0;
    }
    pthread_mutex_lock(&h->lock);
    if (h->closing) {
        /* Another thread is closing: wait for it to finish. */
        while (!h->joined) {
            pthread_cond_wait(&h->cond, &h->lock);
        }
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    join = h->started && !h->joined;
    h->closing = true;
    pthread_mutex_unlock(&h->lock);
    if (join) {
        memset(&c, 0, sizeof(c));
        c.kind = CMD_SHUTDOWN;
        err = submit(h, &c);
        if (err == GPM_ECONNRESET) {
            err = 0; /* already gone: nothing to detach from */
        }
        pthread_join(h->thread, NULL);
    }
    pthread_mutex_lock(&h->lock);
    /* The manager must not ring into a mapping that is going away. */
    if (h->doorbell != NULL && h->cfg.manager != NULL)
        gpm_manager_set_doorbell(h->cfg.manager, 0, NULL, NULL);
    h->doorbell = NULL;
    gpm__ram_close(&h->ram); /* under the lock: see read_phys */
    h->have_ram = false;
    h->joined = true;
    h->dead = true;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return err;
}

void gpm_qemu_host_free(gpm_qemu_host_t *h)
{
    if (!h) {
        return;
    }
    if (on_io_thread(h)) {
        /* The last owner let go inside a callback: the thread frees. */
        h->shutdown = true;
        h->free_on_exit = true;
        return;
    }
    gpm_qemu_host_close(h);
    host_release(h);
}
