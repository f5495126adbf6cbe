/*
 * test_osi_snapshot.c - the OSI provider's PANDA-independent half: the
 * agent's snapshot (csrc/panda/osi_snapshot.c) and OSI's container rules,
 * with elements shaped like PANDA's OsiProc and OsiModule. Run under ASan
 * (leaks included) and valgrind by make ctest / ctest-valgrind.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <glib.h>

#include "../../csrc/panda/osi_snapshot.c"

/* Our own stand-ins with the layout of OSI's element types. */
typedef struct {
    uint64_t taskd, pgd, asid;
    int32_t pid, ppid;
    char *name;
    void *pages;
    uint64_t create_time;
} test_proc_t;

typedef struct {
    uint64_t modd, base, size;
    char *file, *name;
    uint64_t offset, flags;
} test_module_t;

static void proc_contents_free(gpointer p)
{
    g_free(((test_proc_t *)p)->name);
    g_free(((test_proc_t *)p)->pages);
}

static void module_contents_free(gpointer p)
{
    g_free(((test_module_t *)p)->file);
    g_free(((test_module_t *)p)->name);
}

static void fill_proc(void *elem, const gpm_osi_proc_t *p)
{
    test_proc_t *t = elem;

    t->pid = p->pid;
    t->ppid = p->ppid;
    t->create_time = p->start_time;
    t->name = g_strdup(p->name);
}

static void fill_module(void *elem, const gpm_osi_map_t *m)
{
    test_module_t *t = elem;
    const char *slash = strrchr(m->path, '/');

    t->base = m->start;
    t->size = m->end - m->start;
    t->offset = m->offset;
    t->file = g_strdup(m->path);
    t->name = g_strdup(slash ? slash + 1 : m->path);
}

static void put32(GByteArray *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
                    (uint8_t)(v >> 24)};

    g_byte_array_append(b, p, 4);
}

static void put64(GByteArray *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

static void add_proc(GByteArray *b, int32_t pid, int32_t ppid, const char *name)
{
    uint32_t nl = (uint32_t)strlen(name);

    put32(b, GPM_PROCS_PROC_FIXED + nl);
    put32(b, (uint32_t)pid);
    put32(b, (uint32_t)ppid);
    put32(b, 0);
    put32(b, 'S');
    put64(b, 1000u + (uint64_t)pid);
    put32(b, nl);
    put32(b, 0);
    put32(b, 0);
    g_byte_array_append(b, (const guint8 *)name, nl);
}

static void add_map(GByteArray *b, uint64_t start, uint64_t end,
                    const char *path)
{
    uint32_t pl = (uint32_t)strlen(path);

    put32(b, GPM_PROCS_MAP_FIXED + pl);
    put64(b, start);
    put64(b, end);
    put64(b, 0x1000);
    g_byte_array_append(b, (const guint8 *)"r-xp", 4);
    put64(b, 42);
    put32(b, pl);
    g_byte_array_append(b, (const guint8 *)path, pl);
}

/* A reply frame for @req around @records. */
static GByteArray *reply(const uint8_t *req, int32_t status,
                         const GByteArray *records, uint32_t count)
{
    GByteArray *b = g_byte_array_new();

    put32(b, GPM_PROCS_MAGIC);
    g_byte_array_append(b, req, 8); /* op, seq */
    put32(b, (uint32_t)status);
    put32(b, count);
    put32(b, records ? records->len : 0);
    if (records)
        g_byte_array_append(b, records->data, records->len);
    return b;
}

static gpm_osi_snapshot_t *snap;

static int setup(void **state)
{
    (void)state;
    snap = gpm_osi_snapshot_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gpm_osi_snapshot_free(snap);
    return 0;
}

/* Sends a PS round: request, then the reply fed in pieces of @piece. */
static void ps_round(const char *const *names, int n, size_t piece)
{
    uint8_t req[GPM_PROCS_REQ_LEN];
    GByteArray *recs = g_byte_array_new(), *r;
    size_t off;
    int i;

    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 100000, 1000), 1);
    assert_int_equal(req[0], GPM_PROCS_OP_PS);
    for (i = 0; i < n; i++)
        add_proc(recs, i + 1, i, names[i]);
    r = reply(req, 0, recs, (uint32_t)n);
    for (off = 0; off < r->len; off += piece) {
        size_t k = r->len - off < piece ? r->len - off : piece;

        assert_int_equal(gpm_osi_snapshot_feed(snap, r->data + off, k), 0);
    }
    g_byte_array_free(recs, TRUE);
    g_byte_array_free(r, TRUE);
}

