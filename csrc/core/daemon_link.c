/*
 * daemon_link.c - the host end of the guest daemon's framed protocol
 * (gpm/daemon_proto.h): LOAD, PING and PROBE frames out, replies in,
 * replies turned into GPM_EVENT_PLUGIN_* events and channel owners.
 * Only the process that owns the daemon channel reaches this code (see
 * owner.c); the parser is bounded and resynchronises all the same.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void gpm__dframe_put_hdr(uint8_t *p, uint16_t type, uint32_t seq, uint32_t len)
{
    gpm_wire_hdr_put(p, GPM_DFRAME_MAGIC, type, seq, len);
}

void gpm__daemon_init(gpm_manager_t *m)
{
    m->next_seq = 1;
    m->loads =
        g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    m->rx_len = 0;
}

void gpm__daemon_fini(gpm_manager_t *m)
{
    g_hash_table_destroy(m->loads);
}

/* Events are handed out in batches of this many, without the lock. */
#define BATCH            16
/* A partial frame older than this is dropped when more bytes come. */
#define FRAME_TIMEOUT_US (1000 * 1000)
/* At most one PROTOCOL_ERROR event per this long; the rest are counted. */
#define REPORT_PERIOD_US (1000 * 1000)

typedef struct pending_event {
    gpm_event_t ev;
    char name[GPM_NAME_MAX + 1];
    char text[512];
} pending_event_t;

static void set_name(pending_event_t *pe, const uint8_t *p, size_t len)
{
    if (len > GPM_NAME_MAX)
        len = GPM_NAME_MAX;
    memcpy(pe->name, p, len);
    pe->name[len] = '\0';
    pe->ev.name = pe->name;
}

/* The longest payload a reply of @type may have, or 0 if none is valid. */
static uint32_t reply_max(uint16_t type, uint32_t *min)
{
    switch (type) {
    case GPM_DFRAME_HELLO:
        *min = 8;
        return 64;
    case GPM_DFRAME_STARTED:
        *min = 4;
        return 4 + GPM_NAME_MAX;
    case GPM_DFRAME_EXITED:
        *min = 8;
        return 8 + GPM_NAME_MAX;
    case GPM_DFRAME_FAILED:
        *min = 8;
        return GPM__DREPLY_MAX;
    case GPM_DFRAME_GONE:
        *min = 4;
        return 4 * GPM_DPROBE_MAX_PIDS;
    default:
        *min = 0;
        return 0;
    }
}

/* Whether the 16 bytes at @p are a header the daemon could have sent. */
static bool header_ok(const uint8_t *p)
{
    uint32_t min, max = reply_max(gpm_wire_get16(p + 6), &min);
    uint32_t len = gpm_wire_get32(p + 12);

    if (gpm_wire_get16(p + 6) == GPM_DFRAME_GONE && len % 4 != 0)
        return false;
    return gpm_wire_get32(p) == GPM_DFRAME_MAGIC &&
           gpm_wire_get16(p + 4) == GPM_DFRAME_VERSION && len >= min &&
           len <= max;
}

/* Ends the wait of load @seq; its channel gets @owner. Lock held. */
static void finish_load(gpm_manager_t *m, uint32_t seq, int64_t owner,
                        pending_event_t *pe)
{
    gpm__load_t *ld = g_hash_table_lookup(m->loads, GUINT_TO_POINTER(seq));
    gpm__channel_t *ch;

    if (ld == NULL)
        return;
    ch = gpm__channel_get(m, ld->channel);
    if (ch != NULL && ch->owner == GPM_OWNER_PENDING)
        ch->owner = owner;
    if (pe != NULL && pe->ev.name == NULL)
        set_name(pe, (const uint8_t *)ld->name, strlen(ld->name));
    g_hash_table_remove(m->loads, GUINT_TO_POINTER(seq));
}

/*
 * Turns one complete, well-sized reply frame into an event; lock held.
 * Channels freed because a plugin exited go to @dead.
 */
