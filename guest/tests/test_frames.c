/*
 * test_frames.c - unit tests of the daemon's frame parser and encoder.
 *
 * Built natively by "make -C guest check"; prints "N passed, N failed" and
 * exits non-zero if anything failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dframe.h"

static int passed, failed;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

#define MAX_EVENTS 32

/* What feeding a byte stream produced. */
struct result {
    int nev;
    int ev[MAX_EVENTS];
    struct gpm_dframe fr[MAX_EVENTS];
};

static void result_free(struct result *r)
{
    int i;

    for (i = 0; i < r->nev; i++)
        if (r->ev[i] == GPM_DP_FRAME)
            free(r->fr[i].payload);
}

/* Feed @len bytes in pieces of at most @chunk bytes; record events. */
static void feed(struct gpm_dparser *p, const uint8_t *data, size_t len,
                 size_t chunk, struct result *r)
{
    size_t off = 0;

    while (off < len) {
        size_t room, n;
        void *dst = gpm_dparser_buf(p, &room);
        struct gpm_dframe f;
        int ev;

        n = len - off;
        if (n > room)
            n = room;
        if (n > chunk)
            n = chunk;
        memcpy(dst, data + off, n);
        off += n;
        ev = gpm_dparser_commit(p, n, &f);
        if (ev != GPM_DP_MORE && r->nev < MAX_EVENTS) {
            r->ev[r->nev] = ev;
            r->fr[r->nev] = f;
            r->nev++;
        } else if (ev == GPM_DP_FRAME) {
            free(f.payload);
        }
    }
}

static size_t frame(uint8_t *out, size_t cap, uint16_t type, uint32_t seq,
                    const void *payload, size_t len)
{
    const void *parts[1] = {payload};
    size_t lens[1] = {len};

    return gpm_dframe_encode(out, cap, type, seq, parts, lens, 1);
}

/* A LOAD payload: name, args, elf. Returns its length. */
static size_t load_payload(uint8_t *out, const char *name, int argc,
                           const char *const *argv, const char *elf)
{
    size_t off = 8, n;
    int i;

    gpm_put_le16(out, (uint16_t)strlen(name));
    gpm_put_le16(out + 2, (uint16_t)argc);
    gpm_put_le32(out + 4, (uint32_t)strlen(elf));
    memcpy(out + off, name, strlen(name));
    off += strlen(name);
    for (i = 0; i < argc; i++) {
        n = strlen(argv[i]) + 1;
        memcpy(out + off, argv[i], n);
        off += n;
    }
    memcpy(out + off, elf, strlen(elf));
    return off + strlen(elf);
}

static void test_ping_whole_and_bytewise(void)
{
    uint8_t buf[64];
    size_t chunk, n = frame(buf, sizeof(buf), GPM_DFRAME_PING, 7, NULL, 0);

    CHECK(n == GPM_DFRAME_HDR_SIZE);
    for (chunk = 1; chunk <= 16; chunk += 15) {
        struct gpm_dparser p;
        struct result r = {0};

        gpm_dparser_init(&p);
        feed(&p, buf, n, chunk, &r);
        CHECK(r.nev == 1);
        CHECK(r.ev[0] == GPM_DP_FRAME);
        CHECK(r.fr[0].hdr.type == GPM_DFRAME_PING);
        CHECK(r.fr[0].hdr.seq == 7);
        CHECK(r.fr[0].hdr.len == 0);
        CHECK(r.fr[0].payload == NULL);
        result_free(&r);
    }
}

static void test_load_roundtrip(void)
{
    const char *argv[2] = {"-v", "two words"};
    uint8_t pl[256], buf[512];
    size_t plen = load_payload(pl, "hello", 2, argv, "\177ELFxyz");
    size_t n = frame(buf, sizeof(buf), GPM_DFRAME_LOAD, 42, pl, plen);
    size_t chunk;

    for (chunk = 1; chunk < n + 1; chunk += 5) {
        struct gpm_dparser p;
        struct result r = {0};
        struct gpm_dload ld;
        const char *why = NULL;

        gpm_dparser_init(&p);
        feed(&p, buf, n, chunk, &r);
        CHECK(r.nev == 1);
        if (r.nev != 1 || r.ev[0] != GPM_DP_FRAME) {
            failed++;
            result_free(&r);
            continue;
        }
        CHECK(r.fr[0].hdr.seq == 42);
        CHECK(r.fr[0].hdr.len == plen);
        CHECK(memcmp(r.fr[0].payload, pl, plen) == 0);
        CHECK(gpm_dload_parse(r.fr[0].payload, plen, &ld, &why) == 0);
        CHECK(strcmp(ld.name, "hello") == 0);
        CHECK(ld.argc == 2);
        CHECK(strcmp(ld.argv[0], "-v") == 0);
        CHECK(strcmp(ld.argv[1], "two words") == 0);
        CHECK(ld.elf_len == 7 && memcmp(ld.elf, "\177ELFxyz", 7) == 0);
        result_free(&r);
    }
}

