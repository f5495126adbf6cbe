/*
 * test_owner.c - issue 11 in the core: the bounded, resynchronising daemon
 * frame parser, channel ownership by guest process, replacing the daemon,
 * and the per-process quota of anonymous channels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "core/internal.h"
#include "elf_builder.h"
#include "fake_cpu.h"

#define DAEMON  100
#define PLUGIN  300
#define SNOOPER 666

typedef struct fix {
    gpm_manager_t *m;
    fake_cpu_t *cpu;
    GPtrArray *events; /* gpm_event_type_t, name and pid as strings */
    gpm_channel_id_t daemon;
    char *dir;
    char *elf;
} fix_t;

static void ev_cb(const gpm_event_t *ev, void *opaque)
{
    fix_t *f = opaque;

    g_ptr_array_add(f->events, g_strdup_printf("%d|%s|%lld|%u", ev->type,
                                               ev->name ? ev->name : "",
                                               (long long)ev->pid, ev->stage));
}

static void recv_nothing_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                            void *opaque)
{
    (void)id;
    (void)buf;
    (void)len;
    (void)opaque;
}

static int setup(void **state)
{
    fix_t *f = g_new0(fix_t, 1);

    f->cpu = g_new(fake_cpu_t, 1);
    fake_init(f->cpu);
    f->events = g_ptr_array_new_with_free_func(g_free);
    assert_int_equal(gpm_manager_new(NULL, &f->m), 0);
    gpm_manager_set_event_cb(f->m, ev_cb, f);
    assert_int_equal(gpm_daemon_channel(f->m, &f->daemon), 0);
    f->dir = g_dir_make_tmp("gpmowner-XXXXXX", NULL);
    f->elf = g_build_filename(f->dir, "hello", NULL);
    assert_int_equal(
        elf_write(f->elf, &(elf_spec_t){true, 62, true, 1, "hello"}), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;

    gpm_manager_free(f->m);
    g_unlink(f->elf);
    g_rmdir(f->dir);
    g_free(f->elf);
    g_free(f->dir);
    g_ptr_array_free(f->events, TRUE);
    g_free(f->cpu);
    g_free(f);
    return 0;
}

static size_t put_frame(uint8_t *p, uint16_t type, uint32_t seq,
                        const void *payload, uint32_t len)
{
    le32(p, GPM_DFRAME_MAGIC);
    le16(p + 4, GPM_DFRAME_VERSION);
    le16(p + 6, type);
    le32(p + 8, seq);
    le32(p + 12, len);
    if (payload != NULL)
        memcpy(p + 16, payload, len);
    return 16 + len;
}

static size_t put_hello(uint8_t *p, uint32_t pid)
{
    uint8_t pl[8];

    le32(pl, pid);
    le32(pl + 4, 1);
    return put_frame(p, GPM_DFRAME_HELLO, 0, pl, 8);
}

/* Guest process @tgid writes @len bytes at fake memory offset 0 to @id. */
static int64_t guest_write(fix_t *f, int64_t tgid, gpm_channel_id_t id,
                           size_t len)
{
    return fake_hc_as(f->m, f->cpu, tgid, GPM_HC_OP_WRITE, id, FAKE_BASE, len,
                      NULL);
}

static unsigned count_events(fix_t *f, gpm_event_type_t type)
{
    unsigned n = 0;
    char prefix[16];

    snprintf(prefix, sizeof(prefix), "%d|", type);
    for (guint i = 0; i < f->events->len; i++)
        if (g_str_has_prefix(g_ptr_array_index(f->events, i), prefix))
            n++;
    return n;
}

/* D1: a flood of bogus headers costs bounded memory and one report. */
static void test_header_flood(void **state)
{
    fix_t *f = *state;
    size_t len = sizeof(f->cpu->mem), n;
    gpm_manager_stats_t st;
    int64_t t0, seconds;

    assert_int_equal(gpm_daemon_reset(f->m, DAEMON), 0);
    for (size_t off = 0; off + 16 <= len; off += 16)
        put_frame(f->cpu->mem + off, GPM_DFRAME_STARTED, 1, NULL, 8192);
    /* 256 writes of 32 KiB: 8 MiB of headers that promise 8 KiB each. */
    t0 = g_get_monotonic_time();
    for (unsigned i = 0; i < 256; i++) {
        assert_int_equal(guest_write(f, DAEMON, f->daemon, len), (int64_t)len);
        assert_true(f->m->rx_len <= GPM__DRX_CAP);
    }
    gpm_manager_stats(f->m, &st);
    assert_true(st.protocol_errors >= 256 * (len / 16) - 1);
    /* Reports are rate-limited to one a second, not one per frame. */
    seconds = (g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
    assert_true(count_events(f, GPM_EVENT_PROTOCOL_ERROR) <= seconds + 2);
    /* The link is still in sync: a HELLO right after is understood. */
    n = put_hello(f->cpu->mem, DAEMON);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_DAEMON_READY), 1);
}

