/*
 * channel.c - the manager and its channel table: ids, names, host -> guest
 * queues with their bounds, and reference counting around callbacks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_QUEUE_LIMIT        ((size_t)64 << 20)
#define DEFAULT_TOTAL_LIMIT        ((size_t)256 << 20)
#define DEFAULT_MAX_CHANNELS       4096u
#define DEFAULT_MAX_GUEST_CHANNELS 256u

void gpm__why(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

int gpm_manager_new(const gpm_manager_config_t *cfg, gpm_manager_t **out)
{
    gpm_manager_config_t c = {0};
    gpm_manager_t *m;

    if (out == NULL)
        return GPM_EINVAL;
    *out = NULL;
    if (cfg != NULL)
        c = *cfg;
    if (gpm_arch_info(c.arch) == NULL)
        return GPM_EINVAL;
    /* A limit must leave room for at least one byte and its overhead. */
    if ((c.queue_limit != 0 && c.queue_limit <= GPM__MSG_OVERHEAD) ||
        (c.total_queue_limit != 0 && c.total_queue_limit <= GPM__MSG_OVERHEAD))
        return GPM_EINVAL;
    if (c.queue_limit == 0)
        c.queue_limit = DEFAULT_QUEUE_LIMIT;
    if (c.total_queue_limit == 0)
        c.total_queue_limit = DEFAULT_TOTAL_LIMIT;
    if (c.max_channels == 0)
        c.max_channels = DEFAULT_MAX_CHANNELS;
    if (c.max_guest_channels == 0)
        c.max_guest_channels = DEFAULT_MAX_GUEST_CHANNELS;

    m = g_try_new0(gpm_manager_t, 1);
    if (m == NULL)
        return GPM_ENOMEM;
    g_mutex_init(&m->lock);
    g_mutex_init(&m->ring_lock);
    m->cfg = c;
    m->arch = gpm_arch_info(c.arch);
    m->by_id = g_hash_table_new(g_direct_hash, g_direct_equal);
    m->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    m->next_id = 1;
    m->enforce = true;
    m->guest_quota = GPM__DEFAULT_GUEST_QUOTA < c.max_guest_channels
                         ? GPM__DEFAULT_GUEST_QUOTA
                         : c.max_guest_channels;
    m->per_tgid =
        g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    gpm__daemon_init(m);
    *out = m;
    return 0;
}

static void free_messages(gpm__channel_t *ch)
{
    gpm__msg_t *msg;

    while ((msg = g_queue_pop_head(&ch->queue)) != NULL)
        g_free(msg);
}

void gpm__run_stale(GSList *stale)
{
    for (GSList *l = stale; l != NULL; l = l->next) {
        gpm__stale_t *st = l->data;

        if (st->release != NULL)
            st->release(st->opaque);
        g_free(st);
    }
    g_slist_free(stale);
}

void gpm__channel_destroy(gpm__channel_t *ch)
{
    free_messages(ch);
    gpm__run_stale(ch->stale);
    if (ch->release != NULL)
        ch->release(ch->opaque);
    g_free(ch->name);
    g_free(ch);
}

void gpm_manager_free(gpm_manager_t *m)
{
    GHashTableIter it;
    gpm__channel_t *ch;
    GPtrArray *all;

    if (m == NULL)
        return;
    gpm__rings_fini(m);
    /* Destroy channels in id order so release callbacks run predictably. */
    all = g_ptr_array_new();
    g_hash_table_iter_init(&it, m->by_id);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&ch))
        g_ptr_array_add(all, ch);
    for (guint i = 0; i < all->len; i++)
        gpm__channel_destroy(g_ptr_array_index(all, i));
    g_ptr_array_free(all, TRUE);
    g_hash_table_destroy(m->by_id);
    g_hash_table_destroy(m->by_name);
    g_hash_table_destroy(m->per_tgid);
    gpm__daemon_fini(m);
    g_mutex_clear(&m->ring_lock);
    g_mutex_clear(&m->lock);
    g_free(m);
}

