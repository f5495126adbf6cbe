/*
 * qh_ring.c - the stock-QEMU host's ring thread: it serves the channel
 * rings (core/ring.c) in the RAM file while the guest runs, so a steady
 * stream of channel data costs no VM stop.
 *
 * Backoff: after a pass that moved something the thread polls again at
 * once, and keeps polling for RING_SPIN_NS after the last work (a reply
 * usually follows quickly); then it sleeps, from RING_SLEEP_MIN_NS doubling
 * to RING_SLEEP_MAX_NS, until a host write kicks it. An idle registered
 * ring therefore costs one pass per RING_SLEEP_MAX_NS.
 */
#define _GNU_SOURCE
#include "qemu/qh_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "gpm/ring_abi.h"

#define RING_SPIN_NS      200000
#define RING_SLEEP_MIN_NS 20000
#define RING_SLEEP_MAX_NS 2000000

static void ring_kick(void *opaque)
{
    gpm__qh_rings_t *r = opaque;

    pthread_mutex_lock(&r->mu);
    r->kicked = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->mu);
}

static void sleep_until_kicked(gpm__qh_rings_t *r, int64_t ns)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += ns;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    while (!r->kicked && !r->stop) {
        if (pthread_cond_timedwait(&r->cond, &r->mu, &ts) == ETIMEDOUT)
            break;
    }
}

static void *ring_main(void *arg)
{
    gpm_qemu_host_t *h = arg;
    gpm__qh_rings_t *r = &h->rings;
    int64_t last_work = now_ns(), sleep_ns = 0;

    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        int n;

        r->kicked = false;
        pthread_mutex_unlock(&r->mu);
        n = gpm_manager_ring_service(h->cfg.manager);
        pthread_mutex_lock(&r->mu);
        r->passes++;
        if (n > 0) {
            r->busy_passes++;
            last_work = now_ns();
            sleep_ns = 0;
            continue;
        }
        if (r->kicked || now_ns() - last_work < RING_SPIN_NS) {
            pthread_mutex_unlock(&r->mu);
            sched_yield();
            pthread_mutex_lock(&r->mu);
            continue;
        }
        sleep_ns = sleep_ns == 0 ? RING_SLEEP_MIN_NS : sleep_ns * 2;
        if (sleep_ns > RING_SLEEP_MAX_NS)
            sleep_ns = RING_SLEEP_MAX_NS;
        r->sleeps++;
        sleep_until_kicked(r, sleep_ns);
        if (r->kicked) {
            last_work = now_ns();
            sleep_ns = 0;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int gpm_qemu_host_enable_rings(gpm_qemu_host_t *h, uint64_t phys, size_t size)
{
    gpm__qh_rings_t *r;
    pthread_condattr_t ca;
    uint8_t *region;
    int rc;

    if (h == NULL || (phys & 4095u) != 0 || size < GPM_RING_SLOT_SIZE)
        return GPM_EINVAL;
    r = &h->rings;
    pthread_mutex_lock(&h->lock);
    if (!h->have_ram || h->cfg.manager == NULL || h->dead) {
        pthread_mutex_unlock(&h->lock);
        return GPM_ENOSYS;
    }
    if (r->running) {
        pthread_mutex_unlock(&h->lock);
        return GPM_EEXIST;
    }
    region = gpm__ram_phys(&h->ram, phys, size);
    if (region == NULL) {
        pthread_mutex_unlock(&h->lock);
        return GPM_EINVAL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    r->stop = false;
    r->kicked = false;
    rc =
        gpm_manager_set_rings(h->cfg.manager, phys, size, region, ring_kick, r);
    if (rc == 0 && pthread_create(&r->thread, NULL, ring_main, h) != 0) {
        gpm_manager_set_rings(h->cfg.manager, 0, 0, NULL, NULL, NULL);
        rc = GPM_ENOMEM;
    }
    if (rc == 0) {
        pthread_setname_np(r->thread, "gpm-ring");
        r->running = true;
    } else {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->mu);
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

void gpm__qh_rings_stop(gpm_qemu_host_t *h)
{
    gpm__qh_rings_t *r = &h->rings;

    if (!r->running)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    /* No pass runs now: the manager lets go of the mapping. */
    gpm_manager_set_rings(h->cfg.manager, 0, 0, NULL, NULL, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    r->running = false;
}

void gpm__qh_rings_stats(gpm_qemu_host_t *h, gpm_qemu_host_stats_t *out)
{
    gpm__qh_rings_t *r = &h->rings;

    if (!r->running)
        return;
    pthread_mutex_lock(&r->mu);
    out->ring_passes = r->passes;
    out->ring_busy_passes = r->busy_passes;
    out->ring_sleeps = r->sleeps;
    pthread_mutex_unlock(&r->mu);
}
