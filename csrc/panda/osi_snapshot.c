/*
 * osi_snapshot.c - the guest agent's latest process list and memory maps.
 *
 * See osi_snapshot.h. Replies of the procs guest plugin are reassembled
 * in a bounded buffer, decoded completely into new arrays and only then
 * swapped in, so a reply that turns out malformed halfway changes
 * nothing.
 */
#include <errno.h>
#include <string.h>

#include "osi_snapshot.h"

struct gpm_osi_snapshot {
    GMutex lock;
    GByteArray *in;   /* reply bytes not yet complete */
    gboolean have;    /* a process list arrived since the last reset */
    GArray *procs;    /* gpm_osi_proc_t */
    GHashTable *maps; /* pid -> GArray of gpm_osi_map_t */
    int32_t wanted[GPM_OSI_MAX_WANTED];
    size_t n_wanted;
    size_t maps_cursor; /* next wanted pid to ask for after a PS */
    uint32_t seq;
    gboolean outstanding;
    uint32_t out_op, out_seq, out_arg;
    int64_t sent_ms, last_ps_ms;
    uint64_t replies, rejected;
};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void proc_clear(gpointer p)
{
    g_free(((gpm_osi_proc_t *)p)->name);
}

static void map_clear(gpointer p)
{
    g_free(((gpm_osi_map_t *)p)->path);
}

static void maps_free(gpointer a)
{
    g_array_free(a, TRUE);
}

static GArray *new_procs(void)
{
    GArray *a = g_array_new(FALSE, TRUE, sizeof(gpm_osi_proc_t));

    g_array_set_clear_func(a, proc_clear);
    return a;
}

static GArray *new_maps(void)
{
    GArray *a = g_array_new(FALSE, TRUE, sizeof(gpm_osi_map_t));

    g_array_set_clear_func(a, map_clear);
    return a;
}

gpm_osi_snapshot_t *gpm_osi_snapshot_new(void)
{
    gpm_osi_snapshot_t *s = g_new0(gpm_osi_snapshot_t, 1);

    g_mutex_init(&s->lock);
    s->in = g_byte_array_new();
    s->procs = new_procs();
    s->maps =
        g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, maps_free);
    return s;
}

void gpm_osi_snapshot_free(gpm_osi_snapshot_t *s)
{
    if (s == NULL)
        return;
    g_byte_array_free(s->in, TRUE);
    g_array_free(s->procs, TRUE);
    g_hash_table_destroy(s->maps);
    g_mutex_clear(&s->lock);
    g_free(s);
}

void gpm_osi_snapshot_reset(gpm_osi_snapshot_t *s)
{
    g_mutex_lock(&s->lock);
    g_byte_array_set_size(s->in, 0);
    g_array_set_size(s->procs, 0);
    g_hash_table_remove_all(s->maps);
    s->have = FALSE;
    s->n_wanted = 0;
    s->maps_cursor = 0;
    s->outstanding = FALSE;
    s->last_ps_ms = 0;
    g_mutex_unlock(&s->lock);
}

/* Decodes the PROC records of a reply; NULL if one is malformed. */
static GArray *decode_procs(const uint8_t *p, size_t len)
{
    GArray *a = new_procs();
    size_t off = 0;

    while (off < len) {
        gpm_osi_proc_t rec = {0};
        uint64_t rec_len, nl, cl, el;

        if (len - off < GPM_PROCS_PROC_FIXED)
            goto bad;
        rec_len = le32(p + off);
        nl = le32(p + off + 28);
        cl = le32(p + off + 32);
        el = le32(p + off + 36);
        if (rec_len < GPM_PROCS_PROC_FIXED || rec_len > len - off ||
            nl + cl + el > rec_len - GPM_PROCS_PROC_FIXED)
            goto bad;
        rec.pid = (int32_t)le32(p + off + 4);
        rec.ppid = (int32_t)le32(p + off + 8);
        rec.start_time = le64(p + off + 20);
        rec.name =
            g_strndup((const char *)p + off + GPM_PROCS_PROC_FIXED, (gsize)nl);
        g_array_append_val(a, rec);
        off += (size_t)rec_len;
    }
    return a;
bad:
    g_array_free(a, TRUE);
    return NULL;
}

