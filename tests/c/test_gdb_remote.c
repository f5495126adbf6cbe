/*
 * test_gdb_remote.c - the pure parts of the GDB remote protocol client:
 * packet parsing, decoding, framing, stop replies, target.xml numbering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdio.h>

#include "qemu/gdb_remote.h"

static uint8_t pbuf[256];

/* Feeds @s and returns the kinds found, in order, as a string. */
static void feed_all(gpm__rsp_parser_t *p, const char *s, size_t n, char *kinds,
                     char payloads[][64], int *count)
{
    size_t off = 0;

    *count = 0;
    while (off < n) {
        gpm__rsp_kind_t k;
        size_t used = gpm__rsp_parse(p, (const uint8_t *)s + off, n - off, &k);

        assert_true(used > 0);
        off += used;
        if (k == GPM__RSP_NONE) {
            continue;
        }
        kinds[*count] = "0PCLAN%"[k];
        if (k == GPM__RSP_PACKET || k == GPM__RSP_NOTIFICATION) {
            memcpy(payloads[*count], p->buf, p->len);
            payloads[*count][p->len] = '\0';
        } else {
            payloads[*count][0] = '\0';
        }
        (*count)++;
    }
    kinds[*count] = '\0';
}

static void test_parse_basic(void **state)
{
    gpm__rsp_parser_t p;
    char kinds[16], pl[16][64];
    int n;
    const char *in = "+$OK#9a-$T05thread:01;#07";

    (void)state;
    gpm__rsp_parser_init(&p, pbuf, sizeof(pbuf));
    feed_all(&p, in, strlen(in), kinds, pl, &n);
    assert_string_equal(kinds, "APNP");
    assert_string_equal(pl[1], "OK");
    assert_string_equal(pl[3], "T05thread:01;");
}

static void test_parse_bad_checksum(void **state)
{
    gpm__rsp_parser_t p;
    char kinds[16], pl[16][64];
    int n;
    const char *in = "$OK#9b$OK#zz$OK#9a";

    (void)state;
    gpm__rsp_parser_init(&p, pbuf, sizeof(pbuf));
    feed_all(&p, in, strlen(in), kinds, pl, &n);
    assert_string_equal(kinds, "CCP");
    assert_string_equal(pl[2], "OK");
}

static void test_parse_split_every_byte(void **state)
{
    gpm__rsp_parser_t p;
    const char *in = "junk$m0123#33+";
    const char *expect = "PA";
    size_t i, found = 0;

    (void)state;
    gpm__rsp_parser_init(&p, pbuf, sizeof(pbuf));
    for (i = 0; i < strlen(in); i++) {
        gpm__rsp_kind_t k;
        size_t used = gpm__rsp_parse(&p, (const uint8_t *)in + i, 1, &k);

        assert_int_equal(used, 1);
        if (k != GPM__RSP_NONE) {
            assert_true(found < 2);
            assert_int_equal("0PCLAN%"[k], expect[found]);
            if (k == GPM__RSP_PACKET) {
                assert_int_equal(p.len, 5);
                assert_memory_equal(p.buf, "m0123", 5);
            }
            found++;
        }
    }
    assert_int_equal(found, 2);
}

static void test_parse_resync_and_noise(void **state)
{
    gpm__rsp_parser_t p;
    char kinds[16], pl[16][64];
    int n;
    /* A packet cut by a new '$' is dropped; noise bytes are skipped. */
    const char *in = "\x01\xff$abc$OK#9a\x03%Stop:T05;#00";

    (void)state;
    gpm__rsp_parser_init(&p, pbuf, sizeof(pbuf));
    feed_all(&p, in, strlen(in), kinds, pl, &n);
    assert_int_equal(n, 2);
    assert_int_equal(kinds[0], 'P');
    assert_string_equal(pl[0], "OK");
    /* The notification's checksum is wrong on purpose. */
    assert_int_equal(kinds[1], 'C');
}

static void test_parse_too_long(void **state)
{
    gpm__rsp_parser_t p;
    uint8_t small[4];
    char kinds[16], pl[16][64];
    int n;
    char in[64];
    uint8_t sum = 0;
    size_t i;

    (void)state;
    strcpy(in, "$0123456789");
    for (i = 1; i < strlen(in); i++) {
        sum = (uint8_t)(sum + in[i]);
    }
    sprintf(in + strlen(in), "#%02x$OK#9a", sum);
    gpm__rsp_parser_init(&p, small, sizeof(small));
    feed_all(&p, in, strlen(in), kinds, pl, &n);
    assert_string_equal(kinds, "LP");
    assert_string_equal(pl[1], "OK");
}

