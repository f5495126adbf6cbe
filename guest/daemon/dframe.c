/*
 * dframe.c - the daemon protocol's frame parser and encoder (guest side).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dframe.h"

/* The magic as it appears on the wire. */
static const uint8_t dframe_magic[4] = {
    GPM_DFRAME_MAGIC & 0xff, (GPM_DFRAME_MAGIC >> 8) & 0xff,
    (GPM_DFRAME_MAGIC >> 16) & 0xff, (GPM_DFRAME_MAGIC >> 24) & 0xff};

uint16_t gpm_get_le16(const uint8_t *p)
{
    return gpm_wire_get16(p);
}

uint32_t gpm_get_le32(const uint8_t *p)
{
    return gpm_wire_get32(p);
}

void gpm_put_le16(uint8_t *p, uint16_t v)
{
    gpm_wire_put16(p, v);
}

void gpm_put_le32(uint8_t *p, uint32_t v)
{
    gpm_wire_put32(p, v);
}

void gpm_dparser_init(struct gpm_dparser *p)
{
    p->state = GPM_DP_HDR;
    p->have = 0;
    p->skip_left = 0;
    p->cur.payload = NULL;
    memset(&p->cur.hdr, 0, sizeof(p->cur.hdr));
    p->resyncing = 0;
    p->max_payload = GPM_DFRAME_MAX_PAYLOAD;
}

void gpm_dparser_free(struct gpm_dparser *p)
{
    free(p->cur.payload);
    p->cur.payload = NULL;
    p->state = GPM_DP_HDR;
    p->have = 0;
}

void *gpm_dparser_buf(struct gpm_dparser *p, size_t *room)
{
    switch (p->state) {
    case GPM_DP_PAYLOAD:
        *room = p->cur.hdr.len - p->have;
        return p->cur.payload + p->have;
    case GPM_DP_SKIP:
        *room = p->skip_left < sizeof(p->scratch) ? p->skip_left
                                                  : sizeof(p->scratch);
        return p->scratch;
    case GPM_DP_HDR:
    default:
        *room = GPM_DFRAME_HDR_SIZE - p->have;
        return p->hdr_buf + p->have;
    }
}

/* Does buf[0..n) match the start of the magic (n <= 4 checked)? */
static int magic_prefix_ok(const uint8_t *buf, size_t n)
{
    if (n > sizeof(dframe_magic))
        n = sizeof(dframe_magic);
    return memcmp(buf, dframe_magic, n) == 0;
}

/*
 * Drop leading header bytes until what is left could start a frame.
 * Returns 1 if anything was dropped.
 */
static int hdr_resync(struct gpm_dparser *p)
{
    size_t k;

    if (p->have == 0 || magic_prefix_ok(p->hdr_buf, p->have))
        return 0;
    for (k = 1; k < p->have; k++)
        if (magic_prefix_ok(p->hdr_buf + k, p->have - k))
            break;
    memmove(p->hdr_buf, p->hdr_buf + k, p->have - k);
    p->have -= k;
    return 1;
}

/* Drop the first byte of a header that turned out to be bad, resync. */
static void hdr_drop_one(struct gpm_dparser *p)
{
    memmove(p->hdr_buf, p->hdr_buf + 1, p->have - 1);
    p->have--;
    hdr_resync(p);
    p->resyncing = 1;
}

static int hdr_complete(struct gpm_dparser *p, struct gpm_dframe *out)
{
    struct gpm_dframe_hdr *h = &p->cur.hdr;

    gpm_wire_hdr_get(p->hdr_buf, h);
    if (h->len > p->max_payload) {
        /* Not a header we can trust: look for the next magic. */
        hdr_drop_one(p);
        return GPM_DP_TOO_LONG;
    }
    p->resyncing = 0;
    p->have = 0;
    if (h->version != GPM_DFRAME_VERSION || h->len == 0) {
        out->hdr = *h;
        out->payload = NULL;
        if (h->version != GPM_DFRAME_VERSION) {
            p->skip_left = h->len;
            p->state = h->len ? GPM_DP_SKIP : GPM_DP_HDR;
            return GPM_DP_BAD_VERSION;
        }
        return GPM_DP_FRAME;
    }
    p->cur.payload = malloc(h->len);
    if (!p->cur.payload) {
        out->hdr = *h;
        out->payload = NULL;
        p->skip_left = h->len;
        p->state = GPM_DP_SKIP;
        return GPM_DP_NOMEM;
    }
    p->state = GPM_DP_PAYLOAD;
    return GPM_DP_MORE;
}

