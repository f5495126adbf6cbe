/*
 * daemon_link.c - the host end of the guest daemon's framed protocol
 * (gpm/daemon_proto.h): LOAD frames out, replies in, replies turned into
 * GPM_EVENT_PLUGIN_* events.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Replies are small; a larger one is a protocol error. */
#define MAX_REPLY_PAYLOAD 8192u

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

void gpm__dframe_put_hdr(uint8_t *p, uint16_t type, uint32_t seq, uint32_t len)
{
    put32(p, GPM_DFRAME_MAGIC);
    put16(p + 4, GPM_DFRAME_VERSION);
    put16(p + 6, type);
    put32(p + 8, seq);
    put32(p + 12, len);
}

void gpm__daemon_init(gpm_manager_t *m)
{
    m->next_seq = 1;
    m->loads =
        g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    m->rx = g_byte_array_new();
}

void gpm__daemon_fini(gpm_manager_t *m)
{
    g_hash_table_destroy(m->loads);
    g_byte_array_free(m->rx, TRUE);
}

/* Up to this many events come out of one chunk of daemon bytes. */
#define MAX_EVENTS 32

typedef struct pending_event {
    gpm_event_t ev;
    char name[GPM_DESC_NAME_MAX + 1];
    char text[512];
} pending_event_t;

static void set_name(pending_event_t *pe, const uint8_t *p, size_t len)
{
    if (len > GPM_DESC_NAME_MAX)
        len = GPM_DESC_NAME_MAX;
    memcpy(pe->name, p, len);
    pe->name[len] = '\0';
    pe->ev.name = pe->name;
}

/* Turns one complete reply frame into an event; lock held. */
static bool parse_reply(gpm_manager_t *m, uint16_t type, uint32_t seq,
                        const uint8_t *p, uint32_t len, pending_event_t *pe)
{
    const char *name;

    memset(pe, 0, sizeof(*pe));
    pe->ev.pid = -1;
    pe->ev.channel = m->daemon_id;
    switch (type) {
    case GPM_DFRAME_HELLO:
        if (len < 8)
            return false;
        pe->ev.type = GPM_EVENT_DAEMON_READY;
        pe->ev.pid = get32(p);
        return true;
    case GPM_DFRAME_STARTED:
        if (len < 4)
            return false;
        pe->ev.type = GPM_EVENT_PLUGIN_STARTED;
        pe->ev.pid = get32(p);
        set_name(pe, p + 4, len - 4);
        g_hash_table_remove(m->loads, GUINT_TO_POINTER(seq));
        return true;
    case GPM_DFRAME_EXITED:
        if (len < 8)
            return false;
        pe->ev.type = GPM_EVENT_PLUGIN_EXITED;
        pe->ev.pid = get32(p);
        pe->ev.status = (int32_t)get32(p + 4);
        set_name(pe, p + 8, len - 8);
        return true;
    case GPM_DFRAME_FAILED:
        if (len < 8)
            return false;
        pe->ev.type = GPM_EVENT_PLUGIN_FAILED;
        pe->ev.err = (int32_t)get32(p);
        pe->ev.stage = get32(p + 4);
        len -= 8;
        if (len >= sizeof(pe->text))
            len = sizeof(pe->text) - 1;
        memcpy(pe->text, p + 8, len);
        pe->text[len] = '\0';
        pe->ev.text = pe->text;
        name = g_hash_table_lookup(m->loads, GUINT_TO_POINTER(seq));
        if (name != NULL) {
            set_name(pe, (const uint8_t *)name, strlen(name));
            g_hash_table_remove(m->loads, GUINT_TO_POINTER(seq));
        }
        return true;
    default:
        return false;
    }
}

static void protocol_error(pending_event_t *pe, gpm_channel_id_t id,
                           const char *what)
{
    memset(pe, 0, sizeof(*pe));
    pe->ev.type = GPM_EVENT_PROTOCOL_ERROR;
    pe->ev.channel = id;
    pe->ev.pid = -1;
    snprintf(pe->text, sizeof(pe->text), "guest daemon: %s", what);
    pe->ev.text = pe->text;
}

/*
 * Receives the daemon's bytes. Frames may arrive split or several at once;
 * a frame with a bad header is reported and the bytes up to the next magic
 * value are dropped so the link resynchronises.
 */
static void daemon_recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                           void *opaque)
{
    gpm_manager_t *m = opaque;
    pending_event_t *evs = g_new(pending_event_t, MAX_EVENTS);
    unsigned n = 0;

    g_mutex_lock(&m->lock);
    g_byte_array_append(m->rx, buf, (guint)len);
    while (m->rx->len >= GPM_DFRAME_HDR_SIZE && n < MAX_EVENTS) {
        const uint8_t *p = m->rx->data;
        uint32_t plen = get32(p + 12);
        bool bad = get32(p) != GPM_DFRAME_MAGIC ||
                   get16(p + 4) != GPM_DFRAME_VERSION ||
                   plen > MAX_REPLY_PAYLOAD;

        if (bad) {
            guint skip = 1;

            while (skip + 4 <= m->rx->len &&
                   get32(m->rx->data + skip) != GPM_DFRAME_MAGIC)
                skip++;
            if (skip + 4 > m->rx->len)
                skip = m->rx->len;
            protocol_error(&evs[n++], id, "malformed frame header");
            g_byte_array_remove_range(m->rx, 0, skip);
            continue;
        }
        if (m->rx->len < GPM_DFRAME_HDR_SIZE + plen)
            break;
        if (!parse_reply(m, get16(p + 6), get32(p + 8), p + GPM_DFRAME_HDR_SIZE,
                         plen, &evs[n]))
            protocol_error(&evs[n], id, "unknown or short frame");
        n++;
        g_byte_array_remove_range(m->rx, 0, GPM_DFRAME_HDR_SIZE + plen);
    }
    g_mutex_unlock(&m->lock);
    for (unsigned i = 0; i < n; i++)
        gpm__emit(m, &evs[i].ev);
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
    put16(f + 16, (uint16_t)name_len);
    put16(f + 18, 0);
    put32(f + 20, (uint32_t)elf_len);
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
            g_hash_table_insert(m->loads, GUINT_TO_POINTER(seq),
                                g_strdup(name));
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