static bool parse_reply(gpm_manager_t *m, const uint8_t *f, pending_event_t *pe,
                        GSList **dead)
{
    uint16_t type = gpm_wire_get16(f + 6);
    uint32_t seq = gpm_wire_get32(f + 8), len = gpm_wire_get32(f + 12);
    const uint8_t *p = f + GPM_DFRAME_HDR_SIZE;
    unsigned count;
    GSList *d;

    memset(pe, 0, sizeof(*pe));
    pe->ev.pid = -1;
    pe->ev.channel = m->daemon_id;
    switch (type) {
    case GPM_DFRAME_GONE:
        /* Processes a PROBE found gone: free what they held. No event. */
        for (uint32_t i = 0; i < len; i += 4) {
            d = gpm__process_gone_locked(m, gpm_wire_get32(p + i), &count);
            *dead = g_slist_concat(d, *dead);
        }
        return false;
    case GPM_DFRAME_HELLO:
        pe->ev.type = GPM_EVENT_DAEMON_READY;
        pe->ev.pid = gpm_wire_get32(p);
        break;
    case GPM_DFRAME_STARTED:
        pe->ev.type = GPM_EVENT_PLUGIN_STARTED;
        pe->ev.pid = gpm_wire_get32(p);
        set_name(pe, p + 4, len - 4);
        /* The plugin's process owns its main channel from now on. */
        finish_load(m, seq, pe->ev.pid > 0 ? pe->ev.pid : GPM_OWNER_ANY, NULL);
        break;
    case GPM_DFRAME_EXITED:
        pe->ev.type = GPM_EVENT_PLUGIN_EXITED;
        pe->ev.pid = gpm_wire_get32(p);
        pe->ev.status = (int32_t)gpm_wire_get32(p + 4);
        set_name(pe, p + 8, len - 8);
        d = gpm__process_gone_locked(m, pe->ev.pid, &count);
        *dead = g_slist_concat(d, *dead);
        break;
    default: /* GPM_DFRAME_FAILED, the only other type header_ok() lets in */
        pe->ev.type = GPM_EVENT_PLUGIN_FAILED;
        pe->ev.err = (int32_t)gpm_wire_get32(p);
        pe->ev.stage = gpm_wire_get32(p + 4);
        len -= 8;
        if (len >= sizeof(pe->text))
            len = sizeof(pe->text) - 1;
        memcpy(pe->text, p + 8, len);
        pe->text[len] = '\0';
        pe->ev.text = pe->text;
        finish_load(m, seq, GPM_OWNER_NONE, pe);
        break;
    }
    return true;
}

static void protocol_error(gpm_manager_t *m, const char *what)
{
    if (m->proto_pending++ == 0)
        snprintf(m->proto_first, sizeof(m->proto_first), "%s", what);
    m->stats.protocol_errors++;
}

/*
 * Feeds bytes to the frame parser until @n events are ready or the input
 * ends; returns how many input bytes were used. Lock held. Each input
 * byte is copied once into the bounded buffer m->rx, and a byte of a bad
 * header is looked at at most 16 times, so the work is linear.
 */
static size_t parse_some(gpm_manager_t *m, const uint8_t *buf, size_t len,
                         pending_event_t *evs, unsigned *n, GSList **dead)
{
    size_t pos = 0;

    while (*n < BATCH) {
        size_t need, take;

        if (m->rx_len == 0) {
            /* Between frames: skip to the next possible magic byte. */
            const uint8_t *q =
                memchr(buf + pos, GPM_DFRAME_MAGIC & 0xff, len - pos);
            size_t skip = q == NULL ? len - pos : (size_t)(q - (buf + pos));

            if (skip > 0)
                protocol_error(m, "bytes outside any frame");
            pos += skip;
            if (pos == len)
                break;
            m->rx_t0 = g_get_monotonic_time();
        }
        if (m->rx_len < GPM_DFRAME_HDR_SIZE) {
            uint8_t *q;

            take = GPM_DFRAME_HDR_SIZE - m->rx_len;
            if (take > len - pos)
                take = len - pos;
            memcpy(m->rx + m->rx_len, buf + pos, take);
            m->rx_len += take;
            pos += take;
            if (m->rx_len < GPM_DFRAME_HDR_SIZE)
                break;
            if (!header_ok(m->rx)) {
                protocol_error(m, "malformed frame header");
                /* Resynchronise: look for a magic inside the bad header. */
                q = memchr(m->rx + 1, GPM_DFRAME_MAGIC & 0xff, m->rx_len - 1);
                m->rx_len = q == NULL ? 0 : m->rx_len - (size_t)(q - m->rx);
                if (q != NULL)
                    memmove(m->rx, q, m->rx_len);
                continue;
            }
        }
        need = GPM_DFRAME_HDR_SIZE + (size_t)gpm_wire_get32(m->rx + 12);
        take = need - m->rx_len;
        if (take > len - pos)
            take = len - pos;
        memcpy(m->rx + m->rx_len, buf + pos, take);
        m->rx_len += take;
        pos += take;
        if (m->rx_len < need)
            break;
        if (parse_reply(m, m->rx, &evs[*n], dead))
            (*n)++;
        m->rx_len = 0;
    }
    return pos;
}
/*
 * A PROTOCOL_ERROR event for the errors counted since the last one, at
 * most one per REPORT_PERIOD_US; false if none is due. Lock held.
 */