int gpm_dparser_commit(struct gpm_dparser *p, size_t n, struct gpm_dframe *out)
{
    switch (p->state) {
    case GPM_DP_PAYLOAD:
        p->have += n;
        if (p->have < p->cur.hdr.len)
            return GPM_DP_MORE;
        *out = p->cur;
        p->cur.payload = NULL;
        p->state = GPM_DP_HDR;
        p->have = 0;
        return GPM_DP_FRAME;
    case GPM_DP_SKIP:
        p->skip_left -= n;
        if (p->skip_left == 0) {
            p->state = GPM_DP_HDR;
            p->have = 0;
        }
        return GPM_DP_MORE;
    case GPM_DP_HDR:
    default:
        p->have += n;
        if (hdr_resync(p)) {
            /* Dropping bytes leaves fewer than a whole header. */
            if (p->resyncing)
                return GPM_DP_MORE;
            p->resyncing = 1;
            return GPM_DP_BAD_MAGIC;
        }
        if (p->have < GPM_DFRAME_HDR_SIZE)
            return GPM_DP_MORE;
        return hdr_complete(p, out);
    }
}

size_t gpm_dframe_encode(uint8_t *out, size_t cap, uint16_t type, uint32_t seq,
                         const void *const *parts, const size_t *lens,
                         size_t nparts)
{
    size_t total = 0, i, off;

    for (i = 0; i < nparts; i++) {
        if (lens[i] > GPM_DFRAME_MAX_PAYLOAD - total)
            return 0;
        total += lens[i];
    }
    if (cap < GPM_DFRAME_HDR_SIZE || total > cap - GPM_DFRAME_HDR_SIZE)
        return 0;
    gpm_wire_hdr_put(out, GPM_DFRAME_MAGIC, type, seq, (uint32_t)total);
    off = GPM_DFRAME_HDR_SIZE;
    for (i = 0; i < nparts; i++) {
        if (lens[i])
            memcpy(out + off, parts[i], lens[i]);
        off += lens[i];
    }
    return off;
}

int gpm_dload_parse(const uint8_t *payload, size_t len, struct gpm_dload *out,
                    const char **why)
{
    size_t name_len, off, i;
    uint16_t argc;
    uint32_t elf_len;

    if (len < 8) {
        *why = "LOAD payload shorter than its 8-byte head";
        return -EPROTO;
    }
    name_len = gpm_get_le16(payload);
    argc = gpm_get_le16(payload + 2);
    elf_len = gpm_get_le32(payload + 4);
    if (name_len == 0 || name_len > GPM_DLOAD_NAME_MAX) {
        *why = "LOAD name length not in 1..255";
        return -EPROTO;
    }
    if (argc > GPM_DFRAME_MAX_ARGS) {
        *why = "LOAD has more than GPM_DFRAME_MAX_ARGS arguments";
        return -E2BIG;
    }
    if (name_len > len - 8) {
        *why = "LOAD name runs past the payload";
        return -EPROTO;
    }
    memcpy(out->name, payload + 8, name_len);
    out->name[name_len] = '\0';
    if (memchr(out->name, '\0', name_len) || strchr(out->name, '/')) {
        *why = "LOAD name contains NUL or '/'";
        return -EPROTO;
    }
    off = 8 + name_len;
    for (i = 0; i < argc; i++) {
        const uint8_t *nul = memchr(payload + off, '\0', len - off);

        if (!nul) {
            *why = "LOAD argument not NUL-terminated";
            return -EPROTO;
        }
        out->argv[i] = (const char *)(payload + off);
        off = (size_t)(nul - payload) + 1;
    }
    if (len - off != elf_len) {
        *why = "LOAD elf_len does not match the payload length";
        return -EPROTO;
    }
    if (elf_len == 0) {
        *why = "LOAD carries an empty ELF";
        return -EPROTO;
    }
    out->argc = argc;
    out->elf = payload + off;
    out->elf_len = elf_len;
    return 0;
}