gpm_arch_t gpm_manager_arch(const gpm_manager_t *m)
{
    return m->cfg.arch;
}

void gpm_manager_set_event_cb(gpm_manager_t *m, gpm_event_cb cb, void *opaque)
{
    g_mutex_lock(&m->lock);
    m->event_cb = cb;
    m->event_opaque = opaque;
    g_mutex_unlock(&m->lock);
}

int gpm_manager_set_doorbell(gpm_manager_t *m, uint64_t guest_phys,
                             gpm_doorbell_cb ring, void *opaque)
{
    if (m == NULL || (guest_phys & (GPM_DOORBELL_SIZE - 1)) != 0 ||
        (guest_phys != 0 && ring == NULL))
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    m->doorbell_phys = guest_phys;
    m->doorbell_ring = guest_phys != 0 ? ring : NULL;
    m->doorbell_opaque = guest_phys != 0 ? opaque : NULL;
    g_mutex_unlock(&m->lock);
    return 0;
}

void gpm__ring(gpm_manager_t *m, gpm_channel_id_t id)
{
    /*
     * Under the lock, so that once gpm_manager_set_doorbell() withdrew
     * the doorbell no ring is still writing into the page.
     */
    g_mutex_lock(&m->lock);
    if (m->doorbell_ring != NULL)
        m->doorbell_ring(id, m->doorbell_opaque);
    g_mutex_unlock(&m->lock);
}

void gpm__emit(gpm_manager_t *m, const gpm_event_t *ev)
{
    gpm_event_cb cb;
    void *opaque;

    g_mutex_lock(&m->lock);
    cb = m->event_cb;
    opaque = m->event_opaque;
    g_mutex_unlock(&m->lock);
    if (cb != NULL)
        cb(ev, opaque);
}

void gpm_manager_stats(gpm_manager_t *m, gpm_manager_stats_t *out)
{
    g_mutex_lock(&m->lock);
    *out = m->stats;
    out->queued_bytes = 0;
    {
        GHashTableIter it;
        gpm__channel_t *ch;

        g_hash_table_iter_init(&it, m->by_id);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&ch))
            out->queued_bytes += ch->queued;
    }
    out->channels = g_hash_table_size(m->by_id);
    g_mutex_unlock(&m->lock);
}

gpm__channel_t *gpm__channel_get(gpm_manager_t *m, gpm_channel_id_t id)
{
    gpm__channel_t *ch;

    ch = g_hash_table_lookup(m->by_id, GUINT_TO_POINTER(id));
    if (ch == NULL || ch->closed)
        return NULL;
    return ch;
}

gpm__channel_t *gpm__channel_put(gpm_manager_t *m, gpm__channel_t *ch)
{
    (void)m;
    g_assert(ch->refs > 0);
    ch->refs--;
    return ch->refs == 0 ? ch : NULL;
}

static int check_name(const char *name)
{
    size_t len;

    if (name == NULL)
        return 0;
    len = strlen(name);
    if (len == 0)
        return GPM_EINVAL;
    if (len > GPM_NAME_MAX)
        return GPM_ENAMETOOLONG;
    return 0;
}