static void test_decode(void **state)
{
    uint8_t out[64];
    size_t n;

    (void)state;
    /* "0* " is '0' followed by 3 more: "0000". */
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"0* ", 3, out, sizeof(out), &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "0000", 4);
    /* An escaped '}' (0x7d ^ 0x20 = 0x5d). */
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"a}]b", 4, out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "a}b", 3);
    /* An escaped char repeated. */
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"}\x03*!", 4, out, sizeof(out), &n),
        0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "\x23\x23\x23\x23\x23", 5);
    /* Errors. */
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"ab}", 3, out, sizeof(out), &n),
        GPM_EPROTO);
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"*a", 2, out, sizeof(out), &n),
        GPM_EPROTO);
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"a*", 2, out, sizeof(out), &n),
        GPM_EPROTO);
    assert_int_equal(
        gpm__rsp_decode((const uint8_t *)"a*\x05", 3, out, sizeof(out), &n),
        GPM_EPROTO);
    assert_int_equal(gpm__rsp_decode((const uint8_t *)"a*~", 3, out, 10, &n),
                     GPM_EMSGSIZE);
    assert_int_equal(gpm__rsp_decode((const uint8_t *)"abc", 3, out, 2, &n),
                     GPM_EMSGSIZE);
}

static void test_frame_roundtrip(void **state)
{
    const uint8_t payload[] = {'X', '$', '#', '}', '*', 0, 0xff, 'z'};
    uint8_t framed[64], dec[64];
    gpm__rsp_parser_t p;
    gpm__rsp_kind_t k;
    size_t n, m;

    (void)state;
    n = gpm__rsp_frame(payload, sizeof(payload), framed, sizeof(framed));
    assert_true(n > sizeof(payload));
    gpm__rsp_parser_init(&p, pbuf, sizeof(pbuf));
    assert_int_equal(gpm__rsp_parse(&p, framed, n, &k), n);
    assert_int_equal(k, GPM__RSP_PACKET);
    assert_int_equal(gpm__rsp_decode(p.buf, p.len, dec, sizeof(dec), &m), 0);
    assert_int_equal(m, sizeof(payload));
    assert_memory_equal(dec, payload, m);
    assert_int_equal(gpm__rsp_frame(payload, sizeof(payload), framed, 8), 0);
    n = gpm__rsp_frame((const uint8_t *)"g", 1, framed, sizeof(framed));
    assert_int_equal(n, 5);
    assert_memory_equal(framed, "$g#67", 5);
}

static void test_hex(void **state)
{
    uint8_t b[4];
    char h[9];
    uint64_t v;

    (void)state;
    assert_int_equal(gpm__hex_decode("00ff7A", 6, b), 0);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(b[2], 0x7a);
    assert_int_equal(gpm__hex_decode("0g", 2, b), GPM_EPROTO);
    assert_int_equal(gpm__hex_decode("0", 1, b), GPM_EPROTO);
    gpm__hex_encode((const uint8_t *)"\x01\xab", 2, h);
    assert_memory_equal(h, "01ab", 4);
    assert_int_equal(gpm__hex_u64("1000", 4, &v), 0);
    assert_int_equal(v, 0x1000);
    assert_int_equal(gpm__hex_u64("", 0, &v), GPM_EPROTO);
    assert_int_equal(gpm__hex_u64("11112222333344445", 17, &v), GPM_EPROTO);
}

static void test_stop_replies(void **state)
{
    gpm__rsp_stop_t s;
    const char *t = "T05thread:p01.01;swbreak:;";

    (void)state;
    assert_int_equal(gpm__rsp_parse_stop(t, strlen(t), &s), 0);
    assert_int_equal(s.kind, 'T');
    assert_int_equal(s.signal, 5);
    assert_true(s.has_thread);
    assert_string_equal(s.thread, "p01.01");
    assert_int_equal(gpm__rsp_parse_stop("S02", 3, &s), 0);
    assert_int_equal(s.signal, 2);
    assert_int_equal(gpm__rsp_parse_stop("W00", 3, &s), 0);
    assert_int_equal(s.kind, 'W');
    assert_int_equal(gpm__rsp_parse_stop("W1f;process:1", 13, &s), 0);
    assert_int_equal(s.signal, 0x1f);
    assert_int_equal(gpm__rsp_parse_stop("X09", 3, &s), 0);
    assert_int_equal(gpm__rsp_parse_stop("OK", 2, &s), GPM_EPROTO);
    assert_int_equal(gpm__rsp_parse_stop("Tzz", 3, &s), GPM_EPROTO);
    assert_int_equal(gpm__rsp_parse_stop("T0", 2, &s), GPM_EPROTO);
    /* Garbage pairs do not crash. */
    assert_int_equal(gpm__rsp_parse_stop("T05:::;;;thread", 15, &s), 0);
}