static bool take_report(gpm_manager_t *m, gpm_channel_id_t id,
                        pending_event_t *pe)
{
    int64_t now = g_get_monotonic_time();

    if (m->proto_pending == 0 ||
        (m->proto_last != 0 && now - m->proto_last < REPORT_PERIOD_US))
        return false;
    memset(pe, 0, sizeof(*pe));
    pe->ev.type = GPM_EVENT_PROTOCOL_ERROR;
    pe->ev.channel = id;
    pe->ev.pid = -1;
    if (m->proto_pending == 1)
        snprintf(pe->text, sizeof(pe->text), "guest daemon: %s",
                 m->proto_first);
    else
        snprintf(pe->text, sizeof(pe->text),
                 "guest daemon: %" G_GUINT64_FORMAT
                 " protocol errors, the first: %s",
                 m->proto_pending, m->proto_first);
    pe->ev.text = pe->text;
    m->proto_pending = 0;
    m->proto_last = now;
    return true;
}

/* Drops a stale partial frame, rescanning it for a frame inside. Lock held. */
static void expire_partial(gpm_manager_t *m, pending_event_t *evs, unsigned *n,
                           GSList **dead)
{
    uint8_t old[GPM__DRX_CAP];
    size_t len = m->rx_len;

    if (len == 0 || g_get_monotonic_time() - m->rx_t0 < FRAME_TIMEOUT_US)
        return;
    protocol_error(m, "a frame did not complete in time");
    memcpy(old, m->rx + 1, len - 1);
    m->rx_len = 0;
    /* At most GPM__DRX_CAP bytes; what does not fit a batch is dropped. */
    parse_some(m, old, len - 1, evs, n, dead);
}

/*
 * Receives the daemon's bytes. Frames may arrive split or several at once.
 * Memory is bounded by m->rx (one header and the longest reply); a bad
 * header is skipped byte by byte to the next magic value, and a frame
 * that has not completed FRAME_TIMEOUT_US after it began is dropped when
 * more bytes arrive, so the link always resynchronises.
 */
static void daemon_recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                           void *opaque)
{
    gpm_manager_t *m = opaque;
    pending_event_t *evs = g_new(pending_event_t, BATCH + 1);
    size_t pos = 0;
    bool first = true;

    while (first || pos < len) {
        GSList *dead = NULL;
        unsigned n = 0;

        g_mutex_lock(&m->lock);
        if (first)
            expire_partial(m, evs, &n, &dead);
        first = false;
        pos += parse_some(m, buf + pos, len - pos, evs, &n, &dead);
        if (pos == len && take_report(m, id, &evs[n]))
            n++;
        g_mutex_unlock(&m->lock);
        for (unsigned i = 0; i < n; i++)
            gpm__emit(m, &evs[i].ev);
        for (GSList *l = dead; l != NULL; l = l->next)
            gpm__channel_destroy(l->data);
        g_slist_free(dead);
    }
    g_free(evs);
}

/* The daemon channel's id, created on first use; lock held. */
static int daemon_channel_locked(gpm_manager_t *m, gpm__channel_t **out)
{
    gpm_channel_id_t id = m->daemon_id;
    int rc;

    if (id == GPM_CHANNEL_NONE) {
        rc = gpm__channel_alloc_locked(m, GPM_DAEMON_CHANNEL, daemon_recv_cb,
                                       NULL, m, false, &id);
        if (rc != 0)
            return rc;
        m->daemon_id = id;
        /* Nobody's until the host names the daemon (gpm_daemon_reset). */
        gpm__channel_get(m, id)->owner = GPM_OWNER_PENDING;
    }
    *out = gpm__channel_get(m, id);
    return 0;
}