static void test_garbage_then_frames(void)
{
    uint8_t buf[256];
    size_t off = 0;
    struct gpm_dparser p;
    struct result r = {0};

    /* Garbage with a false start of the magic inside it. */
    memcpy(buf, "xxGPyyGPMzz", 11);
    off = 11;
    off += frame(buf + off, sizeof(buf) - off, GPM_DFRAME_PING, 1, NULL, 0);
    off += frame(buf + off, sizeof(buf) - off, GPM_DFRAME_LOAD, 2, "abc", 3);
    gpm_dparser_init(&p);
    feed(&p, buf, off, 3, &r);
    CHECK(r.nev == 3);
    CHECK(r.ev[0] == GPM_DP_BAD_MAGIC);
    CHECK(r.ev[1] == GPM_DP_FRAME && r.fr[1].hdr.seq == 1);
    CHECK(r.ev[2] == GPM_DP_FRAME && r.fr[2].hdr.seq == 2);
    CHECK(r.ev[2] == GPM_DP_FRAME && memcmp(r.fr[2].payload, "abc", 3) == 0);
    result_free(&r);
}

static void test_bad_version_skipped(void)
{
    uint8_t buf[256];
    size_t off;
    struct gpm_dparser p;
    struct result r = {0};

    off = frame(buf, sizeof(buf), GPM_DFRAME_LOAD, 5, "payload!", 8);
    gpm_put_le16(buf + 4, 99);
    off += frame(buf + off, sizeof(buf) - off, GPM_DFRAME_PING, 6, NULL, 0);
    gpm_dparser_init(&p);
    feed(&p, buf, off, 4, &r);
    CHECK(r.nev == 2);
    CHECK(r.ev[0] == GPM_DP_BAD_VERSION);
    CHECK(r.fr[0].hdr.seq == 5 && r.fr[0].hdr.version == 99);
    CHECK(r.ev[1] == GPM_DP_FRAME && r.fr[1].hdr.seq == 6);
    result_free(&r);
}

static void test_too_long_resyncs(void)
{
    uint8_t buf[256];
    size_t off;
    struct gpm_dparser p;
    struct result r = {0};

    off = frame(buf, sizeof(buf), GPM_DFRAME_LOAD, 8, NULL, 0);
    gpm_put_le32(buf + 12, 1000);
    off += frame(buf + off, sizeof(buf) - off, GPM_DFRAME_PING, 9, NULL, 0);
    gpm_dparser_init(&p);
    p.max_payload = 100;
    feed(&p, buf, off, 16, &r);
    CHECK(r.nev == 2);
    CHECK(r.ev[0] == GPM_DP_TOO_LONG);
    CHECK(r.ev[1] == GPM_DP_FRAME && r.fr[1].hdr.seq == 9);
    result_free(&r);
}

static void test_many_frames_odd_chunks(void)
{
    uint8_t buf[4096];
    size_t off = 0, chunk;
    int i;

    for (i = 0; i < 20; i++) {
        uint8_t pl[64];

        memset(pl, i, sizeof(pl));
        off += frame(buf + off, sizeof(buf) - off, GPM_DFRAME_LOAD, (uint32_t)i,
                     pl, (size_t)i * 3);
    }
    for (chunk = 1; chunk < 40; chunk += 7) {
        struct gpm_dparser p;
        struct result r = {0};
        int ok = 1;

        gpm_dparser_init(&p);
        feed(&p, buf, off, chunk, &r);
        CHECK(r.nev == 20);
        for (i = 0; i < r.nev; i++)
            if (r.ev[i] != GPM_DP_FRAME || r.fr[i].hdr.seq != (uint32_t)i ||
                r.fr[i].hdr.len != (uint32_t)i * 3)
                ok = 0;
        CHECK(ok);
        result_free(&r);
    }
}

