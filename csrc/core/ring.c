/*
 * ring.c - the host side of the shared-memory channel rings (layout in
 * gpm/ring_abi.h, design in docs/rings.md).
 *
 * The guest writes into memory the host reads without a stop, so every word
 * read from a ring is hostile: each is loaded once into a local, checked
 * against the ring's bounds, and only then used; positions are always taken
 * modulo the data size, so nothing read from the guest can address outside
 * its own pair. The host keeps the indices it writes in its own memory and
 * only stores them to the ring. A ring that breaks a rule is shut (status
 * GPM_HC_EPROTO and a GPM_EVENT_GUEST_ERROR on its channel); the channel
 * itself and every other ring go on.
 *
 * Threads: gpm__ring_attach() runs on the hypercall thread, the service pass
 * on the host's ring thread. ring_lock serialises them; it is taken before
 * the manager's lock and never held across a receive callback.
 */
#include "ring_internal.h"

/* A complete guest message waiting for its callback. */
typedef struct pending {
    gpm_channel_id_t chan;
    size_t len;
    uint8_t *buf;
} pending_t;

static void set_status(struct gpm__rings *r, unsigned i, int32_t status)
{
    gpm__ring_slot_t *s = &r->slots[i];

    if (s->status != status) {
        s->status = status;
        gpm__ring_store(gpm__ring_pair(r, i), GPM_RING_OFF_STATUS,
                        (uint32_t)status);
    }
}

static void slot_reset(gpm__ring_slot_t *s)
{
    g_free(s->asm_buf);
    g_free(s->fl);
    memset(s, 0, sizeof(*s));
}

/* Frees slot @i; the guest sees @status (its channel is gone). */
static void slot_free(gpm_manager_t *m, unsigned i, int32_t status)
{
    struct gpm__rings *r = m->rings;

    set_status(r, i, status);
    slot_reset(&r->slots[i]);
    g_mutex_lock(&m->lock);
    m->stats.rings_attached--;
    g_mutex_unlock(&m->lock);
}

int gpm_manager_set_rings(gpm_manager_t *m, uint64_t guest_phys, size_t size,
                          void *host, gpm_ring_kick_cb kick, void *opaque)
{
    struct gpm__rings *r = NULL, *old;
    unsigned n = 0;

    if (m == NULL || (guest_phys & 4095u) != 0)
        return GPM_EINVAL;
    if (guest_phys != 0) {
        n = (unsigned)(size / GPM_RING_SLOT_SIZE);
        if (host == NULL || n == 0)
            return GPM_EINVAL;
        r = g_try_malloc0(sizeof(*r) + n * sizeof(gpm__ring_slot_t));
        if (r == NULL)
            return GPM_ENOMEM;
        r->phys = guest_phys;
        r->host = host;
        r->nslots = n;
    }
    g_mutex_lock(&m->ring_lock);
    g_mutex_lock(&m->lock);
    old = m->rings;
    m->rings = r;
    m->ring_kick = r != NULL ? kick : NULL;
    m->ring_kick_opaque = r != NULL ? opaque : NULL;
    m->stats.rings_attached = 0;
    {
        GHashTableIter it;
        gpm__channel_t *ch;

        g_hash_table_iter_init(&it, m->by_id);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&ch))
            ch->ring = ch->ring_h2g = false;
    }
    g_mutex_unlock(&m->lock);
    g_mutex_unlock(&m->ring_lock);
    if (old != NULL) {
        for (unsigned i = 0; i < old->nslots; i++) {
            g_free(old->slots[i].asm_buf);
            g_free(old->slots[i].fl);
        }
        g_free(old);
    }
    return 0;
}

void gpm__rings_fini(gpm_manager_t *m)
{
    gpm_manager_set_rings(m, 0, 0, NULL, NULL, NULL);
}