int gpm__channel_alloc_locked(gpm_manager_t *m, const char *name,
                              gpm_recv_cb cb, gpm_release_cb release,
                              void *opaque, bool guest_made,
                              gpm_channel_id_t *out)
{
    gpm__channel_t *ch;
    int rc;

    rc = check_name(name);
    if (rc != 0)
        return rc;
    if (name != NULL && g_hash_table_contains(m->by_name, name))
        return GPM_EEXIST;
    if (g_hash_table_size(m->by_id) >= m->cfg.max_channels)
        return GPM_ENOSPC;
    if (guest_made && m->guest_channels >= m->cfg.max_guest_channels)
        return GPM_ENOSPC;
    /* Ids are never reused; running out of them is running out of room. */
    if (m->next_id == 0)
        return GPM_ENOSPC;

    ch = g_try_new0(gpm__channel_t, 1);
    if (ch == NULL)
        return GPM_ENOMEM;
    ch->id = m->next_id++;
    ch->name = name != NULL ? g_strdup(name) : NULL;
    ch->recv = cb;
    ch->release = release;
    ch->opaque = opaque;
    ch->refs = 1;
    ch->guest_made = guest_made;
    ch->owner = GPM_OWNER_ANY;
    ch->creator = GPM_TGID_UNKNOWN;
    ch->limit = m->cfg.queue_limit;
    g_queue_init(&ch->queue);
    g_hash_table_insert(m->by_id, GUINT_TO_POINTER(ch->id), ch);
    if (ch->name != NULL)
        g_hash_table_insert(m->by_name, ch->name, ch);
    if (guest_made)
        m->guest_channels++;
    *out = ch->id;
    return 0;
}

int gpm_channel_allocate(gpm_manager_t *m, const char *name, gpm_recv_cb cb,
                         gpm_release_cb release, void *opaque,
                         gpm_channel_id_t *out)
{
    int rc;

    if (m == NULL || out == NULL)
        return GPM_EINVAL;
    *out = GPM_CHANNEL_NONE;
    g_mutex_lock(&m->lock);
    rc = gpm__channel_alloc_locked(m, name, cb, release, opaque, false, out);
    g_mutex_unlock(&m->lock);
    return rc;
}

int gpm_channel_set_callback(gpm_manager_t *m, gpm_channel_id_t id,
                             gpm_recv_cb cb, gpm_release_cb release,
                             void *opaque)
{
    gpm__channel_t *ch;
    gpm_release_cb old_release;
    void *old_opaque;

    if (m == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch == NULL) {
        g_mutex_unlock(&m->lock);
        return GPM_EBADF;
    }
    old_release = ch->release;
    old_opaque = ch->opaque;
    ch->recv = cb;
    ch->release = release;
    ch->opaque = opaque;
    if (ch->refs > 1 && old_release != NULL) {
        /* A receive callback may still be using the old opaque. */
        gpm__stale_t *st = g_new(gpm__stale_t, 1);

        st->release = old_release;
        st->opaque = old_opaque;
        ch->stale = g_slist_prepend(ch->stale, st);
        old_release = NULL;
    }
    g_mutex_unlock(&m->lock);
    if (old_release != NULL)
        old_release(old_opaque);
    return 0;
}

int gpm_channel_set_paused(gpm_manager_t *m, gpm_channel_id_t id, bool paused)
{
    gpm__channel_t *ch;

    if (m == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch != NULL)
        ch->paused = paused;
    g_mutex_unlock(&m->lock);
    return ch == NULL ? GPM_EBADF : 0;
}