int gpm_daemon_channel(gpm_manager_t *m, gpm_channel_id_t *out)
{
    gpm__channel_t *ch;
    int rc;

    if (m == NULL || out == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    rc = daemon_channel_locked(m, &ch);
    *out = rc == 0 ? ch->id : GPM_CHANNEL_NONE;
    g_mutex_unlock(&m->lock);
    return rc;
}

int gpm_daemon_reset(gpm_manager_t *m, int64_t owner)
{
    gpm__channel_t *ch;
    GHashTableIter it;
    gpm__load_t *ld;
    GPtrArray *failed;
    gpm__msg_t *msg;
    int rc;

    if (m == NULL ||
        (owner <= 0 && owner != GPM_OWNER_PENDING && owner != GPM_OWNER_ANY))
        return GPM_EINVAL;
    failed = g_ptr_array_new_with_free_func(g_free);
    g_mutex_lock(&m->lock);
    rc = daemon_channel_locked(m, &ch);
    if (rc != 0) {
        g_mutex_unlock(&m->lock);
        g_ptr_array_free(failed, TRUE);
        return rc;
    }
    /* Nothing meant for the old daemon may reach its successor. */
    while ((msg = g_queue_pop_head(&ch->queue)) != NULL) {
        ch->cost -= msg->len + GPM__MSG_OVERHEAD;
        m->total_cost -= msg->len + GPM__MSG_OVERHEAD;
        g_free(msg);
    }
    ch->queued = 0;
    ch->head_off = 0;
    ch->taken++;
    if (ch->owner > 0)
        ch->prev_owner = ch->owner;
    ch->owner = owner;
    m->rx_len = 0;
    g_hash_table_iter_init(&it, m->loads);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&ld)) {
        gpm__channel_t *pc = gpm__channel_get(m, ld->channel);

        if (pc != NULL && pc->owner == GPM_OWNER_PENDING)
            pc->owner = GPM_OWNER_NONE;
        g_ptr_array_add(failed, g_memdup2(ld, sizeof(*ld)));
        g_hash_table_iter_remove(&it);
    }
    g_mutex_unlock(&m->lock);
    for (guint i = 0; i < failed->len; i++) {
        gpm__load_t *f = g_ptr_array_index(failed, i);
        gpm_event_t ev = {0};

        ev.type = GPM_EVENT_PLUGIN_FAILED;
        ev.channel = f->channel;
        ev.name = f->name;
        ev.text = "the guest daemon was lost before it answered";
        ev.pid = -1;
        ev.err = ECONNRESET;
        ev.stage = GPM_DSTAGE_LOST;
        gpm__emit(m, &ev);
    }
    rc = (int)failed->len;
    g_ptr_array_free(failed, TRUE);
    return rc;
}

/* At most one PROBE per this long. */
#define PROBE_PERIOD_US (1000 * 1000)

bool gpm__daemon_probe_locked(gpm_manager_t *m)
{
    uint8_t f[GPM_DFRAME_HDR_SIZE + 4 * GPM_DPROBE_MAX_PIDS];
    gpm__channel_t *ch = gpm__channel_get(m, m->daemon_id);
    int64_t now = g_get_monotonic_time();
    GHashTableIter it;
    int64_t *tgid;
    uint32_t n = 0;

    if (ch == NULL || g_hash_table_size(m->per_tgid) == 0 ||
        (m->probe_last != 0 && now - m->probe_last < PROBE_PERIOD_US))
        return false;
    g_hash_table_iter_init(&it, m->per_tgid);
    while (n < GPM_DPROBE_MAX_PIDS &&
           g_hash_table_iter_next(&it, (gpointer *)&tgid, NULL))
        gpm_wire_put32(f + GPM_DFRAME_HDR_SIZE + 4 * n++, (uint32_t)*tgid);
    gpm__dframe_put_hdr(f, GPM_DFRAME_PROBE, 0, 4 * n);
    if (gpm__channel_push_locked(m, ch, f, GPM_DFRAME_HDR_SIZE + 4 * n) != 0)
        return false;
    m->probe_last = now;
    return true;
}