/* A target description shaped like QEMU's x86_64 one. */
static const char target_xml[] = "<?xml version=\"1.0\"?>\n"
                                 "<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n"
                                 "<target>\n"
                                 "  <architecture>i386:x86-64</architecture>\n"
                                 "  <xi:include href=\"i386-64bit.xml\"/>\n"
                                 "</target>\n";

static const char core_xml[] =
    "<?xml version=\"1.0\"?>\n"
    "<feature name=\"org.gnu.gdb.i386.core\">\n"
    "  <reg name=\"rax\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"rbx\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"rcx\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"rdx\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"rsi\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"rdi\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"rbp\" bitsize=\"64\" type=\"data_ptr\"/>\n"
    "  <reg name=\"rsp\" bitsize=\"64\" type=\"data_ptr\"/>\n"
    "  <reg name=\"r8\" bitsize=\"64\"/> <reg name=\"r9\" bitsize=\"64\"/>\n"
    "  <reg name=\"r10\" bitsize=\"64\"/> <reg name=\"r11\" bitsize=\"64\"/>\n"
    "  <reg name=\"r12\" bitsize=\"64\"/> <reg name=\"r13\" bitsize=\"64\"/>\n"
    "  <reg name=\"r14\" bitsize=\"64\"/> <reg name=\"r15\" bitsize=\"64\"/>\n"
    "  <reg name=\"rip\" bitsize=\"64\" type=\"code_ptr\"/>\n"
    "  <reg name=\"eflags\" bitsize=\"32\" type=\"i386_eflags\"/>\n"
    "  <reg name=\"cs\" bitsize=\"32\"/><reg name=\"ss\" bitsize=\"32\"/>\n"
    "  <reg name=\"ds\" bitsize=\"32\"/><reg name=\"es\" bitsize=\"32\"/>\n"
    "  <reg name=\"fs\" bitsize=\"32\"/><reg name=\"gs\" bitsize=\"32\"/>\n"
    "  <!-- <reg name=\"orig_rax\" bitsize=\"64\"/> -->\n"
    "  <reg name='fs_base' bitsize='64' type='int64'/>\n"
    "  <reg name=\"gs_base\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <reg name=\"k_gs_base\" bitsize=\"64\" type=\"int64\"/>\n"
    "  <flags id=\"x\" size=\"8\"><field name=\"PG\" start=\"31\"/></flags>\n"
    "  <reg name=\"cr0\" bitsize=\"64\"/>\n"
    "  <reg name=\"cr2\" bitsize=\"64\"/>\n"
    "  <reg name=\"cr3\" bitsize=\"64\"/>\n"
    "  <reg name=\"cr4\" bitsize=\"64\"/>\n"
    "  <reg name=\"cr8\" bitsize=\"64\"/>\n"
    "  <reg name=\"efer\" bitsize=\"64\"/>\n"
    "  <reg name=\"st0\" bitsize=\"80\" type=\"i387_ext\"/>\n"
    "  <!-- a comment with <reg name=\"bogus\" bitsize=\"8\"/> inside -->\n"
    "  <reg name=\"xmm0\" bitsize=\"128\" regnum=\"40\"/>\n"
    "  <reg name=\"mxcsr\" bitsize=\"32\"/>\n"
    "</feature>\n";

typedef struct fake_docs {
    int fetches;
    bool loop;
} fake_docs_t;

static int fake_fetch(void *opaque, const char *name, char **out, size_t *len)
{
    fake_docs_t *f = opaque;
    const char *doc;

    f->fetches++;
    if (f->loop) {
        doc = "<target><xi:include href=\"target.xml\"/></target>";
    } else if (strcmp(name, "target.xml") == 0) {
        doc = target_xml;
    } else if (strcmp(name, "i386-64bit.xml") == 0) {
        doc = core_xml;
    } else {
        return GPM_ENOENT;
    }
    *len = strlen(doc);
    *out = malloc(*len);
    memcpy(*out, doc, *len);
    return 0;
}

