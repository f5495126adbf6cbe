/*
 * doorbell.c - waiting for host data without hypercalls.
 *
 * Every hypercall stops the whole VM on the stock-QEMU host, and a stop
 * costs the guest far more than its own time (QEMU drops its translated
 * code), so an idle poll loop slows every other guest program. When the
 * host offers a doorbell page (GPM_HC_OP_GET_DOORBELL), a waiting program
 * maps it read-only through /dev/mem and sleeps until the slot of its
 * channel changes, making no hypercall at all while it waits. Without a
 * doorbell (PANDA, a non-root program, no /dev/mem) it polls as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gpm_guest.h"

/* 0: not asked yet, 1: mapped, -1: none. */
static int doorbell_state;
static const volatile uint64_t *doorbell;

const volatile uint64_t *gpm_doorbell(void)
{
    int state = __atomic_load_n(&doorbell_state, __ATOMIC_ACQUIRE);
    uint64_t phys;
    void *p = MAP_FAILED;
    int fd;

    if (state != 0)
        return state > 0 ? doorbell : NULL;
    phys = gpm_hc(GPM_HC_OP_GET_DOORBELL, 0, 0, 0);
    if (gpm_hc_err(phys) == 0 && phys != 0 &&
        (phys & (GPM_DOORBELL_SIZE - 1)) == 0) {
        fd = open("/dev/mem", O_RDONLY | O_CLOEXEC | O_SYNC);
        if (fd >= 0) {
            p = mmap(NULL, GPM_DOORBELL_SIZE, PROT_READ, MAP_SHARED, fd,
                     (off_t)phys);
            close(fd);
        }
    }
    if (p != MAP_FAILED)
        doorbell = p;
    __atomic_store_n(&doorbell_state, p != MAP_FAILED ? 1 : -1,
                     __ATOMIC_RELEASE);
    return p != MAP_FAILED ? doorbell : NULL;
}

uint64_t gpm_doorbell_value(gpm_chan_t chan)
{
    const volatile uint64_t *db = gpm_doorbell();

    return db != NULL ? db[chan % GPM_DOORBELL_SLOTS] : 0;
}

int gpm_wait_change(gpm_chan_t chan, uint64_t since, struct gpm_backoff *b)
{
    const volatile uint64_t *db = gpm_doorbell();
    unsigned long slept_ns = 0, step_ns = GPM_BACKOFF_MIN_NS;

    if (db == NULL) {
        gpm_backoff_wait(b);
        return 0;
    }
    /* Memory reads only; return after about a second in any case. */
    while (db[chan % GPM_DOORBELL_SLOTS] == since) {
        struct timespec ts = {0, (long)step_ns};

        if (slept_ns >= 1000000000UL)
            return 0;
        if (nanosleep(&ts, NULL) != 0 && errno == EINTR)
            return -EINTR;
        slept_ns += step_ns;
        step_ns *= 2;
        if (step_ns > GPM_BACKOFF_MAX_NS)
            step_ns = GPM_BACKOFF_MAX_NS;
    }
    gpm_backoff_reset(b);
    return 1;
}