int gpm_daemon_probe(gpm_manager_t *m)
{
    gpm_channel_id_t id;
    bool queued;

    if (m == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    id = m->daemon_id;
    queued = id != GPM_CHANNEL_NONE && gpm__daemon_probe_locked(m);
    g_mutex_unlock(&m->lock);
    if (id == GPM_CHANNEL_NONE)
        return GPM_EBADF;
    if (!queued)
        return GPM_EAGAIN;
    gpm__ring(m, id);
    return 0;
}

/* Builds a LOAD frame for @name from the ELF at @path. */
static int build_load(const char *name, const char *path, uint32_t seq,
                      uint8_t **frame, size_t *frame_len, char *why,
                      size_t why_len)
{
    size_t name_len = strlen(name);
    GError *err = NULL;
    gchar *elf;
    gsize elf_len;
    size_t payload;
    uint8_t *f;

    if (!g_file_get_contents(path, &elf, &elf_len, &err)) {
        gpm__why(why, why_len, "%s", err->message);
        g_error_free(err);
        return GPM_ENOENT;
    }
    payload = 8 + name_len + elf_len;
    if (elf_len > GPM_DFRAME_MAX_PAYLOAD || payload > GPM_DFRAME_MAX_PAYLOAD) {
        gpm__why(why, why_len, "%s: %zu bytes is more than a plugin may be",
                 path, (size_t)elf_len);
        g_free(elf);
        return GPM_EMSGSIZE;
    }
    f = g_try_malloc(GPM_DFRAME_HDR_SIZE + payload);
    if (f == NULL) {
        g_free(elf);
        return GPM_ENOMEM;
    }
    gpm__dframe_put_hdr(f, GPM_DFRAME_LOAD, seq, (uint32_t)payload);
    gpm_wire_put16(f + 16, (uint16_t)name_len);
    gpm_wire_put16(f + 18, 0);
    gpm_wire_put32(f + 20, (uint32_t)elf_len);
    memcpy(f + 24, name, name_len);
    memcpy(f + 24 + name_len, elf, elf_len);
    g_free(elf);
    *frame = f;
    *frame_len = GPM_DFRAME_HDR_SIZE + payload;
    return 0;
}

int gpm_guest_plugin_add(gpm_manager_t *m, const char *name,
                         const char *binary_path, gpm_recv_cb cb,
                         gpm_release_cb release, void *opaque,
                         gpm_channel_id_t *out, char *why, size_t why_len)
{
    gpm_plugin_info_t *info;
    gpm__channel_t *daemon, *ch;
    gpm_channel_id_t id, daemon_id = GPM_CHANNEL_NONE;
    uint8_t *frame = NULL;
    size_t frame_len = 0;
    uint32_t seq;
    int rc;

    if (out != NULL)
        *out = GPM_CHANNEL_NONE;
    if (m == NULL || name == NULL || out == NULL)
        return GPM_EINVAL;
    if (name[0] == '\0' || strlen(name) > GPM_DESC_NAME_MAX ||
        strcmp(name, GPM_DAEMON_CHANNEL) == 0) {
        gpm__why(why, why_len, "invalid plugin name \"%s\"", name);
        return GPM_EINVAL;
    }
    info = g_new0(gpm_plugin_info_t, 1);
    if (binary_path == NULL) {
        rc = gpm_plugin_find(name, NULL, m->cfg.arch, info, why, why_len);
    } else {
        rc = gpm_plugin_inspect(binary_path, info, why, why_len);
        if (rc == 0)
            rc = gpm_plugin_check_arch(info, m->cfg.arch, why, why_len);
    }
    if (rc != 0)
        goto out;

    g_mutex_lock(&m->lock);
    seq = m->next_seq++;
    g_mutex_unlock(&m->lock);
    rc = build_load(name, info->path, seq, &frame, &frame_len, why, why_len);
    if (rc != 0)
        goto out;

    g_mutex_lock(&m->lock);
    rc = daemon_channel_locked(m, &daemon);
    if (rc == 0) {
        daemon_id = daemon->id;
        rc = gpm__channel_alloc_locked(m, name, cb, NULL, NULL, false, &id);
    }
    if (rc == GPM_EEXIST)
        gpm__why(why, why_len, "a channel named \"%s\" exists already", name);
    if (rc == 0) {
        rc = gpm__channel_push_locked(m, daemon, frame, frame_len);
        ch = gpm__channel_get(m, id);
        if (rc == 0) {
            /* Only now may the release callback ever run. */
            ch->release = release;
            ch->opaque = opaque;
            gpm__load_t *ld = g_new0(gpm__load_t, 1);

            ld->channel = id;
            g_strlcpy(ld->name, name, sizeof(ld->name));
            /* The plugin's process, once STARTED names it, owns it. */
            ch->owner = GPM_OWNER_PENDING;
            g_hash_table_insert(m->loads, GUINT_TO_POINTER(seq), ld);
            *out = id;
        } else {
            gpm__why(why, why_len, "the daemon's queue cannot take %zu bytes",
                     frame_len);
            gpm__channel_unlink_locked(m, ch);
            ch = gpm__channel_put(m, ch);
        }
    } else {
        ch = NULL;
    }
    g_mutex_unlock(&m->lock);
    if (rc != 0 && ch != NULL)
        gpm__channel_destroy(ch);
    if (rc == 0)
        gpm__ring(m, daemon_id);
out:
    g_free(frame);
    g_free(info);
    return rc;
}