int gpm_channel_lookup(gpm_manager_t *m, const char *name,
                       gpm_channel_id_t *out)
{
    gpm__channel_t *ch;

    if (out != NULL)
        *out = GPM_CHANNEL_NONE;
    if (m == NULL || name == NULL || out == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = g_hash_table_lookup(m->by_name, name);
    if (ch != NULL && !ch->closed)
        *out = ch->id;
    g_mutex_unlock(&m->lock);
    return *out == GPM_CHANNEL_NONE ? GPM_ENOENT : 0;
}

int gpm__channel_push_locked(gpm_manager_t *m, gpm__channel_t *ch,
                             const void *buf, size_t len)
{
    gpm__msg_t *msg;
    size_t cost;

    if (len == 0)
        return 0;
    if (len > m->cfg.queue_limit - GPM__MSG_OVERHEAD ||
        len > m->cfg.total_queue_limit - GPM__MSG_OVERHEAD)
        return GPM_EMSGSIZE;
    cost = len + GPM__MSG_OVERHEAD;
    if (len > ch->limit - GPM__MSG_OVERHEAD)
        return GPM_EMSGSIZE;
    if (ch->cost + cost > ch->limit ||
        m->total_cost + cost > m->cfg.total_queue_limit) {
        ch->full = true;
        return GPM_ENOSPC;
    }
    msg = g_try_malloc(sizeof(*msg) + len);
    if (msg == NULL)
        return GPM_ENOMEM;
    msg->len = len;
    memcpy(msg->data, buf, len);
    g_queue_push_tail(&ch->queue, msg);
    ch->queued += len;
    ch->cost += cost;
    m->total_cost += cost;
    return 0;
}

int gpm_channel_write(gpm_manager_t *m, gpm_channel_id_t id, const void *buf,
                      size_t len)
{
    gpm_ring_kick_cb kick = NULL;
    void *kick_opaque = NULL;
    gpm__channel_t *ch;
    int rc;

    if (m == NULL || (buf == NULL && len != 0))
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    rc = ch == NULL ? GPM_EBADF : gpm__channel_push_locked(m, ch, buf, len);
    if (rc == 0 && ch->ring) {
        kick = m->ring_kick;
        kick_opaque = m->ring_kick_opaque;
    }
    g_mutex_unlock(&m->lock);
    /*
     * The doorbell always rings: guest code that waits on it before its
     * first read must learn of the message, ring or not. A ring channel's
     * bytes then reach the guest through the ring thread, kicked here.
     */
    if (rc == 0 && len > 0)
        gpm__ring(m, id);
    if (kick != NULL && len > 0)
        kick(kick_opaque);
    return rc;
}

int gpm__deliver(gpm_manager_t *m, gpm_channel_id_t id, const uint8_t *buf,
                 size_t len)
{
    gpm__channel_t *ch, *dead;
    GSList *stale = NULL;
    gpm_recv_cb recv;
    void *opaque;

    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch == NULL || ch->recv == NULL) {
        g_mutex_unlock(&m->lock);
        return ch == NULL ? GPM_EBADF : GPM_EPIPE;
    }
    ch->refs++;
    recv = ch->recv;
    opaque = ch->opaque;
    g_mutex_unlock(&m->lock);

    recv(id, buf, len, opaque);

    g_mutex_lock(&m->lock);
    dead = gpm__channel_put(m, ch);
    /* The last running callback releases the replaced opaques. */
    if (dead == NULL && ch->refs == 1 && !ch->closed) {
        stale = ch->stale;
        ch->stale = NULL;
    }
    g_mutex_unlock(&m->lock);
    if (dead != NULL)
        gpm__channel_destroy(dead);
    gpm__run_stale(stale);
    return 0;
}

size_t gpm__channel_take_locked(gpm_manager_t *m, gpm__channel_t *ch, size_t n)
{
    gpm__msg_t *head = g_queue_peek_head(&ch->queue);
    size_t avail;

    if (head == NULL)
        return 0;
    avail = head->len - ch->head_off;
    if (n > avail)
        n = avail;
    ch->taken++;
    ch->head_off += n;
    ch->queued -= n;
    if (ch->head_off == head->len) {
        g_queue_pop_head(&ch->queue);
        ch->cost -= head->len + GPM__MSG_OVERHEAD;
        m->total_cost -= head->len + GPM__MSG_OVERHEAD;
        ch->head_off = 0;
        g_free(head);
        if (ch->full && ch->cost <= ch->limit / 2) {
            ch->full = false;
            ch->drained = true;
        }
    }
    return n;
}

void gpm__channel_emit_drained(gpm_manager_t *m, gpm_channel_id_t id)
{
    gpm_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = GPM_EVENT_CHANNEL_DRAINED;
    ev.channel = id;
    ev.pid = -1;
    gpm__emit(m, &ev);
}