/* Writes a fresh header for channel @id into slot @i. */
static void slot_init(struct gpm__rings *r, unsigned i, gpm_channel_id_t id,
                      int64_t tgid)
{
    uint8_t *pair = gpm__ring_pair(r, i);
    gpm__ring_slot_t *s = &r->slots[i];

    slot_reset(s);
    s->chan = id;
    s->tgid = tgid;
    gpm__ring_store(pair, GPM_RING_OFF_MAGIC, 0);
    memset(pair + 4, 0, GPM_RING_HDR_SIZE - 4);
    gpm__ring_store(pair, GPM_RING_OFF_VERSION, GPM_RING_VERSION);
    gpm__ring_store(pair, GPM_RING_OFF_CHANNEL, id);
    gpm__ring_store(pair, GPM_RING_OFF_DATASIZE, GPM_RING_DATA_SIZE);
    gpm__ring_store(pair, GPM_RING_OFF_MAXFRAG, GPM_RING_MAX_FRAG);
    /* Last, with release: a guest that sees the magic sees the rest. */
    gpm__ring_store(pair, GPM_RING_OFF_MAGIC, GPM_RING_MAGIC);
}

/* The slot to give @id: its own, else a free one; -1 if none. */
static int pick_slot(struct gpm__rings *r, gpm_channel_id_t id, int64_t tgid)
{
    unsigned mine = 0;
    int free_slot = -1;

    for (unsigned i = 0; i < r->nslots; i++) {
        if (r->slots[i].chan == id)
            return (int)i;
        if (r->slots[i].chan == GPM_CHANNEL_NONE && free_slot < 0)
            free_slot = (int)i;
        if (tgid > 0 && r->slots[i].chan != GPM_CHANNEL_NONE &&
            r->slots[i].tgid == tgid)
            mine++;
    }
    /* One process may hold at most half the pairs (one if there is one). */
    if (tgid > 0 && mine >= (r->nslots + 1) / 2)
        return -1;
    return free_slot;
}

int64_t gpm__ring_attach(gpm_manager_t *m, gpm_channel_id_t id, int64_t tgid,
                         uint64_t word_mask)
{
    gpm__channel_t *ch;
    struct gpm__rings *r;
    uint64_t phys = 0;
    gpm_ring_kick_cb kick = NULL;
    void *kick_opaque = NULL;
    int64_t err = 0;
    bool fresh = false;
    int i = -1;

    g_mutex_lock(&m->ring_lock);
    g_mutex_lock(&m->lock);
    r = m->rings;
    ch = gpm__channel_get(m, id);
    if (ch == NULL) {
        err = GPM_HC_EBADF;
    } else if ((err = gpm__owner_check_locked(m, ch, tgid)) != 0) {
        if (err == GPM_HC_EACCES)
            m->stats.refused++;
    } else if (r == NULL) {
        err = GPM_HC_ENOSYS;
    } else if (ch->recv == NULL) {
        err = GPM_HC_EPIPE;
    } else {
        i = pick_slot(r, id, tgid);
        phys = i < 0 ? 0 : r->phys + (uint64_t)i * GPM_RING_SLOT_SIZE;
        if (i < 0)
            err = GPM_HC_ENOSPC;
        else if (phys > word_mask - GPM_RING_SLOT_SIZE)
            err = GPM_HC_ENOSYS; /* the guest's word cannot reach it */
        if (err == 0) {
            fresh = r->slots[i].chan == GPM_CHANNEL_NONE;
            if (!fresh)
                gpm__ring_retire_locked(m, (unsigned)i, ch);
            ch->ring = true;
            if (fresh)
                m->stats.rings_attached++;
            kick = m->ring_kick;
            kick_opaque = m->ring_kick_opaque;
        }
    }
    g_mutex_unlock(&m->lock);
    /* A second attach (a new process of the channel) starts it afresh. */
    if (err == 0)
        slot_init(r, (unsigned)i, id, tgid);
    g_mutex_unlock(&m->ring_lock);
    if (err != 0)
        return err;
    /* Messages queued before the attach move into the ring. */
    if (kick != NULL)
        kick(kick_opaque);
    return (int64_t)phys;
}

void gpm__ring_stop(gpm_manager_t *m, gpm_channel_id_t id)
{
    gpm__channel_t *ch;

    g_mutex_lock(&m->ring_lock);
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (m->rings != NULL && ch != NULL && ch->ring) {
        for (unsigned i = 0; i < m->rings->nslots; i++) {
            if (m->rings->slots[i].chan == id)
                gpm__ring_retire_locked(m, i, ch);
        }
        /* The next pass takes the guest's last records and frees it. */
        ch->ring = false;
    }
    g_mutex_unlock(&m->lock);
    g_mutex_unlock(&m->ring_lock);
}