/* D2: a frame that never completes is dropped after a while. */
static void test_stuck_frame_expires(void **state)
{
    fix_t *f = *state;
    uint8_t pl[GPM__DREPLY_MAX] = {0};
    size_t n;

    assert_int_equal(gpm_daemon_reset(f->m, DAEMON), 0);
    /* A valid FAILED header promising the longest payload, and 8 bytes. */
    n = put_frame(f->cpu->mem, GPM_DFRAME_FAILED, 7, pl, GPM__DREPLY_MAX);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, 24), 24);
    assert_int_equal(f->m->rx_len, 24);
    g_usleep(1100 * 1000);
    /* The HELLO that follows is found although it began inside the frame. */
    n = put_hello(f->cpu->mem, DAEMON);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_DAEMON_READY), 1);
    assert_int_equal(count_events(f, GPM_EVENT_PLUGIN_FAILED), 0);
    assert_int_equal(f->m->rx_len, 0);
}

/* Replies of a type and length the daemon never sends are refused. */
static void test_reply_bounds(void **state)
{
    fix_t *f = *state;
    uint8_t pl[300] = {0};
    size_t n = 0;

    assert_int_equal(gpm_daemon_reset(f->m, DAEMON), 0);
    n += put_frame(f->cpu->mem + n, GPM_DFRAME_LOAD, 1, pl, 8);
    n += put_frame(f->cpu->mem + n, GPM_DFRAME_HELLO, 1, pl, 4);
    n += put_frame(f->cpu->mem + n, GPM_DFRAME_STARTED, 1, pl, 4 + 256);
    n += put_hello(f->cpu->mem + n, DAEMON);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_PLUGIN_STARTED), 0);
    assert_int_equal(count_events(f, GPM_EVENT_DAEMON_READY), 1);
    assert_int_equal(count_events(f, GPM_EVENT_PROTOCOL_ERROR), 1);
}

