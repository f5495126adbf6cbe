/*
 * internal.h - structures shared by the core's files. Not installed.
 */
#ifndef GPM_CORE_INTERNAL_H
#define GPM_CORE_INTERNAL_H

#include <glib.h>

#include "gpm/gpm.h"

/* What one queued message costs against the limits beyond its bytes. */
#define GPM__MSG_OVERHEAD 32u

/* The longest reply payload the daemon sends (FAILED: 8 + 512 bytes). */
#define GPM__DREPLY_MAX          GPM_DFRAME_MAX_REPLY
/* The daemon channel's receive bound: one header and the longest reply. */
#define GPM__DRX_CAP             (16u + GPM__DREPLY_MAX)
/* Anonymous channels one guest process may hold by default. */
#define GPM__DEFAULT_GUEST_QUOTA 32u

typedef struct gpm__msg {
    size_t len;
    uint8_t data[];
} gpm__msg_t;

typedef struct gpm__channel {
    gpm_channel_id_t id;
    char *name; /* NULL for an anonymous channel */
    gpm_recv_cb recv;
    gpm_release_cb release;
    void *opaque;
    GQueue queue;    /* gpm__msg_t *, host -> guest, oldest first */
    size_t head_off; /* bytes of the head message already read */
    size_t queued;   /* payload bytes still queued */
    size_t cost;     /* queued bytes plus per-message overhead */
    unsigned refs;   /* one for the table, one per running callback */
    bool closed;
    bool started;
    bool guest_made;    /* allocated by the guest's GET_MANAGER */
    bool paused;        /* guest writes get GPM_HC_EBUSY */
    uint64_t taken;     /* bumps on every consumption, see op_read() */
    int64_t owner;      /* GPM_OWNER_* or a tgid, see gpm/manager.h */
    int64_t prev_owner; /* refused while owner is PENDING; 0 if none */
    int64_t creator;    /* tgid that made an anonymous channel, or -1 */
    size_t limit;       /* host -> guest queue limit, <= cfg.queue_limit */
    bool full;          /* a write got GPM_ENOSPC since the last drain */
    bool drained;       /* GPM_EVENT_CHANNEL_DRAINED is due */
    bool ring;          /* has a ring pair (ring.c): kick on writes */
    bool ring_h2g;      /* host bytes go through it: READ is refused */
    /* Replaced (release, opaque) pairs waiting for running callbacks. */
    GSList *stale;
} gpm__channel_t;

/* A replaced callback's release, deferred while the old one may run. */
typedef struct gpm__stale {
    gpm_release_cb release;
    void *opaque;
} gpm__stale_t;

/* Runs and frees a list of gpm__stale_t; the lock must NOT be held. */
void gpm__run_stale(GSList *stale);

struct gpm_manager {
    GMutex lock;
    gpm_manager_config_t cfg;
    const gpm_arch_info_t *arch;
    GHashTable *by_id;   /* id -> gpm__channel_t * (owns the table ref) */
    GHashTable *by_name; /* name -> gpm__channel_t * (borrowed) */
    gpm_channel_id_t next_id;
    unsigned guest_channels;
    size_t total_cost;
    gpm_event_cb event_cb;
    void *event_opaque;
    uint64_t doorbell_phys; /* 0: no doorbell */
    gpm_doorbell_cb doorbell_ring;
    void *doorbell_opaque;
    gpm_manager_stats_t stats;
    /* The shared-memory rings (ring.c); ring_lock is taken before lock. */
    GMutex ring_lock;
    struct gpm__rings *rings; /* under both locks; NULL: no rings */
    gpm_ring_kick_cb ring_kick;
    void *ring_kick_opaque;
    /* The link to the guest daemon (daemon_link.c). */
    gpm_channel_id_t daemon_id;
    uint32_t next_seq;
    GHashTable *loads;        /* seq -> gpm__load_t *, loads awaiting a reply */
    uint8_t rx[GPM__DRX_CAP]; /* partial frame from the daemon */
    size_t rx_len;
    int64_t rx_t0;          /* monotonic us when the partial frame began */
    uint64_t proto_pending; /* protocol errors not reported yet */
    int64_t proto_last;     /* monotonic us of the last report, or 0 */
    char proto_first[96];   /* the first unreported error */
    int64_t probe_last;     /* monotonic us of the last PROBE queued */
    /* Ownership (owner.c). */
    bool enforce;
    unsigned guest_quota; /* anonymous channels per process */
    GHashTable *per_tgid; /* tgid -> anonymous channels it holds */
};

/* A load waiting for STARTED or FAILED. */
typedef struct gpm__load {
    gpm_channel_id_t channel;
    char name[GPM_NAME_MAX + 1];
} gpm__load_t;

/*
 * Whether process @tgid may use @ch: 0, GPM_HC_EBUSY (owner pending) or
 * GPM_HC_EACCES. Counts nothing; lock held.
 */