/* Decodes the MAP records of a reply; NULL if one is malformed. */
static GArray *decode_maps(const uint8_t *p, size_t len)
{
    GArray *a = new_maps();
    size_t off = 0;

    while (off < len) {
        gpm_osi_map_t rec = {0};
        uint64_t rec_len, pl;

        if (len - off < GPM_PROCS_MAP_FIXED)
            goto bad;
        rec_len = le32(p + off);
        pl = le32(p + off + 40);
        if (rec_len < GPM_PROCS_MAP_FIXED || rec_len > len - off ||
            pl > rec_len - GPM_PROCS_MAP_FIXED)
            goto bad;
        rec.start = le64(p + off + 4);
        rec.end = le64(p + off + 12);
        rec.offset = le64(p + off + 20);
        memcpy(rec.perms, p + off + 28, 4);
        rec.perms[4] = '\0';
        rec.path =
            g_strndup((const char *)p + off + GPM_PROCS_MAP_FIXED, (gsize)pl);
        g_array_append_val(a, rec);
        off += (size_t)rec_len;
    }
    return a;
bad:
    g_array_free(a, TRUE);
    return NULL;
}

/* Applies one complete reply; returns 0 or -EPROTO. Holds the lock. */
static int apply_reply(gpm_osi_snapshot_t *s, const uint8_t *h,
                       const uint8_t *body, size_t len)
{
    uint32_t op = le32(h + 4) & ~GPM_PROCS_TRUNCATED, seq = le32(h + 8);
    int32_t status = (int32_t)le32(h + 12);
    GArray *a;

    /* Only the answer to what we asked counts; a stale one is dropped. */
    if (!s->outstanding || seq != s->out_seq || op != s->out_op)
        return 0;
    s->outstanding = FALSE;
    if (op == GPM_PROCS_OP_MAPS && status < 0) {
        /* The process is gone: so are its maps. */
        g_hash_table_remove(s->maps, GINT_TO_POINTER((gint)s->out_arg));
        s->replies++;
        return 0;
    }
    if (status < 0) {
        s->replies++;
        return 0; /* keep the last good list */
    }
    if (op == GPM_PROCS_OP_PS) {
        a = decode_procs(body, len);
        if (a == NULL)
            return -EPROTO;
        g_array_free(s->procs, TRUE);
        s->procs = a;
        s->have = TRUE;
        s->maps_cursor = 0;
    } else if (op == GPM_PROCS_OP_MAPS) {
        a = decode_maps(body, len);
        if (a == NULL)
            return -EPROTO;
        g_hash_table_replace(s->maps, GINT_TO_POINTER((gint)s->out_arg), a);
    }
    s->replies++;
    return 0;
}

int gpm_osi_snapshot_feed(gpm_osi_snapshot_t *s, const uint8_t *buf, size_t len)
{
    int rc = 0;

    g_mutex_lock(&s->lock);
    if (len > (size_t)GPM_PROCS_HDR_LEN + GPM_PROCS_MAX_REPLY - s->in->len) {
        rc = -EPROTO;
        goto reject;
    }
    g_byte_array_append(s->in, buf, (guint)len);
    while (s->in->len >= GPM_PROCS_HDR_LEN) {
        const uint8_t *h = s->in->data;
        uint32_t body = le32(h + 20);

        if (le32(h) != GPM_PROCS_MAGIC || body > GPM_PROCS_MAX_REPLY) {
            rc = -EPROTO;
            goto reject;
        }
        if (s->in->len - GPM_PROCS_HDR_LEN < body)
            break;
        rc = apply_reply(s, h, h + GPM_PROCS_HDR_LEN, body);
        if (rc < 0)
            goto reject;
        g_byte_array_remove_range(s->in, 0, GPM_PROCS_HDR_LEN + body);
    }
    g_mutex_unlock(&s->lock);
    return 0;
reject:
    s->rejected++;
    s->outstanding = FALSE;
    g_byte_array_set_size(s->in, 0);
    g_mutex_unlock(&s->lock);
    return rc;
}