static void test_load_parse_errors(void)
{
    const char *argv[1] = {"a"};
    struct gpm_dload ld;
    const char *why;
    uint8_t pl[256];
    size_t n;

    n = load_payload(pl, "ok", 1, argv, "E");
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == 0);
    CHECK(gpm_dload_parse(pl, 5, &ld, &why) == -EPROTO);
    /* elf_len one too many. */
    CHECK(gpm_dload_parse(pl, n - 1, &ld, &why) == -EPROTO);
    n = load_payload(pl, "a/b", 0, NULL, "E");
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == -EPROTO);
    n = load_payload(pl, "", 0, NULL, "E");
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == -EPROTO);
    n = load_payload(pl, "x", 0, NULL, "");
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == -EPROTO);
    /* An argument without its NUL: claim one more arg than present. */
    n = load_payload(pl, "x", 0, NULL, "E");
    gpm_put_le16(pl + 2, 1);
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == -EPROTO);
    n = load_payload(pl, "x", 0, NULL, "E");
    gpm_put_le16(pl + 2, GPM_DFRAME_MAX_ARGS + 1);
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == -E2BIG);
    /* Name longer than the payload. */
    n = load_payload(pl, "x", 0, NULL, "E");
    gpm_put_le16(pl, 200);
    CHECK(gpm_dload_parse(pl, n, &ld, &why) == -EPROTO);
}

static void test_encode_limits(void)
{
    uint8_t buf[20];
    const void *parts[2] = {"abcd", "efgh"};
    size_t lens[2] = {4, 4};

    CHECK(gpm_dframe_encode(buf, sizeof(buf), 1, 0, parts, lens, 2) == 0);
    CHECK(gpm_dframe_encode(buf, sizeof(buf), 1, 3, parts, lens, 1) == 20);
    CHECK(gpm_get_le32(buf) == GPM_DFRAME_MAGIC);
    CHECK(memcmp(buf, "GPMD", 4) == 0);
    CHECK(gpm_get_le16(buf + 4) == GPM_DFRAME_VERSION);
    CHECK(gpm_get_le32(buf + 8) == 3 && gpm_get_le32(buf + 12) == 4);
}

/* Random garbage, then a frame: the frame is always found. */
static void test_random_garbage(void)
{
    uint8_t buf[600];
    unsigned seed = 12345;
    int i, ok = 1;

    for (i = 0; i < 500; i++) {
        struct gpm_dparser p;
        struct result r = {0};
        size_t glen, j, n;

        seed = seed * 1103515245u + 12345u;
        glen = 1 + (seed >> 8) % 500;
        for (j = 0; j < glen; j++) {
            seed = seed * 1103515245u + 12345u;
            buf[j] = (uint8_t)(seed >> 16);
            if (buf[j] == 'G')
                buf[j] = 'g';
        }
        n = glen + frame(buf + glen, sizeof(buf) - glen, GPM_DFRAME_PING,
                         (uint32_t)i, NULL, 0);
        gpm_dparser_init(&p);
        feed(&p, buf, n, 1 + (seed >> 4) % 17, &r);
        if (r.nev != 2 || r.ev[0] != GPM_DP_BAD_MAGIC ||
            r.ev[1] != GPM_DP_FRAME || r.fr[1].hdr.seq != (uint32_t)i)
            ok = 0;
        result_free(&r);
    }
    CHECK(ok);
}

/* Pure noise must never crash the parser or allocate without bound. */
static void test_noise(void)
{
    uint8_t buf[4096];
    unsigned seed = 777;
    struct gpm_dparser p;
    struct result r = {0};
    size_t j;
    int i;

    gpm_dparser_init(&p);
    p.max_payload = 1000;
    for (i = 0; i < 200; i++) {
        for (j = 0; j < sizeof(buf); j++) {
            seed = seed * 1103515245u + 12345u;
            /* Plenty of magic bytes, so headers do get recognised. */
            buf[j] = (uint8_t)("GPMD\x01\x00\x02"[(seed >> 16) % 7] ^
                               ((seed >> 24) % 5 == 0 ? (seed >> 8) : 0));
        }
        r.nev = 0;
        feed(&p, buf, sizeof(buf), 1 + (seed >> 4) % 64, &r);
        result_free(&r);
    }
    gpm_dparser_free(&p);
    CHECK(1);
}

int main(void)
{
    test_ping_whole_and_bytewise();
    test_load_roundtrip();
    test_garbage_then_frames();
    test_bad_version_skipped();
    test_too_long_resyncs();
    test_many_frames_odd_chunks();
    test_load_parse_errors();
    test_encode_limits();
    test_random_garbage();
    test_noise();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