static void test_nothing_without_agent(void **state)
{
    GArray *out = NULL;

    (void)state;
    assert_int_equal(gpm_osi_snapshot_fill_procs(snap, &out,
                                                 sizeof(test_proc_t),
                                                 proc_contents_free, fill_proc),
                     -ENODATA);
    assert_null(out);
}

static void test_new_container_has_clear_func(void **state)
{
    const char *names[] = {"init", "sh", "a name with (parens)"};
    GArray *out = NULL;
    test_proc_t *p;

    (void)state;
    ps_round(names, 3, 7);
    assert_int_equal(gpm_osi_snapshot_fill_procs(snap, &out,
                                                 sizeof(test_proc_t),
                                                 proc_contents_free, fill_proc),
                     3);
    assert_non_null(out);
    assert_int_equal(out->len, 3);
    p = &g_array_index(out, test_proc_t, 2);
    assert_int_equal(p->pid, 3);
    assert_int_equal(p->ppid, 2);
    assert_string_equal(p->name, "a name with (parens)");
    assert_int_equal(p->create_time, 1003);
    /* The clear function frees every name: ASan/valgrind see no leak. */
    g_array_free(out, TRUE);
}

static void test_appends_to_existing(void **state)
{
    const char *names[] = {"init", "sh"};
    GArray *out = g_array_new(FALSE, TRUE, sizeof(test_proc_t));
    test_proc_t mine = {0};

    (void)state;
    g_array_set_clear_func(out, proc_contents_free);
    mine.pid = 99;
    mine.name = g_strdup("from another provider");
    g_array_append_val(out, mine);
    ps_round(names, 2, 1 << 20);
    assert_int_equal(gpm_osi_snapshot_fill_procs(snap, &out,
                                                 sizeof(test_proc_t),
                                                 proc_contents_free, fill_proc),
                     2);
    assert_int_equal(out->len, 3);
    assert_int_equal(g_array_index(out, test_proc_t, 0).pid, 99);
    assert_string_equal(g_array_index(out, test_proc_t, 2).name, "sh");
    g_array_free(out, TRUE);
}

/* An element type of another size than test_proc_t. */
typedef struct {
    char *text;
} other_t;

static void other_contents_free(gpointer p)
{
    g_free(((other_t *)p)->text);
}

static void test_error_frees_container(void **state)
{
    const char *names[] = {"init"};
    GArray *out = g_array_new(FALSE, TRUE, sizeof(other_t));
    other_t o = {0};

    (void)state;
    g_array_set_clear_func(out, other_contents_free);
    o.text = g_strdup("owned by the array");
    g_array_append_val(out, o);
    ps_round(names, 1, 5);
    /* A container of another element size: freed, contents too. */
    assert_int_equal(gpm_osi_snapshot_fill_procs(snap, &out,
                                                 sizeof(test_proc_t),
                                                 proc_contents_free, fill_proc),
                     -EINVAL);
    assert_null(out);
}

