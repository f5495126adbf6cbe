/*
 * ring_h2g.c - host -> guest records: moving a channel's queue into its
 * ring and acknowledging what the guest consumed (see ring_internal.h).
 *
 * The queue stays the one place host bytes live until the guest has read
 * them: a record written into the ring is only remembered (its length, in
 * order), and its bytes leave the queue when the guest's tail passes it.
 * The guest's tail is hostile: it must move forward, by whole records we
 * wrote, or the ring is shut.
 */
#include "ring_internal.h"

static void fl_push(gpm__ring_slot_t *s, uint32_t len)
{
    s->fl[(s->fl_first + s->fl_count) % GPM__RING_FL_CAP] = len;
    s->fl_count++;
    s->inflight += len;
}

static void fl_pop(gpm__ring_slot_t *s)
{
    s->inflight -= s->fl[s->fl_first];
    s->fl_first = (s->fl_first + 1) % GPM__RING_FL_CAP;
    s->fl_count--;
}

static void fl_forget(gpm__ring_slot_t *s)
{
    s->fl_first = s->fl_count = 0;
    s->inflight = 0;
}

/*
 * Acknowledges the records before the guest's @tail, taking their bytes
 * off @ch's queue (if @ch). False if @tail is not a record boundary
 * between the last acknowledged one and our head.
 */
static bool ack_to(gpm_manager_t *m, gpm__ring_slot_t *s, gpm__channel_t *ch,
                   uint32_t tail)
{
    uint32_t delta = tail - s->h2g_tail;

    if (delta > s->h2g_head - s->h2g_tail || (delta & 7u) != 0)
        return false;
    while (delta > 0) {
        uint32_t len, space;

        if (s->fl_count == 0)
            return false;
        len = s->fl[s->fl_first];
        space = GPM_RING_REC_SPACE(len);
        if (space > delta)
            return false; /* inside a record */
        if (ch != NULL)
            gpm__channel_take_locked(m, ch, len);
        fl_pop(s);
        delta -= space;
        s->h2g_tail += space;
    }
    return true;
}

/* The queued message holding the first byte not yet in the ring. */
static gpm__msg_t *first_unsent(gpm__channel_t *ch, size_t inflight,
                                GList **link, size_t *off)
{
    size_t skip = ch->head_off + inflight;

    for (GList *l = ch->queue.head; l != NULL; l = l->next) {
        gpm__msg_t *msg = l->data;

        if (skip < msg->len) {
            *link = l;
            *off = skip;
            return msg;
        }
        skip -= msg->len;
    }
    return NULL;
}

int gpm__ring_fill_locked(gpm_manager_t *m, unsigned i, gpm__channel_t *ch,
                          gpm__ring_pass_t *ps)
{
    struct gpm__rings *r = m->rings;
    gpm__ring_slot_t *s = &r->slots[i];
    uint8_t *pair = gpm__ring_pair(r, i);
    uint8_t *area = pair + GPM_RING_OFF_H2G_DATA;
    uint32_t tail = gpm__ring_load(pair, GPM_RING_OFF_H2G_TAIL);
    gpm__msg_t *msg;
    GList *link = NULL;
    size_t off = 0;
    int written = 0;

    if (s->fl == NULL) {
        s->fl = g_try_new(uint32_t, GPM__RING_FL_CAP);
        if (s->fl == NULL)
            return 0; /* out of memory: the bytes wait in the queue */
    }
    if (s->h2g_head - tail > GPM_RING_DATA_SIZE || !ack_to(m, s, ch, tail)) {
        gpm__ring_break(r, i, ps, "host->guest tail out of bounds");
        return -1;
    }
    ch->ring_h2g = true;
    msg = first_unsent(ch, s->inflight, &link, &off);
    while (msg != NULL && s->fl_count < GPM__RING_FL_CAP) {
        uint32_t space = GPM_RING_DATA_SIZE - (s->h2g_head - s->h2g_tail);
        size_t avail = msg->len - off;
        uint32_t n =
            avail > GPM_RING_MAX_FRAG ? GPM_RING_MAX_FRAG : (uint32_t)avail;
        uint32_t w[2];

        /* Split only at GPM_RING_MAX_FRAG: wait for room instead. */
        if (GPM_RING_REC_SPACE(n) > space)
            break;
        w[0] = GUINT32_TO_LE(n | (n < avail ? GPM_RING_MORE : 0));
        w[1] = 0;
        gpm__ring_copy(area, s->h2g_head + GPM_RING_REC_HDR, msg->data + off, n,
                       true);
        gpm__ring_copy(area, s->h2g_head, (uint8_t *)w, sizeof(w), true);
        s->h2g_head += GPM_RING_REC_SPACE(n);
        fl_push(s, n);
        m->stats.ring_msgs_to_guest++;
        m->stats.ring_bytes_to_guest += n;
        written++;
        off += n;
        if (off == msg->len) {
            link = link->next;
            msg = link != NULL ? link->data : NULL;
            off = 0;
        }
    }
    if (written > 0) {
        gpm__ring_store(pair, GPM_RING_OFF_H2G_HEAD, s->h2g_head);
        g_array_append_val(ps->rung, ch->id);
    }
    if (ch->drained) {
        ch->drained = false;
        g_array_append_val(ps->drained, ch->id);
    }
    return written;
}

void gpm__ring_retire_locked(gpm_manager_t *m, unsigned i, gpm__channel_t *ch)
{
    struct gpm__rings *r = m->rings;
    gpm__ring_slot_t *s = &r->slots[i];
    uint8_t *pair = gpm__ring_pair(r, i);

    if (ch != NULL)
        ch->ring_h2g = false;
    if (s->fl == NULL || s->broken) {
        fl_forget(s);
        return;
    }
    {
        uint32_t tail = gpm__ring_load(pair, GPM_RING_OFF_H2G_TAIL);
        uint32_t part = gpm__ring_load(pair, GPM_RING_OFF_H2G_PART);

        /* What the guest read counts; a bad tail or part counts nothing. */
        if (s->h2g_head - tail <= GPM_RING_DATA_SIZE &&
            ack_to(m, s, ch, tail) && s->fl_count > 0 &&
            part <= s->fl[s->fl_first] && ch != NULL)
            gpm__channel_take_locked(m, ch, part);
    }
    fl_forget(s);
}