int gpm_osi_snapshot_next_request(gpm_osi_snapshot_t *s, uint8_t *req,
                                  int64_t now_ms, int64_t period_ms)
{
    uint32_t op = 0, arg = 0;

    g_mutex_lock(&s->lock);
    if (s->outstanding && now_ms - s->sent_ms < 10 * period_ms)
        goto none;
    if (!s->have || s->outstanding || now_ms - s->last_ps_ms >= period_ms) {
        op = GPM_PROCS_OP_PS;
        s->last_ps_ms = now_ms;
    } else if (s->maps_cursor < s->n_wanted) {
        op = GPM_PROCS_OP_MAPS;
        arg = (uint32_t)s->wanted[s->maps_cursor++];
    } else {
        goto none;
    }
    s->outstanding = TRUE;
    s->out_op = op;
    s->out_seq = ++s->seq;
    s->out_arg = arg;
    s->sent_ms = now_ms;
    put_le32(req, op);
    put_le32(req + 4, s->out_seq);
    put_le32(req + 8, arg);
    g_mutex_unlock(&s->lock);
    return 1;
none:
    g_mutex_unlock(&s->lock);
    return 0;
}

void gpm_osi_snapshot_want_maps(gpm_osi_snapshot_t *s, int32_t pid)
{
    size_t i;

    if (pid <= 0)
        return;
    g_mutex_lock(&s->lock);
    for (i = 0; i < s->n_wanted; i++)
        if (s->wanted[i] == pid)
            break;
    if (i == s->n_wanted && s->n_wanted < GPM_OSI_MAX_WANTED)
        s->wanted[s->n_wanted++] = pid;
    g_mutex_unlock(&s->lock);
}

/*
 * OSI's container rules on @out for @n new elements of @elem_size: the
 * first new element's index, or -EINVAL (then *@out is freed and NULL).
 */
static long open_container(GArray **out, size_t elem_size, guint n,
                           GDestroyNotify clear)
{
    guint first;

    if (*out == NULL) {
        *out = g_array_sized_new(FALSE, TRUE, (guint)elem_size, n);
        g_array_set_clear_func(*out, clear);
    } else if (g_array_get_element_size(*out) != elem_size) {
        g_array_free(*out, TRUE);
        *out = NULL;
        return -EINVAL;
    }
    first = (*out)->len;
    g_array_set_size(*out, first + n);
    memset((*out)->data + (size_t)first * elem_size, 0, (size_t)n * elem_size);
    return (long)first;
}

int gpm_osi_snapshot_fill_procs(gpm_osi_snapshot_t *s, GArray **out,
                                size_t elem_size, GDestroyNotify clear,
                                gpm_osi_proc_fill_fn fill)
{
    long first;
    guint i, n;

    if (out == NULL || fill == NULL || elem_size == 0)
        return -EINVAL;
    g_mutex_lock(&s->lock);
    if (!s->have) {
        g_mutex_unlock(&s->lock);
        return -ENODATA;
    }
    n = s->procs->len;
    first = open_container(out, elem_size, n, clear);
    if (first < 0) {
        g_mutex_unlock(&s->lock);
        return (int)first;
    }
    for (i = 0; i < n; i++)
        fill((*out)->data + ((size_t)first + i) * elem_size,
             &g_array_index(s->procs, gpm_osi_proc_t, i));
    g_mutex_unlock(&s->lock);
    return (int)n;
}

int gpm_osi_snapshot_fill_maps(gpm_osi_snapshot_t *s, int32_t pid, GArray **out,
                               size_t elem_size, GDestroyNotify clear,
                               gpm_osi_map_fill_fn fill)
{
    GArray *maps;
    long first;
    guint i, n;

    if (out == NULL || fill == NULL || elem_size == 0)
        return -EINVAL;
    gpm_osi_snapshot_want_maps(s, pid);
    g_mutex_lock(&s->lock);
    maps = s->have ? g_hash_table_lookup(s->maps, GINT_TO_POINTER((gint)pid))
                   : NULL;
    if (maps == NULL) {
        g_mutex_unlock(&s->lock);
        return -ENODATA;
    }
    n = maps->len;
    first = open_container(out, elem_size, n, clear);
    if (first < 0) {
        g_mutex_unlock(&s->lock);
        return (int)first;
    }
    for (i = 0; i < n; i++)
        fill((*out)->data + ((size_t)first + i) * elem_size,
             &g_array_index(maps, gpm_osi_map_t, i));
    g_mutex_unlock(&s->lock);
    return (int)n;
}

void gpm_osi_snapshot_counts(gpm_osi_snapshot_t *s, uint64_t *replies,
                             uint64_t *rejected)
{
    g_mutex_lock(&s->lock);
    if (replies != NULL)
        *replies = s->replies;
    if (rejected != NULL)
        *rejected = s->rejected;
    g_mutex_unlock(&s->lock);
}
