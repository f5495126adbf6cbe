/*
 * backoff.c - the adaptive wait between empty polls.
 *
 * Why adaptive: every empty READ is a VM exit costing about 1 ms on the
 * stock-QEMU host, so a busy poll burns the guest CPU and the host's time,
 * while the original daemon's fixed 10 ms sleeps made every exchange wait
 * 10 ms. Spinning a few times catches quick replies; sleeping from 50 us up
 * to 20 ms keeps an idle guest cheap.
 */
#include <time.h>

#include "gpm_guest.h"

void gpm_backoff_reset(struct gpm_backoff *b)
{
    b->spins = 0;
    b->sleep_ns = 0;
}

void gpm_backoff_wait(struct gpm_backoff *b)
{
    struct timespec ts;

    if (b->spins < GPM_BACKOFF_SPINS) {
        b->spins++;
        return;
    }
    if (b->sleep_ns < GPM_BACKOFF_MIN_NS)
        b->sleep_ns = GPM_BACKOFF_MIN_NS;
    ts.tv_sec = (time_t)(b->sleep_ns / 1000000000UL);
    ts.tv_nsec = (long)(b->sleep_ns % 1000000000UL);
    nanosleep(&ts, NULL);
    b->sleep_ns *= 2;
    if (b->sleep_ns > GPM_BACKOFF_MAX_NS)
        b->sleep_ns = GPM_BACKOFF_MAX_NS;
}
