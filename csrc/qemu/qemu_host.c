/*
 * qemu_host.c - the stock-QEMU host over the gdbstub: its public functions
 * (see qemu_host.h). The I/O thread and the rest are in qh_*.c, described
 * in qh_internal.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu/qh_internal.h"

static bool on_io_thread(gpm_qemu_host_t *h)
{
    bool started;

    pthread_mutex_lock(&h->lock);
    started = h->started && !h->joined;
    pthread_mutex_unlock(&h->lock);
    return started && pthread_equal(pthread_self(), h->thread);
}

/* ------------------------------------------------------------------ */
/* Requests from other threads. */

int gpm__qh_submit(gpm_qemu_host_t *h, cmd_t *c)
{
    struct timespec dl;
    int64_t ms = 2 * (int64_t)tmo(h) + 1000;

    if (on_io_thread(h)) {
        if (c->kind == CMD_SHUTDOWN) {
            return GPM_EINVAL;
        }
        return gpm__qh_run_cmd(h, c, true);
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

int gpm__qh_call(gpm_qemu_host_t *h, int (*fn)(gpm_qemu_host_t *, void *),
                 void *arg)
{
    cmd_t c;

    memset(&c, 0, sizeof(c));
    c.kind = CMD_CALL;
    c.fn = fn;
    c.arg = arg;
    return gpm__qh_submit(h, &c);
}

int gpm_qemu_host_new(const gpm_qemu_host_config_t *cfg, gpm_qemu_host_t **out)
{
    gpm_qemu_host_t *h;

    if (!cfg || !out || !cfg->gdb_socket_path ||
        (cfg->ram_path && !cfg->ram_size)) {
        return GPM_EINVAL;
    }
    /* An arch is served once its backend has what the host needs. */
    if (!gpm_arch_info(cfg->arch) || !gpm__arch_ops(cfg->arch) ||
        !gpm__arch_ops(cfg->arch)->pc_reg) {
        return GPM_EINVAL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        return GPM_ENOMEM;
    }
    h->ai = gpm_arch_info(cfg->arch);
    h->aops = gpm__arch_ops(cfg->arch);
    h->reg_task_base = -1;
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
        h->ram.base_pa = h->cfg.ram_base;
        pthread_mutex_lock(&h->lock);
        h->have_ram = true;
        pthread_mutex_unlock(&h->lock);
    }
    if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        err = GPM_ENOMEM;
        goto fail;
    }
    if (pthread_create(&h->thread, NULL, gpm__qh_io_main, h) != 0) {
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
    err = gpm__qh_submit(h, &c);
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
    return gpm__qh_submit(h, &c);
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

    return gpm__qh_reg_get(h, a->regno, &a->val);
}

static int do_write_reg(gpm_qemu_host_t *h, void *arg)
{
    reg_arg_t *a = arg;

    return gpm__qh_reg_set(h, a->regno, a->val);
}

int gpm_qemu_host_read_reg(gpm_qemu_host_t *h, unsigned regno, uint64_t *val)
{
    reg_arg_t a = {regno, 0};
    int err = gpm__qh_call(h, do_read_reg, &a);

    if (err == 0) {
        *val = a.val;
    }
    return err;
}

int gpm_qemu_host_write_reg(gpm_qemu_host_t *h, unsigned regno, uint64_t val)
{
    reg_arg_t a = {regno, val};

    return gpm__qh_call(h, do_write_reg, &a);
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

    return gpm__qh_mem_read(h, a->va, a->buf, a->len, 0);
}

static int do_write_virt(gpm_qemu_host_t *h, void *arg)
{
    mem_arg_t *a = arg;

    return gpm__qh_mem_write(h, a->va, a->cbuf, a->len);
}

static int do_gdb_read(gpm_qemu_host_t *h, void *arg)
{
    mem_arg_t *a = arg;

    return gpm__qh_gdb_read_mem(h, a->va, a->buf, a->len);
}

int gpm_qemu_host_read_virt(gpm_qemu_host_t *h, uint64_t va, void *buf,
                            size_t len)
{
    mem_arg_t a = {va, buf, NULL, len};

    return gpm__qh_call(h, do_read_virt, &a);
}

int gpm_qemu_host_write_virt(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                             size_t len)
{
    mem_arg_t a = {va, NULL, buf, len};

    return gpm__qh_call(h, do_write_virt, &a);
}

static int do_gdb_write(gpm_qemu_host_t *h, void *arg)
{
    mem_arg_t *a = arg;

    return gpm__qh_gdb_write_mem(h, a->va, a->cbuf, a->len);
}

int gpm_qemu_host_gdb_write_mem(gpm_qemu_host_t *h, uint64_t va,
                                const void *buf, size_t len)
{
    mem_arg_t a = {va, NULL, buf, len};

    return gpm__qh_call(h, do_gdb_write, &a);
}

int gpm_qemu_host_gdb_read_mem(gpm_qemu_host_t *h, uint64_t va, void *buf,
                               size_t len)
{
    mem_arg_t a = {va, buf, NULL, len};

    return gpm__qh_call(h, do_gdb_read, &a);
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

    return gpm__qh_bp_insert(h, a->addr, a->cb, a->opaque, false);
}

static int do_remove_bp(gpm_qemu_host_t *h, void *arg)
{
    bp_arg_t *a = arg;

    return gpm__qh_bp_remove(h, a->addr, false);
}

int gpm_qemu_host_add_breakpoint(gpm_qemu_host_t *h, uint64_t va,
                                 gpm_qemu_stop_cb cb, void *opaque)
{
    bp_arg_t a = {va, cb, opaque};

    return gpm__qh_call(h, do_add_bp, &a);
}

int gpm_qemu_host_remove_breakpoint(gpm_qemu_host_t *h, uint64_t va)
{
    bp_arg_t a = {va, NULL, NULL};

    return gpm__qh_call(h, do_remove_bp, &a);
}

typedef struct user_call {
    gpm_qemu_call_cb fn;
    void *opaque;
} user_call_t;

static int do_user_call(gpm_qemu_host_t *h, void *arg)
{
    user_call_t *u = arg;

    return u->fn(h, &gpm__qh_full_ops, h, u->opaque);
}

int gpm_qemu_host_call(gpm_qemu_host_t *h, gpm_qemu_call_cb fn, void *opaque)
{
    user_call_t u = {fn, opaque};

    if (!fn) {
        return GPM_EINVAL;
    }
    return gpm__qh_call(h, do_user_call, &u);
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

    err = gpm__qh_regs_flush(h);
    if (err < 0) {
        return err;
    }
    t0 = now_ns();
    for (i = 0; i < b->iters; i++) {
        gpm__qh_regs_invalidate(h);
        err = gpm__qh_fetch_g(h);
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
            gpm__qh_regs_invalidate(h);
            h->g_valid = true;
            err = gpm__qh_reg_get(h, hc[k], &v);
            if (err < 0) {
                return err;
            }
        }
    }
    b->p5_ns = (uint64_t)(now_ns() - t0) / b->iters;
    gpm__qh_regs_invalidate(h);
    return 0;
}

int gpm_qemu_host_bench_regs(gpm_qemu_host_t *h, unsigned iters, uint64_t *g_ns,
                             uint64_t *p5_ns)
{
    bench_arg_t b = {iters ? iters : 1, 0, 0};
    int err = gpm__qh_call(h, do_bench, &b);

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

gpm_arch_t gpm_qemu_host_arch(const gpm_qemu_host_t *h)
{
    return h->cfg.arch;
}

void gpm_qemu_host_stats(gpm_qemu_host_t *h, gpm_qemu_host_stats_t *out)
{
    pthread_mutex_lock(&h->lock);
    *out = h->st;
    gpm__qh_rings_stats(h, out);
    pthread_mutex_unlock(&h->lock);
}

void gpm__qh_release(gpm_qemu_host_t *h)
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
        err = gpm__qh_submit(h, &c);
        if (err == GPM_ECONNRESET) {
            err = 0; /* already gone: nothing to detach from */
        }
        pthread_join(h->thread, NULL);
    }
    /* The ring thread must stop before the mapping goes away. */
    gpm__qh_rings_stop(h);
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
    gpm__qh_release(h);
}