/*
 * ring.h - the guest side of the shared-memory channel rings (private to
 * the guest library; the layout is gpm/ring_abi.h, the design
 * docs/rings.md).
 *
 * channel.c attaches a ring when it opens a channel and, while the calling
 * process owns one for a channel, moves that channel's bytes through it
 * instead of READ/WRITE hypercalls. Everything falls back to hypercalls
 * when the host offers no ring (PANDA, rings switched off), none is free,
 * /dev/mem cannot be mapped (not root), or GPM_RINGS=0 is in the
 * environment.
 */
#ifndef GPM_GUEST_RING_H
#define GPM_GUEST_RING_H

#include <stddef.h>
#include <sys/types.h>

#include "gpm_guest.h"

struct gpm__ring;

/* Attaches a ring to @chan for this process; 0 or a negative error. */
int gpm__ring_attach(gpm_chan_t chan);

/* This process's ring of @chan, or NULL (then use hypercalls). */
struct gpm__ring *gpm__ring_find(gpm_chan_t chan);

/* Forgets @chan's ring (after STOP). */
void gpm__ring_detach(gpm_chan_t chan);

/* gpm_write() through @r: @len bytes as messages of at most
 * GPM_HC_MAX_TRANSFER. Returns @len or a negative error. */
ssize_t gpm__ring_write(struct gpm__ring *r, const void *buf, size_t len);

/* One non-blocking read, as gpm_read(): 0 when nothing is there. */
ssize_t gpm__ring_read(struct gpm__ring *r, void *buf, size_t len);

/* One READ hypercall (channel.c), for what was queued before the ring. */
ssize_t gpm__ring_read_queued(gpm_chan_t chan, void *buf, size_t len);

/* Waits until @r has bytes to read, spinning briefly, then sleeping with
 * @b's backoff; returns after about a second at most. */
void gpm__ring_wait(struct gpm__ring *r, struct gpm_backoff *b);

#endif /* GPM_GUEST_RING_H */