int64_t gpm__owner_check_locked(gpm_manager_t *m, gpm__channel_t *ch,
                                int64_t tgid);

/* Counts a new anonymous channel of @tgid, or refuses it; lock held. */
int gpm__quota_take_locked(gpm_manager_t *m, int64_t tgid);

/*
 * Queues a PROBE for the processes holding anonymous channels, at most one
 * a second; returns true if the caller must ring the daemon channel's
 * doorbell after unlocking. Lock held.
 */
bool gpm__daemon_probe_locked(gpm_manager_t *m);

/* Gives back what gpm__quota_take_locked() counted; lock held. */
void gpm__quota_give_locked(gpm_manager_t *m, int64_t tgid);

/* Marks @tgid gone; returns destroyed channels to free unlocked. */
GSList *gpm__process_gone_locked(gpm_manager_t *m, int64_t tgid,
                                 unsigned *count);

/*
 * Lookup and reference counting; the lock must be held. channel_get
 * returns NULL for unknown or closed ids. gpm__channel_put drops a
 * reference and returns the channel when it must be destroyed, which the
 * caller then does with gpm__channel_destroy() after unlocking.
 */
gpm__channel_t *gpm__channel_get(gpm_manager_t *m, gpm_channel_id_t id);
gpm__channel_t *gpm__channel_put(gpm_manager_t *m, gpm__channel_t *ch);
void gpm__channel_destroy(gpm__channel_t *ch);

/* Allocates a channel; the lock must be held. Same codes as the API. */
int gpm__channel_alloc_locked(gpm_manager_t *m, const char *name,
                              gpm_recv_cb cb, gpm_release_cb release,
                              void *opaque, bool guest_made,
                              gpm_channel_id_t *out);

/* Queues a copy of a message; the lock must be held. */
int gpm__channel_push_locked(gpm_manager_t *m, gpm__channel_t *ch,
                             const void *buf, size_t len);

/*
 * The unread part of the head message (NULL and 0 if the queue is empty),
 * and consuming @n bytes of it (returns the count taken); lock held.
 */
const uint8_t *gpm__channel_peek_locked(gpm__channel_t *ch, size_t *avail);
size_t gpm__channel_take_locked(gpm_manager_t *m, gpm__channel_t *ch, size_t n);
/*
 * Emits GPM_EVENT_CHANNEL_DRAINED for @id; the lock must NOT be held.
 * Callers of gpm__channel_take_locked() check and clear ch->drained under
 * the lock, then call this after unlocking.
 */
void gpm__channel_emit_drained(gpm_manager_t *m, gpm_channel_id_t id);

/* Removes @ch from the tables; the caller then puts the table reference. */
void gpm__channel_unlink_locked(gpm_manager_t *m, gpm__channel_t *ch);

/*
 * Hands @buf (@len bytes, owned by the caller) to channel @id's receive
 * callback as one message, holding a reference around the call. Returns
 * 0, GPM_EBADF (no such channel) or GPM_EPIPE (no receiver). The lock must
 * NOT be held.
 */
int gpm__deliver(gpm_manager_t *m, gpm_channel_id_t id, const uint8_t *buf,
                 size_t len);

/*
 * GPM_HC_OP_RING_ATTACH for process @tgid: the guest-physical address of
 * @id's ring pair or a GPM_HC_E* result (ring.c). @word_mask: the guest's
 * word. No lock held.
 */
int64_t gpm__ring_attach(gpm_manager_t *m, gpm_channel_id_t id, int64_t tgid,
                         uint64_t word_mask);

/*
 * STOP of @id: the host bytes its process read are taken off the queue,
 * the rest stays for the next reader, READ works again at once. No lock
 * held.
 */
void gpm__ring_stop(gpm_manager_t *m, gpm_channel_id_t id);

/* Frees the ring table at manager teardown; no other call runs. */
void gpm__rings_fini(gpm_manager_t *m);

/* Rings @id's doorbell, if there is one; takes the lock itself. */
void gpm__ring(gpm_manager_t *m, gpm_channel_id_t id);

/* Calls the event callback, if any; the lock must NOT be held. */
void gpm__emit(gpm_manager_t *m, const gpm_event_t *ev);

/* Initialises and frees the daemon link's part of the manager. */
void gpm__daemon_init(gpm_manager_t *m);
void gpm__daemon_fini(gpm_manager_t *m);

/* Writes a daemon frame header (little-endian) into @p. */
void gpm__dframe_put_hdr(uint8_t *p, uint16_t type, uint32_t seq, uint32_t len);

/* Writes a NUL-terminated printf-style explanation if @why is not NULL. */
void gpm__why(char *why, size_t why_len, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

#endif /* GPM_CORE_INTERNAL_H */