static void test_tdesc(void **state)
{
    fake_docs_t f = {0, false};
    gpm__tdesc_t *td = malloc(sizeof(*td));

    (void)state;
    assert_int_equal(gpm__tdesc_load(fake_fetch, &f, td), 0);
    assert_int_equal(f.fetches, 2);
    assert_string_equal(td->arch, "i386:x86-64");
    assert_int_equal(gpm__tdesc_find(td, "rax"), 0);
    assert_int_equal(gpm__tdesc_find(td, "rdi"), 5);
    assert_int_equal(gpm__tdesc_find(td, "rip"), 16);
    assert_int_equal(gpm__tdesc_find(td, "eflags"), 17);
    assert_int_equal(gpm__tdesc_find(td, "cs"), 18);
    assert_int_equal(gpm__tdesc_find(td, "fs_base"), 24);
    assert_int_equal(gpm__tdesc_find(td, "k_gs_base"), 26);
    assert_int_equal(gpm__tdesc_find(td, "cr3"), 29);
    assert_int_equal(gpm__tdesc_find(td, "efer"), 32);
    assert_int_equal(gpm__tdesc_find(td, "st0"), 33);
    assert_int_equal(gpm__tdesc_find(td, "orig_rax"), -1);
    assert_int_equal(gpm__tdesc_find(td, "bogus"), -1);
    assert_int_equal(gpm__tdesc_find(td, "xmm0"), 40);
    assert_int_equal(gpm__tdesc_find(td, "mxcsr"), 41);
    assert_int_equal(td->nregs, 42);
    assert_int_equal(td->regs[17].bitsize, 32);
    /* 'g' offsets: 17 x 8 bytes, then eflags and 6 segments of 4. */
    assert_int_equal(td->regs[16].g_offset, 128);
    assert_int_equal(td->regs[18].g_offset, 140);
    assert_int_equal(td->regs[24].g_offset, 164);
    assert_int_equal(td->regs[29].g_offset, 164 + 5 * 8);
    assert_int_equal(td->regs[33].g_offset, 164 + 9 * 8);
    /* After the gap 34..39 the layout is unknown. */
    assert_int_equal(td->regs[40].g_offset, -1);
    free(td);
}

static void test_tdesc_errors(void **state)
{
    fake_docs_t f = {0, true};
    gpm__tdesc_t *td = malloc(sizeof(*td));

    (void)state;
    /* Self-inclusion is cut off by the depth and document limits. */
    assert_int_equal(gpm__tdesc_load(fake_fetch, &f, td), GPM_EPROTO);
    assert_true(f.fetches <= (int)GPM__TDESC_MAX_DOCS);
    free(td);
}

static int str_fetch(void *opaque, const char *name, char **out, size_t *len)
{
    const char *doc = opaque;

    (void)name;
    *len = strlen(doc);
    *out = malloc(*len + 1);
    memcpy(*out, doc, *len + 1);
    return 0;
}

static void test_tdesc_malformed(void **state)
{
    static const char *bad[] = {
        "<target><reg name=\"a\" bitsize=\"12\"/></target>",
        "<target><reg name=\"a\"/></target>",
        "<target><reg name=\"a\" bitsize=\"64\" regnum=\"4096\"/></target>",
        ("<target><reg name=\"a\" bitsize=\"64\"/><reg name=\"b\" "
         "bitsize=\"64\" regnum=\"0\"/></target>"),
        "<target><!-- unterminated",
        "<target><reg name=\"a",
        "<target></target>",
        "<target><xi:include/></target>",
    };
    gpm__tdesc_t *td = malloc(sizeof(*td));
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gpm__tdesc_load(str_fetch, (void *)bad[i], td),
                         GPM_EPROTO);
    }
    free(td);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_basic),
        cmocka_unit_test(test_parse_bad_checksum),
        cmocka_unit_test(test_parse_split_every_byte),
        cmocka_unit_test(test_parse_resync_and_noise),
        cmocka_unit_test(test_parse_too_long),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_stop_replies),
        cmocka_unit_test(test_tdesc),
        cmocka_unit_test(test_tdesc_errors),
        cmocka_unit_test(test_tdesc_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