/* Shuts slot @i for breaking the rules; reported after the pass. */
void gpm__ring_break(struct gpm__rings *r, unsigned i, gpm__ring_pass_t *ps,
                     const char *why)
{
    gpm__ring_slot_t *s = &r->slots[i];
    gpm__ring_shut_t sh;

    if (s->broken)
        return;
    s->broken = true;
    g_free(s->asm_buf);
    s->asm_buf = NULL;
    s->asm_len = 0;
    set_status(r, i, GPM_HC_EPROTO);
    sh.chan = s->chan;
    sh.tgid = s->tgid;
    sh.why = why;
    g_array_append_val(ps->shut, sh);
}

/*
 * Takes the guest's records out of slot @i, adding complete messages to
 * @out. Returns the records taken, or -1 if the ring broke.
 */
static int take_g2h(struct gpm__rings *r, unsigned i, gpm__ring_pass_t *ps)
{
    gpm__ring_slot_t *s = &r->slots[i];
    uint8_t *pair = gpm__ring_pair(r, i);
    const uint8_t *area = pair + GPM_RING_OFF_G2H_DATA;
    uint32_t head = gpm__ring_load(pair, GPM_RING_OFF_G2H_HEAD);
    uint32_t avail = head - s->g2h_tail;
    int taken = 0;

    if (avail > GPM_RING_DATA_SIZE || (avail & 7u) != 0) {
        gpm__ring_break(r, i, ps, "guest->host head out of bounds");
        return -1;
    }
    while (avail >= GPM_RING_REC_HDR && ps->bytes < GPM__RING_PASS_MAX) {
        uint8_t hdr[GPM_RING_REC_HDR];
        uint32_t w0, w1, len, space;
        pending_t p;

        gpm__ring_copy((uint8_t *)area, s->g2h_tail, hdr, sizeof(hdr), false);
        memcpy(&w0, hdr, 4);
        memcpy(&w1, hdr + 4, 4);
        w0 = GUINT32_FROM_LE(w0);
        len = w0 & GPM_RING_LEN_MASK;
        space = GPM_RING_REC_SPACE(len);
        if (w1 != 0 || (w0 & ~(GPM_RING_LEN_MASK | GPM_RING_MORE)) != 0 ||
            len > GPM_RING_MAX_FRAG || space > avail ||
            s->asm_len + len > GPM_HC_MAX_TRANSFER) {
            gpm__ring_break(r, i, ps, "bad record header");
            return -1;
        }
        if (len > 0) {
            uint8_t *grown = g_try_realloc(s->asm_buf, s->asm_len + len);

            if (grown == NULL)
                break; /* out of memory: the record waits */
            s->asm_buf = grown;
            gpm__ring_copy((uint8_t *)area, s->g2h_tail + GPM_RING_REC_HDR,
                           s->asm_buf + s->asm_len, len, false);
            s->asm_len += len;
        }
        s->g2h_tail += space;
        avail -= space;
        taken++;
        if ((w0 & GPM_RING_MORE) != 0 || s->asm_len == 0)
            continue; /* more to come; an empty message is nothing */
        p.chan = s->chan;
        p.len = s->asm_len;
        p.buf = s->asm_buf;
        g_array_append_val(ps->out, p);
        ps->bytes += p.len;
        s->asm_buf = NULL;
        s->asm_len = 0;
    }
    if (taken > 0)
        gpm__ring_store(pair, GPM_RING_OFF_G2H_TAIL, s->g2h_tail);
    return taken;
}