/* D4, D9: only the daemon speaks for it, only a plugin uses its channel. */
static void test_ownership(void **state)
{
    fix_t *f = *state;
    gpm_channel_id_t id;
    uint8_t pl[16];
    uint8_t out[8192];
    size_t n, got;
    int64_t owner;
    uint32_t seq;

    /* Before the host names the daemon, known processes must wait. */
    n = put_hello(f->cpu->mem, 4242);
    assert_int_equal(guest_write(f, SNOOPER, f->daemon, n), GPM_HC_EBUSY);
    assert_int_equal(gpm_daemon_reset(f->m, DAEMON), 0);
    assert_int_equal(guest_write(f, SNOOPER, f->daemon, n), GPM_HC_EACCES);
    assert_int_equal(fake_hc_as(f->m, f->cpu, SNOOPER, GPM_HC_OP_READ,
                                f->daemon, FAKE_BASE, 64, NULL),
                     GPM_HC_EACCES);
    assert_int_equal(count_events(f, GPM_EVENT_DAEMON_READY), 0);

    assert_int_equal(gpm_guest_plugin_add(f->m, "hello", f->elf,
                                          recv_nothing_cb, NULL, NULL, &id,
                                          NULL, 0),
                     0);
    assert_int_equal(gpm_channel_read(f->m, f->daemon, out, sizeof(out), &got),
                     0);
    seq = (uint32_t)out[8] | (uint32_t)out[9] << 8;
    assert_int_equal(gpm_channel_owner(f->m, id, &owner), 0);
    assert_int_equal(owner, GPM_OWNER_PENDING);
    /* The plugin may be faster than STARTED: it is told to retry. */
    memcpy(f->cpu->mem + 4096, "hello", 5);
    assert_int_equal(fake_hc_as(f->m, f->cpu, PLUGIN, GPM_HC_OP_GET_CHANNEL, 0,
                                FAKE_BASE + 4096, 5, NULL),
                     id);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, PLUGIN, GPM_HC_OP_START, id, 0, 0, NULL),
        GPM_HC_EBUSY);
    /* A forged STARTED from another process has no effect. */
    le32(pl, SNOOPER);
    memcpy(pl + 4, "hello", 5);
    n = put_frame(f->cpu->mem, GPM_DFRAME_STARTED, seq, pl, 9);
    assert_int_equal(guest_write(f, SNOOPER, f->daemon, n), GPM_HC_EACCES);
    assert_int_equal(count_events(f, GPM_EVENT_PLUGIN_STARTED), 0);
    /* The daemon's STARTED gives the channel to the plugin's process. */
    le32(pl, PLUGIN);
    n = put_frame(f->cpu->mem, GPM_DFRAME_STARTED, seq, pl, 9);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_PLUGIN_STARTED), 1);
    assert_int_equal(gpm_channel_owner(f->m, id, &owner), 0);
    assert_int_equal(owner, PLUGIN);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, PLUGIN, GPM_HC_OP_START, id, 0, 0, NULL), 0);
    assert_int_equal(gpm_channel_write(f->m, id, "secret", 6), 0);
    assert_int_equal(fake_hc_as(f->m, f->cpu, SNOOPER, GPM_HC_OP_READ, id,
                                FAKE_BASE, 64, NULL),
                     GPM_HC_EACCES);
    assert_int_equal(fake_hc_as(f->m, f->cpu, SNOOPER, GPM_HC_OP_GET_CHANNEL, 0,
                                FAKE_BASE + 4096, 5, NULL),
                     GPM_HC_EACCES);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, SNOOPER, GPM_HC_OP_STOP, id, 0, 0, NULL),
        GPM_HC_EACCES);
    assert_int_equal(guest_write(f, SNOOPER, id, 6), GPM_HC_EACCES);
    assert_int_equal(fake_hc_as(f->m, f->cpu, PLUGIN, GPM_HC_OP_READ, id,
                                FAKE_BASE, 64, NULL),
                     6);
    /* An unknown caller is not checked (hosts without tgids). */
    assert_int_equal(guest_write(f, GPM_TGID_UNKNOWN, id, 6), 6);
    /* A forged EXITED is refused; the real one retires the owner. */
    le32(pl, PLUGIN);
    le32(pl + 4, 0);
    memcpy(pl + 8, "hello", 5);
    n = put_frame(f->cpu->mem, GPM_DFRAME_EXITED, seq, pl, 13);
    assert_int_equal(guest_write(f, SNOOPER, f->daemon, n), GPM_HC_EACCES);
    assert_int_equal(count_events(f, GPM_EVENT_PLUGIN_EXITED), 0);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_PLUGIN_EXITED), 1);
    assert_int_equal(gpm_channel_owner(f->m, id, &owner), 0);
    assert_int_equal(owner, GPM_OWNER_NONE);
    assert_int_equal(fake_hc_as(f->m, f->cpu, PLUGIN, GPM_HC_OP_READ, id,
                                FAKE_BASE, 64, NULL),
                     GPM_HC_EACCES);

    /* The compatibility mode lets every process through. */
    gpm_manager_set_ownership(f->m, false);
    assert_int_equal(guest_write(f, SNOOPER, id, 6), 6);
}

/* D3, D5: a replaced daemon gets nothing old, and its loads fail at once. */
static void test_daemon_reset(void **state)
{
    fix_t *f = *state;
    gpm_channel_id_t id;
    size_t bytes, n;
    char want[64];

    assert_int_equal(gpm_daemon_reset(f->m, DAEMON), 0);
    assert_int_equal(gpm_guest_plugin_add(f->m, "hello", f->elf,
                                          recv_nothing_cb, NULL, NULL, &id,
                                          NULL, 0),
                     0);
    assert_int_equal(gpm_channel_pending(f->m, f->daemon, &bytes, NULL), 0);
    assert_true(bytes > 0);
    /* A half-received frame of the old daemon is dropped too. */
    n = put_hello(f->cpu->mem, DAEMON);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, 10), 10);
    assert_int_equal(gpm_daemon_reset(f->m, GPM_OWNER_PENDING), 1);
    assert_int_equal(gpm_channel_pending(f->m, f->daemon, &bytes, NULL), 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(f->m->rx_len, 0);
    assert_int_equal(f->events->len, 1);
    snprintf(want, sizeof(want), "%d|hello|-1|%d", GPM_EVENT_PLUGIN_FAILED,
             GPM_DSTAGE_LOST);
    assert_string_equal(g_ptr_array_index(f->events, 0), want);
    /* The old daemon is refused; the new one waits for its name. */
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), GPM_HC_EACCES);
    assert_int_equal(guest_write(f, DAEMON + 1, f->daemon, n), GPM_HC_EBUSY);
    assert_int_equal(gpm_daemon_reset(f->m, DAEMON + 1), 0);
    n = put_hello(f->cpu->mem, DAEMON + 1);
    assert_int_equal(guest_write(f, DAEMON + 1, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_DAEMON_READY), 1);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), GPM_HC_EACCES);
}