static void test_maps_after_first_wish(void **state)
{
    const char *names[] = {"init"};
    uint8_t req[GPM_PROCS_REQ_LEN];
    GByteArray *recs = g_byte_array_new(), *r;
    GArray *out = NULL;
    test_module_t *m;

    (void)state;
    ps_round(names, 1, 3);
    /* The first question finds nothing and makes the pid wanted. */
    assert_int_equal(
        gpm_osi_snapshot_fill_maps(snap, 1, &out, sizeof(test_module_t),
                                   module_contents_free, fill_module),
        -ENODATA);
    assert_null(out);
    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 100001, 1000), 1);
    assert_int_equal(req[0], GPM_PROCS_OP_MAPS);
    assert_int_equal(req[8], 1);
    add_map(recs, 0x400000, 0x401000, "/bin/busybox");
    add_map(recs, 0x7ff000, 0x800000, "");
    r = reply(req, 0, recs, 2);
    assert_int_equal(gpm_osi_snapshot_feed(snap, r->data, r->len), 0);
    assert_int_equal(
        gpm_osi_snapshot_fill_maps(snap, 1, &out, sizeof(test_module_t),
                                   module_contents_free, fill_module),
        2);
    m = &g_array_index(out, test_module_t, 0);
    assert_int_equal(m->base, 0x400000);
    assert_int_equal(m->size, 0x1000);
    assert_string_equal(m->name, "busybox");
    assert_string_equal(g_array_index(out, test_module_t, 1).file, "");
    g_array_free(out, TRUE);
    /* Nothing else is due until the period passes. */
    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 100002, 1000), 0);
    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 101001, 1000), 1);
    assert_int_equal(req[0], GPM_PROCS_OP_PS);
    g_byte_array_free(recs, TRUE);
    g_byte_array_free(r, TRUE);
}

static void test_hostile_replies_keep_last_good(void **state)
{
    const char *names[] = {"init", "sh"};
    uint8_t req[GPM_PROCS_REQ_LEN];
    GByteArray *recs = g_byte_array_new(), *r;
    GArray *out = NULL;
    uint64_t replies, rejected;
    uint8_t junk[64];

    (void)state;
    ps_round(names, 2, 11);
    /* A record whose strings run past it. */
    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 200000, 1000), 1);
    add_proc(recs, 5, 1, "evil");
    recs->data[28] = 0xff; /* name_len */
    r = reply(req, 0, recs, 1);
    assert_int_equal(gpm_osi_snapshot_feed(snap, r->data, r->len), -EPROTO);
    g_byte_array_free(r, TRUE);
    /* A bad magic, and a body longer than the protocol allows. */
    memset(junk, 0x41, sizeof(junk));
    assert_int_equal(gpm_osi_snapshot_feed(snap, junk, sizeof(junk)), -EPROTO);
    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 300000, 1000), 1);
    r = reply(req, 0, NULL, 0);
    r->data[20] = 0xff;
    r->data[21] = 0xff;
    r->data[22] = 0xff;
    r->data[23] = 0x7f;
    assert_int_equal(gpm_osi_snapshot_feed(snap, r->data, r->len), -EPROTO);
    g_byte_array_free(r, TRUE);
    /* A reply to a request never made is ignored. */
    assert_int_equal(gpm_osi_snapshot_next_request(snap, req, 400000, 1000), 1);
    req[4] ^= 0x55;
    r = reply(req, 0, NULL, 0);
    assert_int_equal(gpm_osi_snapshot_feed(snap, r->data, r->len), 0);
    g_byte_array_free(r, TRUE);
    gpm_osi_snapshot_counts(snap, &replies, &rejected);
    assert_int_equal(replies, 1);
    assert_int_equal(rejected, 3);
    assert_int_equal(gpm_osi_snapshot_fill_procs(snap, &out,
                                                 sizeof(test_proc_t),
                                                 proc_contents_free, fill_proc),
                     2);
    g_array_free(out, TRUE);
    /* The agent gone: nothing again. */
    gpm_osi_snapshot_reset(snap);
    out = NULL;
    assert_int_equal(gpm_osi_snapshot_fill_procs(snap, &out,
                                                 sizeof(test_proc_t),
                                                 proc_contents_free, fill_proc),
                     -ENODATA);
    assert_null(out);
    g_byte_array_free(recs, TRUE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_without_agent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_new_container_has_clear_func,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_to_existing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_error_frees_container, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_maps_after_first_wish, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hostile_replies_keep_last_good,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