/* One slot's share of a pass; ring_lock held. */
static int serve_slot(gpm_manager_t *m, unsigned i, gpm__ring_pass_t *ps)
{
    gpm__ring_slot_t *s = &m->rings->slots[i];
    gpm_channel_id_t id = s->chan;
    gpm__channel_t *ch;
    bool paused, has_recv, gone;
    int moved = 0, n;

    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    gone = ch == NULL || !ch->ring || ch->owner == GPM_OWNER_NONE;
    paused = ch != NULL && ch->paused;
    has_recv = ch != NULL && ch->recv != NULL;
    if (gone) {
        if (ch != NULL)
            ch->ring = false;
        /* What the guest did not read stays queued for the next reader. */
        gpm__ring_retire_locked(m, i, ch);
    }
    g_mutex_unlock(&m->lock);
    if (gone) {
        /* Stopped, or its process ended: what it wrote still counts. */
        if (ch != NULL && has_recv && !s->broken)
            moved = take_g2h(m->rings, i, ps);
        slot_free(m, i, GPM_HC_EBADF);
        return moved > 0 ? moved : 0;
    }
    if (s->broken)
        return 0;
    set_status(m->rings, i, has_recv ? 0 : GPM_HC_EPIPE);
    /* A paused channel (or one without a receiver) leaves its records. */
    if (!paused && has_recv) {
        n = take_g2h(m->rings, i, ps);
        if (n < 0) {
            g_mutex_lock(&m->lock);
            gpm__ring_retire_locked(m, i, gpm__channel_get(m, id));
            g_mutex_unlock(&m->lock);
            return 0;
        }
        moved += n;
    }
    /* Host bytes stay queued until the guest reads through the ring. */
    if (!s->ready)
        s->ready = gpm__ring_load(gpm__ring_pair(m->rings, i),
                                  GPM_RING_OFF_READY) == GPM_RING_MAGIC;
    if (!s->ready)
        return moved;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    n = ch == NULL || !ch->ring ? 0 : gpm__ring_fill_locked(m, i, ch, ps);
    /* A ring shut now gives its unread bytes back to READ. */
    if (s->broken)
        gpm__ring_retire_locked(m, i, ch);
    g_mutex_unlock(&m->lock);
    return n > 0 ? moved + n : moved;
}

/* Delivers and reports what a pass collected; no lock held. */
static void finish_pass(gpm_manager_t *m, gpm__ring_pass_t *ps)
{
    for (guint k = 0; k < ps->out->len; k++) {
        pending_t *p = &g_array_index(ps->out, pending_t, k);
        int rc;

        __atomic_store_n(&m->stats.ring_delivering, true, __ATOMIC_RELAXED);
        rc = gpm__deliver(m, p->chan, p->buf, p->len);
        __atomic_store_n(&m->stats.ring_delivering, false, __ATOMIC_RELAXED);
        if (rc == 0) {
            g_mutex_lock(&m->lock);
            m->stats.ring_msgs_from_guest++;
            m->stats.ring_bytes_from_guest += p->len;
            g_mutex_unlock(&m->lock);
        }
        g_free(p->buf);
    }
    for (guint k = 0; k < ps->rung->len; k++)
        gpm__ring(m, g_array_index(ps->rung, gpm_channel_id_t, k));
    for (guint k = 0; k < ps->drained->len; k++)
        gpm__channel_emit_drained(
            m, g_array_index(ps->drained, gpm_channel_id_t, k));
    for (guint k = 0; k < ps->shut->len; k++) {
        gpm__ring_shut_t *sh = &g_array_index(ps->shut, gpm__ring_shut_t, k);
        gpm_event_t ev = {0};
        char text[160];

        g_mutex_lock(&m->lock);
        m->stats.ring_broken++;
        g_mutex_unlock(&m->lock);
        g_snprintf(text, sizeof(text), "ring of channel %u shut: %s", sh->chan,
                   sh->why);
        ev.type = GPM_EVENT_GUEST_ERROR;
        ev.channel = sh->chan;
        ev.text = text;
        ev.pid = sh->tgid;
        gpm__emit(m, &ev);
    }
}

int gpm_manager_ring_service(gpm_manager_t *m)
{
    gpm__ring_pass_t ps;
    int moved = 0;

    if (m == NULL)
        return GPM_EINVAL;
    ps.out = g_array_new(FALSE, FALSE, sizeof(pending_t));
    ps.rung = g_array_new(FALSE, FALSE, sizeof(gpm_channel_id_t));
    ps.drained = g_array_new(FALSE, FALSE, sizeof(gpm_channel_id_t));
    ps.shut = g_array_new(FALSE, FALSE, sizeof(gpm__ring_shut_t));
    ps.bytes = 0;
    g_mutex_lock(&m->ring_lock);
    if (m->rings == NULL) {
        moved = GPM_EINVAL;
    } else {
        for (unsigned i = 0; i < m->rings->nslots; i++) {
            if (m->rings->slots[i].chan != GPM_CHANNEL_NONE)
                moved += serve_slot(m, i, &ps);
        }
    }
    g_mutex_unlock(&m->ring_lock);
    /* Callbacks and events run with no lock held, in ring order. */
    finish_pass(m, &ps);
    g_array_free(ps.out, TRUE);
    g_array_free(ps.rung, TRUE);
    g_array_free(ps.drained, TRUE);
    g_array_free(ps.shut, TRUE);
    return moved;
}