int gpm_channel_set_queue_limit(gpm_manager_t *m, gpm_channel_id_t id,
                                size_t limit)
{
    gpm__channel_t *ch;
    bool drained = false;

    if (m == NULL || (limit != 0 && limit <= GPM__MSG_OVERHEAD))
        return GPM_EINVAL;
    if (limit == 0 || limit > m->cfg.queue_limit)
        limit = m->cfg.queue_limit;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch != NULL) {
        ch->limit = limit;
        if (ch->full && ch->cost <= limit / 2) {
            ch->full = false;
            drained = true;
        }
    }
    g_mutex_unlock(&m->lock);
    if (ch == NULL)
        return GPM_EBADF;
    if (drained)
        gpm__channel_emit_drained(m, id);
    return 0;
}

const uint8_t *gpm__channel_peek_locked(gpm__channel_t *ch, size_t *avail)
{
    gpm__msg_t *head = g_queue_peek_head(&ch->queue);

    if (head == NULL) {
        *avail = 0;
        return NULL;
    }
    *avail = head->len - ch->head_off;
    return head->data + ch->head_off;
}

int gpm_channel_read(gpm_manager_t *m, gpm_channel_id_t id, void *buf,
                     size_t cap, size_t *out)
{
    gpm__channel_t *ch;
    const uint8_t *src;
    size_t avail, n;
    bool drained;

    if (out != NULL)
        *out = 0;
    if (m == NULL || out == NULL || (buf == NULL && cap != 0))
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch == NULL) {
        g_mutex_unlock(&m->lock);
        return GPM_EBADF;
    }
    src = gpm__channel_peek_locked(ch, &avail);
    n = avail < cap ? avail : cap;
    if (n > 0) {
        memcpy(buf, src, n);
        gpm__channel_take_locked(m, ch, n);
    }
    drained = ch->drained;
    ch->drained = false;
    g_mutex_unlock(&m->lock);
    *out = n;
    if (drained)
        gpm__channel_emit_drained(m, id);
    return 0;
}

int gpm_channel_pending(gpm_manager_t *m, gpm_channel_id_t id, size_t *bytes,
                        size_t *msgs)
{
    gpm__channel_t *ch;

    if (m == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch != NULL) {
        if (bytes != NULL)
            *bytes = ch->queued;
        if (msgs != NULL)
            *msgs = g_queue_get_length(&ch->queue);
    }
    g_mutex_unlock(&m->lock);
    return ch == NULL ? GPM_EBADF : 0;
}

int gpm_channel_started(gpm_manager_t *m, gpm_channel_id_t id)
{
    gpm__channel_t *ch;
    int rc;

    if (m == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    rc = ch == NULL ? GPM_EBADF : (ch->started ? 1 : 0);
    g_mutex_unlock(&m->lock);
    return rc;
}

void gpm__channel_unlink_locked(gpm_manager_t *m, gpm__channel_t *ch)
{
    ch->closed = true;
    g_hash_table_remove(m->by_id, GUINT_TO_POINTER(ch->id));
    if (ch->name != NULL)
        g_hash_table_remove(m->by_name, ch->name);
    if (ch->guest_made) {
        m->guest_channels--;
        gpm__quota_give_locked(m, ch->creator);
    }
    m->total_cost -= ch->cost;
    ch->cost = 0;
    ch->queued = 0;
    if (m->daemon_id == ch->id)
        m->daemon_id = GPM_CHANNEL_NONE;
}

int gpm_channel_close(gpm_manager_t *m, gpm_channel_id_t id)
{
    gpm__channel_t *ch, *dead;

    if (m == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch == NULL) {
        g_mutex_unlock(&m->lock);
        return GPM_EBADF;
    }
    gpm__channel_unlink_locked(m, ch);
    dead = gpm__channel_put(m, ch);
    g_mutex_unlock(&m->lock);
    if (dead != NULL)
        gpm__channel_destroy(dead);
    return 0;
}
