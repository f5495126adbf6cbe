/*
 * ring_internal.h - the ring table shared by ring.c (attach, guest -> host,
 * the service pass) and ring_h2g.c (host -> guest records and their
 * acknowledgement). Not installed.
 */
#ifndef GPM_CORE_RING_INTERNAL_H
#define GPM_CORE_RING_INTERNAL_H

#include <string.h>

#include "gpm/ring_abi.h"
#include "internal.h"

/* Messages one service pass may collect before delivering them. */
#define GPM__RING_PASS_MAX ((size_t)4 << 20)
/* The most host records a ring can hold (each takes at least 16 bytes). */
#define GPM__RING_FL_CAP   (GPM_RING_DATA_SIZE / 16u)

typedef struct gpm__ring_slot {
    gpm_channel_id_t chan; /* GPM_CHANNEL_NONE: free */
    int64_t tgid;          /* the process that attached it */
    uint32_t g2h_tail;     /* the host's own indices */
    uint32_t h2g_head;
    uint32_t h2g_tail; /* the guest's last valid tail */
    int32_t status;    /* last status stored, see GPM_RING_OFF_STATUS */
    bool ready;        /* the guest wrote GPM_RING_OFF_READY */
    bool broken;
    uint8_t *asm_buf; /* the guest message being reassembled */
    size_t asm_len;
    /*
     * Host records in the ring that the guest has not consumed yet: their
     * payload lengths, oldest first. Their bytes stay in the channel's
     * queue (counted against its limits) until the guest's tail passes
     * them, so a process that stops or dies loses nothing it did not read.
     */
    uint32_t *fl;
    unsigned fl_first, fl_count;
    size_t inflight; /* sum of those lengths */
} gpm__ring_slot_t;

struct gpm__rings {
    uint64_t phys;
    uint8_t *host;
    unsigned nslots;
    gpm__ring_slot_t slots[];
};

/* A ring shut during a pass, reported once the locks are released. */
typedef struct gpm__ring_shut {
    gpm_channel_id_t chan;
    int64_t tgid;
    const char *why;
} gpm__ring_shut_t;

/* What one service pass collects for after its locks are released. */
typedef struct gpm__ring_pass {
    GArray *out;     /* complete guest messages (ring.c) */
    GArray *rung;    /* channel ids whose rings got host data */
    GArray *drained; /* channel ids due a DRAINED event */
    GArray *shut;    /* gpm__ring_shut_t */
    size_t bytes;    /* in out */
} gpm__ring_pass_t;

static inline uint8_t *gpm__ring_pair(struct gpm__rings *r, unsigned i)
{
    return r->host + (size_t)i * GPM_RING_SLOT_SIZE;
}

/* One load of a guest-written word (little-endian in the ring). */
static inline uint32_t gpm__ring_load(const uint8_t *pair, uint32_t off)
{
    uint32_t v =
        __atomic_load_n((const uint32_t *)(pair + off), __ATOMIC_ACQUIRE);

    return GUINT32_FROM_LE(v);
}

static inline void gpm__ring_store(uint8_t *pair, uint32_t off, uint32_t v)
{
    __atomic_store_n((uint32_t *)(pair + off), GUINT32_TO_LE(v),
                     __ATOMIC_RELEASE);
}

/* Copies @len bytes between a data area at position @pos and @buf. */
static inline void gpm__ring_copy(uint8_t *area, uint32_t pos, uint8_t *buf,
                                  size_t len, bool into_ring)
{
    size_t at = pos % GPM_RING_DATA_SIZE;
    size_t first = GPM_RING_DATA_SIZE - at;

    if (first > len)
        first = len;
    if (into_ring) {
        memcpy(area + at, buf, first);
        memcpy(area, buf + first, len - first);
    } else {
        memcpy(buf, area + at, first);
        memcpy(buf + first, area, len - first);
    }
}

/* Shuts slot @i for breaking the rules; reported after the pass. */
void gpm__ring_break(struct gpm__rings *r, unsigned i, gpm__ring_pass_t *ps,
                     const char *why);

/*
 * ring_h2g.c; the manager's lock held. fill: takes the guest's progress
 * (acknowledging what it consumed) and writes more of @ch's queue into
 * slot @i; returns the records written, or -1 if the ring broke. retire:
 * before the slot is freed or started afresh, acknowledges what the
 * guest consumed (with its GPM_RING_OFF_H2G_PART) and forgets the rest,
 * which stays queued; @ch may be NULL (the channel is gone).
 */
int gpm__ring_fill_locked(gpm_manager_t *m, unsigned i, gpm__channel_t *ch,
                          gpm__ring_pass_t *ps);
void gpm__ring_retire_locked(gpm_manager_t *m, unsigned i, gpm__channel_t *ch);

#endif /* GPM_CORE_RING_INTERNAL_H */