/* D8: anonymous channels are freed and rationed per process. */
static void test_guest_channels(void **state)
{
    fix_t *f = *state;
    gpm_manager_stats_t st;
    int64_t first = 0, r;
    unsigned quota = GPM__DEFAULT_GUEST_QUOTA;

    for (unsigned i = 0; i < quota; i++) {
        r = fake_hc_as(f->m, f->cpu, 400, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL);
        assert_true(r > 0);
        if (i == 0)
            first = r;
    }
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 400, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL),
        GPM_HC_ENOSPC);
    /* Another process is not starved, and cannot use 400's channels. */
    r = fake_hc_as(f->m, f->cpu, 401, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL);
    assert_true(r > 0);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 401, GPM_HC_OP_STOP, first, 0, 0, NULL),
        GPM_HC_EACCES);
    /* STOP by its maker frees a channel and its place in the quota. */
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 400, GPM_HC_OP_STOP, first, 0, 0, NULL), 0);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 400, GPM_HC_OP_START, first, 0, 0, NULL),
        GPM_HC_EBADF);
    assert_true(fake_hc_as(f->m, f->cpu, 400, GPM_HC_OP_GET_MANAGER, 0, 0, 0,
                           NULL) > 0);
    /* A process that ended gives every channel back. */
    assert_int_equal(gpm_process_gone(f->m, 400), quota);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.channels, 2); /* the daemon's and 401's */
    assert_int_equal(g_hash_table_size(f->m->per_tgid), 1);
    assert_int_equal(gpm_manager_set_guest_quota(f->m, 1), 0);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 401, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL),
        GPM_HC_ENOSPC);
    assert_int_equal(gpm_manager_set_guest_quota(f->m, 100000), GPM_EINVAL);
}

/* D8 for processes that are not plugins: a full table asks the daemon. */
static void test_probe_frees_ended_processes(void **state)
{
    fix_t *f = *state;
    uint8_t out[2048], pl[8];
    size_t got, n;
    guint evs;
    int64_t r;

    assert_int_equal(gpm_daemon_probe(f->m), GPM_EAGAIN); /* nobody */
    assert_int_equal(gpm_daemon_reset(f->m, DAEMON), 0);
    for (int64_t t = 1000; t < 1008; t++)
        for (unsigned i = 0; i < GPM__DEFAULT_GUEST_QUOTA; i++)
            assert_true(fake_hc_as(f->m, f->cpu, t, GPM_HC_OP_GET_MANAGER, 0, 0,
                                   0, NULL) > 0);
    /* The table (256) is full: refused, and a PROBE goes to the daemon. */
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 2000, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL),
        GPM_HC_ENOSPC);
    assert_int_equal(gpm_channel_read(f->m, f->daemon, out, sizeof(out), &got),
                     0);
    assert_int_equal(got, 16 + 8 * 4);
    assert_int_equal(out[6], GPM_DFRAME_PROBE);
    /* Rate-limited: a second refusal queues no second PROBE. */
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, 2000, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL),
        GPM_HC_ENOSPC);
    assert_int_equal(gpm_channel_pending(f->m, f->daemon, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gpm_daemon_probe(f->m), GPM_EAGAIN);
    /* GONE from another process changes nothing; from the daemon it frees. */
    le32(pl, 1003);
    le32(pl + 4, 1005);
    n = put_frame(f->cpu->mem, GPM_DFRAME_GONE, 0, pl, 8);
    evs = f->events->len;
    assert_int_equal(guest_write(f, SNOOPER, f->daemon, n), GPM_HC_EACCES);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(f->events->len, evs);
    r = fake_hc_as(f->m, f->cpu, 2000, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL);
    assert_true(r > 0);
    assert_int_equal(g_hash_table_size(f->m->per_tgid), 7);
    /* A GONE whose length is no multiple of 4 is a protocol error. */
    n = put_frame(f->cpu->mem, GPM_DFRAME_GONE, 0, pl, 6);
    assert_int_equal(guest_write(f, DAEMON, f->daemon, n), (int64_t)n);
    assert_int_equal(count_events(f, GPM_EVENT_PROTOCOL_ERROR), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_header_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stuck_frame_expires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reply_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ownership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daemon_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_channels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_frees_ended_processes, setup,
                                        teardown),
    };

    return cmocka_run_group_tests_name("owner", tests, NULL, NULL);
}
