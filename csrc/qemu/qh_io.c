/*
 * qh_io.c - the stock-QEMU host's I/O thread: setup, its loop while the
 * guest runs and while it is stopped, and the commands other threads queue.
 */
#define _GNU_SOURCE
#include "qemu/qh_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int setup(gpm_qemu_host_t *h)
{
    char sup[64];
    unsigned i;
    gpm__rsp_stop_t s;
    const char *ps;
    size_t len = 0;
    uint64_t v;
    int err;

    err = gpm__gdb_connect(&h->conn, h->sock_path, tmo(h));
    if (err < 0) {
        return err;
    }
    snprintf(sup, sizeof(sup), "qSupported:xmlRegisters=%s",
             h->aops->gdb_xml_arch);
    err = gpm__qh_command(h, sup, &len);
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
        err = gpm__qh_wait_stop(h, tmo(h), &s);
    }
    if (err < 0) {
        return err;
    }
    err = gpm__tdesc_load(gpm__qh_fetch_xml, h, &h->td);
    if (err < 0) {
        return err;
    }
    /* Every register the arch's backend names must be there. */
    h->reg_pc = gpm__tdesc_find(&h->td, h->aops->pc_reg);
    h->reg_mode = gpm__tdesc_find(&h->td, h->aops->mode_reg);
    if (h->reg_pc < 0 || h->reg_mode < 0) {
        return GPM_EPROTO; /* not a target of this arch */
    }
    for (i = 0; i < GPM__MMU_NREGS; i++) {
        const char *name = h->aops->mmu_regs[i];

        h->reg_mmu[i] = name ? gpm__tdesc_find(&h->td, name) : -1;
        if (name && h->reg_mmu[i] < 0 && h->have_ram) {
            return GPM_EPROTO; /* the page walk needs it */
        }
    }
    err = gpm__qh_bp_insert(h, h->aops->hc_addr, NULL, NULL, true);
    if (err < 0) {
        return err;
    }
    h->running = false;
    gpm__qh_regs_invalidate(h);
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

/*
 * Runs one command with the CPU stopped. @direct: called from a callback on
 * the I/O thread, where a resume only takes effect when the stop handling
 * ends.
 */
int gpm__qh_run_cmd(gpm_qemu_host_t *h, cmd_t *c, bool direct)
{
    uint64_t pc = 0;
    int err;

    switch (c->kind) {
    case CMD_CALL:
        return c->fn(h, c->arg);
    case CMD_PAUSE:
        err = gpm__qh_reg_get(h, (unsigned)h->reg_pc, &pc);
        c->pc = pc;
        gpm__qh_set_paused(h, true, pc);
        return err;
    case CMD_RESUME:
        gpm__qh_set_paused(h, false, 0);
        /* Return once the guest really runs (or stopped again). */
        return direct ? 0 : gpm__qh_resume_guest(h);
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
        r = gpm__qh_run_cmd(h, c, false);
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
        return gpm__qh_resume_guest(h);
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
        int err = gpm__qh_wait_stop(h, 100, &s);

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
    err = gpm__qh_wait_stop(h, tmo(h), &s);
    if (err < 0) {
        return err;
    }
    err = gpm__qh_handle_stop(h);
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
        if (gpm__qh_bp_remove(h, h->bps[0].addr, true) == GPM_ECONNRESET) {
            return;
        }
    }
    if (gpm__qh_regs_flush(h) < 0) {
        return;
    }
    /* Detaching resumes the guest without us. */
    gpm__qh_command(h, "D", &len);
}

void *gpm__qh_io_main(void *arg)
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
        err = gpm__qh_reg_get(h, (unsigned)h->reg_pc, &pc);
        if (err == 0) {
            err = gpm__qh_dispatch(h, pc, &pause);
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
        gpm__qh_rings_stop(h);
        gpm__ram_close(&h->ram);
        gpm__qh_release(h);
    }
    return NULL;
}
