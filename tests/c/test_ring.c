/*
 * test_ring.c - the host side of the shared-memory rings (core/ring.c)
 * against a guest played by the test: attach, message boundaries both
 * ways, the READY handshake, backpressure, STOP, and a hostile guest that
 * scribbles on its indices and record headers (only its own ring breaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <glib.h>

#include "core/internal.h"
#include "fake_cpu.h"
#include "gpm/ring_abi.h"

#define RING_PHYS 0x1000000u
#define NSLOTS    2u
#define PROC      100
#define OTHER     200

typedef struct fix {
    gpm_manager_t *m;
    fake_cpu_t *cpu;
    uint8_t *region;
    gpm_channel_id_t a, b;
    GPtrArray *got;    /* GBytes per delivered message */
    GPtrArray *errors; /* GUEST_ERROR texts */
    unsigned kicks, bells;
} fix_t;

static void recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                    void *opaque)
{
    fix_t *f = opaque;

    (void)id;
    g_ptr_array_add(f->got, g_bytes_new(buf, len));
}

static void ev_cb(const gpm_event_t *ev, void *opaque)
{
    fix_t *f = opaque;

    if (ev->type == GPM_EVENT_GUEST_ERROR)
        g_ptr_array_add(f->errors, g_strdup(ev->text));
}

static void kick_cb(void *opaque)
{
    ((fix_t *)opaque)->kicks++;
}

static void doorbell_cb(gpm_channel_id_t id, void *opaque)
{
    (void)id;
    ((fix_t *)opaque)->bells++;
}

static int setup(void **state)
{
    fix_t *f = g_new0(fix_t, 1);

    f->cpu = g_new(fake_cpu_t, 1);
    fake_init(f->cpu);
    f->region = g_malloc0(NSLOTS * GPM_RING_SLOT_SIZE);
    f->got = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    f->errors = g_ptr_array_new_with_free_func(g_free);
    assert_int_equal(gpm_manager_new(NULL, &f->m), 0);
    gpm_manager_set_event_cb(f->m, ev_cb, f);
    assert_int_equal(gpm_channel_allocate(f->m, "a", recv_cb, NULL, f, &f->a),
                     0);
    assert_int_equal(gpm_channel_allocate(f->m, "b", recv_cb, NULL, f, &f->b),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;

    gpm_manager_free(f->m);
    g_ptr_array_free(f->got, TRUE);
    g_ptr_array_free(f->errors, TRUE);
    g_free(f->region);
    g_free(f->cpu);
    g_free(f);
    return 0;
}

static void enable(fix_t *f)
{
    assert_int_equal(gpm_manager_set_rings(f->m, RING_PHYS,
                                           NSLOTS * GPM_RING_SLOT_SIZE,
                                           f->region, kick_cb, f),
                     0);
}

static int64_t attach(fix_t *f, gpm_channel_id_t id, int64_t tgid)
{
    return fake_hc_as(f->m, f->cpu, tgid, GPM_HC_OP_RING_ATTACH, id, 0, 0,
                      NULL);
}

/* The guest's view of a pair. */
typedef struct gring {
    uint8_t *pair;
    uint32_t g2h_head, h2g_tail;
} gring_t;

static uint32_t rd(const gring_t *g, uint32_t off)
{
    uint32_t v;

    memcpy(&v, g->pair + off, 4);
    return GUINT32_FROM_LE(v);
}

static void wr(gring_t *g, uint32_t off, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(g->pair + off, &v, 4);
}

static gring_t open_ring(fix_t *f, gpm_channel_id_t id, int64_t tgid)
{
    int64_t phys = attach(f, id, tgid);
    gring_t g = {0};

    assert_true(phys >= RING_PHYS);
    g.pair = f->region + (phys - RING_PHYS);
    assert_int_equal(rd(&g, GPM_RING_OFF_MAGIC), GPM_RING_MAGIC);
    assert_int_equal(rd(&g, GPM_RING_OFF_CHANNEL), id);
    assert_int_equal(rd(&g, GPM_RING_OFF_DATASIZE), GPM_RING_DATA_SIZE);
    wr(&g, GPM_RING_OFF_READY, GPM_RING_MAGIC);
    return g;
}

/* Writes one record the way the guest library does. */
static void put_record(gring_t *g, const void *p, uint32_t len, bool more)
{
    uint8_t *area = g->pair + GPM_RING_OFF_G2H_DATA;
    uint32_t w[2] = {GUINT32_TO_LE(len | (more ? GPM_RING_MORE : 0)), 0};

    for (uint32_t i = 0; i < len; i++)
        area[(g->g2h_head + 8 + i) % GPM_RING_DATA_SIZE] =
            ((const uint8_t *)p)[i];
    memcpy(area + g->g2h_head % GPM_RING_DATA_SIZE, w, 8);
    g->g2h_head += GPM_RING_REC_SPACE(len);
    wr(g, GPM_RING_OFF_G2H_HEAD, g->g2h_head);
}

/* Reads one host record; returns its length and MORE flag. */
static uint32_t get_record(gring_t *g, uint8_t *dst, bool *more)
{
    uint8_t *area = g->pair + GPM_RING_OFF_H2G_DATA;
    uint32_t w0, len;

    assert_true(rd(g, GPM_RING_OFF_H2G_HEAD) != g->h2g_tail);
    memcpy(&w0, area + g->h2g_tail % GPM_RING_DATA_SIZE, 4);
    w0 = GUINT32_FROM_LE(w0);
    len = w0 & GPM_RING_LEN_MASK;
    *more = (w0 & GPM_RING_MORE) != 0;
    for (uint32_t i = 0; i < len; i++)
        dst[i] = area[(g->h2g_tail + 8 + i) % GPM_RING_DATA_SIZE];
    g->h2g_tail += GPM_RING_REC_SPACE(len);
    wr(g, GPM_RING_OFF_H2G_TAIL, g->h2g_tail);
    return len;
}

static void test_attach_rules(void **state)
{
    fix_t *f = *state;
    gpm_channel_id_t none;

    assert_int_equal(attach(f, f->a, PROC), GPM_HC_ENOSYS);
    enable(f);
    assert_int_equal(attach(f, 9999, PROC), GPM_HC_EBADF);
    assert_int_equal(
        gpm_channel_allocate(f->m, "none", NULL, NULL, NULL, &none), 0);
    assert_int_equal(attach(f, none, PROC), GPM_HC_EPIPE);
    /* A channel owned by PROC is refused to OTHER. */
    assert_int_equal(gpm_channel_set_owner(f->m, f->a, PROC), 0);
    assert_int_equal(attach(f, f->a, OTHER), GPM_HC_EACCES);
    assert_int_equal(attach(f, f->a, PROC), RING_PHYS);
    /* One process may hold at most half the pairs. */
    assert_int_equal(attach(f, f->b, PROC), GPM_HC_ENOSPC);
    assert_int_equal(attach(f, f->b, OTHER), RING_PHYS + GPM_RING_SLOT_SIZE);
    /* Attaching again starts the same pair afresh. */
    assert_int_equal(attach(f, f->a, PROC), RING_PHYS);
}

static void test_guest_to_host(void **state)
{
    fix_t *f = *state;
    static uint8_t big[200000];
    gring_t g;

    enable(f);
    g = open_ring(f, f->a, PROC);
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    put_record(&g, "one", 3, false);
    /* 200000 bytes as records of 64 KiB: one message, one callback. */
    for (uint32_t off = 0; off < sizeof(big); off += GPM_RING_MAX_FRAG) {
        uint32_t n = sizeof(big) - off < GPM_RING_MAX_FRAG ? sizeof(big) - off
                                                           : GPM_RING_MAX_FRAG;
        put_record(&g, big + off, n, off + n < sizeof(big));
        if (off == GPM_RING_MAX_FRAG) {
            /* Half a message is not delivered yet. */
            assert_true(gpm_manager_ring_service(f->m) > 0);
            assert_int_equal(f->got->len, 1);
        }
    }
    put_record(&g, "three", 5, false);
    assert_true(gpm_manager_ring_service(f->m) > 0);
    assert_int_equal(f->got->len, 3);
    {
        gsize n;
        const uint8_t *p = g_bytes_get_data(f->got->pdata[1], &n);

        assert_int_equal(n, sizeof(big));
        assert_memory_equal(p, big, sizeof(big));
        p = g_bytes_get_data(f->got->pdata[2], &n);
        assert_int_equal(n, 5);
        assert_memory_equal(p, "three", 5);
    }
    /* The host gave every byte back. */
    assert_int_equal(rd(&g, GPM_RING_OFF_G2H_TAIL), g.g2h_head);
    assert_int_equal(gpm_manager_ring_service(f->m), 0);
}

static void test_host_to_guest(void **state)
{
    fix_t *f = *state;
    static uint8_t big[100000], out[GPM_RING_MAX_FRAG];
    gring_t g;
    int64_t phys;
    size_t got = 0, pending;
    bool more;

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 13);
    enable(f);
    assert_int_equal(gpm_channel_write(f->m, f->a, "hi", 2), 0);
    /* Attached but not READY: the bytes stay queued for READ. */
    phys = attach(f, f->a, PROC);
    assert_int_equal(phys, RING_PHYS);
    g.pair = f->region;
    g.g2h_head = g.h2g_tail = 0;
    assert_int_equal(gpm_manager_ring_service(f->m), 0);
    assert_int_equal(gpm_channel_pending(f->m, f->a, &pending, NULL), 0);
    assert_int_equal(pending, 2);
    /*
     * Before READY a write still rings the doorbell: guest code that
     * waits on it before its first read (pty_shell) must wake up.
     */
    assert_int_equal(gpm_manager_set_doorbell(f->m, 0x2000000, doorbell_cb, f),
                     0);
    f->kicks = f->bells = 0;
    assert_int_equal(gpm_channel_write(f->m, f->a, "x", 1), 0);
    assert_int_equal(f->bells, 1);
    assert_int_equal(f->kicks, 1);
    wr(&g, GPM_RING_OFF_READY, GPM_RING_MAGIC);
    f->kicks = 0;
    assert_int_equal(gpm_channel_write(f->m, f->a, big, sizeof(big)), 0);
    assert_int_equal(f->kicks, 1); /* a ring channel kicks the thread */
    assert_true(gpm_manager_ring_service(f->m) > 0);
    /* In the ring, not read yet: still queued, and not for READ. */
    assert_int_equal(gpm_channel_pending(f->m, f->a, &pending, NULL), 0);
    assert_int_equal(pending, 2 + 1 + sizeof(big));
    assert_int_equal(fake_hc_as(f->m, f->cpu, PROC, GPM_HC_OP_READ, f->a,
                                FAKE_BASE, 64, NULL),
                     GPM_HC_EINVAL);
    assert_int_equal(get_record(&g, out, &more), 2);
    assert_false(more);
    assert_memory_equal(out, "hi", 2);
    assert_int_equal(get_record(&g, out, &more), 1);
    assert_memory_equal(out, "x", 1);
    while (got < sizeof(big)) {
        uint32_t n = get_record(&g, out, &more);

        assert_memory_equal(out, big + got, n);
        got += n;
        assert_true(more == (got < sizeof(big)));
    }
    assert_int_equal(rd(&g, GPM_RING_OFF_H2G_HEAD), g.h2g_tail);
    /* What the guest consumed leaves the queue at the next pass. */
    gpm_manager_ring_service(f->m);
    assert_int_equal(gpm_channel_pending(f->m, f->a, &pending, NULL), 0);
    assert_int_equal(pending, 0);
}

/* STOP gives the unread bytes back to the queue, minus what was read. */
static void test_stop_requeues(void **state)
{
    fix_t *f = *state;
    uint8_t out[64];
    size_t pending;
    bool more;
    gring_t g;

    enable(f);
    g = open_ring(f, f->a, PROC);
    assert_int_equal(gpm_channel_write(f->m, f->a, "first", 5), 0);
    assert_int_equal(gpm_channel_write(f->m, f->a, "second", 6), 0);
    assert_int_equal(gpm_channel_write(f->m, f->a, "third", 5), 0);
    gpm_manager_ring_service(f->m);
    assert_int_equal(get_record(&g, out, &more), 5);
    /* The guest read "sec" of the second record, then stops. */
    wr(&g, GPM_RING_OFF_H2G_PART, 3);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, PROC, GPM_HC_OP_STOP, f->a, 0, 0, NULL), 0);
    assert_int_equal(gpm_channel_pending(f->m, f->a, &pending, NULL), 0);
    assert_int_equal(pending, 3 + 5);
    /* The channel's next reader, by READ, gets exactly the rest. */
    assert_int_equal(fake_hc_as(f->m, f->cpu, PROC, GPM_HC_OP_READ, f->a,
                                FAKE_BASE, 64, NULL),
                     3);
    assert_memory_equal(f->cpu->mem, "ond", 3);
    assert_int_equal(fake_hc_as(f->m, f->cpu, PROC, GPM_HC_OP_READ, f->a,
                                FAKE_BASE, 64, NULL),
                     5);
    assert_memory_equal(f->cpu->mem, "third", 5);
    gpm_manager_ring_service(f->m);
    assert_int_equal((int32_t)rd(&g, GPM_RING_OFF_STATUS), GPM_HC_EBADF);
}

static void test_backpressure(void **state)
{
    fix_t *f = *state;
    static uint8_t chunk[GPM_RING_MAX_FRAG];
    size_t pending;
    gring_t g;

    enable(f);
    g = open_ring(f, f->a, PROC);
    /* The host fills the ring and keeps the rest queued. */
    for (int i = 0; i < 6; i++)
        assert_int_equal(gpm_channel_write(f->m, f->a, chunk, sizeof(chunk)),
                         0);
    gpm_manager_ring_service(f->m);
    /* Three records fit in 256 KiB; the guest reads one, one more goes. */
    assert_int_equal(rd(&g, GPM_RING_OFF_H2G_HEAD),
                     3 * GPM_RING_REC_SPACE(sizeof(chunk)));
    {
        static uint8_t out[GPM_RING_MAX_FRAG];
        bool more;

        assert_int_equal(get_record(&g, out, &more), sizeof(chunk));
    }
    gpm_manager_ring_service(f->m);
    assert_int_equal(rd(&g, GPM_RING_OFF_H2G_HEAD),
                     4 * GPM_RING_REC_SPACE(sizeof(chunk)));
    assert_int_equal(gpm_channel_pending(f->m, f->a, &pending, NULL), 0);
    assert_int_equal(pending, 5 * sizeof(chunk));
    /* A paused channel leaves the guest's records in the ring. */
    assert_int_equal(gpm_channel_set_paused(f->m, f->a, true), 0);
    put_record(&g, "x", 1, false);
    gpm_manager_ring_service(f->m);
    assert_int_equal(f->got->len, 0);
    assert_int_equal(gpm_channel_set_paused(f->m, f->a, false), 0);
    gpm_manager_ring_service(f->m);
    assert_int_equal(f->got->len, 1);
}

static void test_stop_drains(void **state)
{
    fix_t *f = *state;
    gpm_manager_stats_t st;
    gring_t g;

    enable(f);
    g = open_ring(f, f->a, PROC);
    put_record(&g, "last words", 10, false);
    assert_int_equal(
        fake_hc_as(f->m, f->cpu, PROC, GPM_HC_OP_STOP, f->a, 0, 0, NULL), 0);
    gpm_manager_ring_service(f->m);
    assert_int_equal(f->got->len, 1);
    assert_int_equal((int32_t)rd(&g, GPM_RING_OFF_STATUS), GPM_HC_EBADF);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.rings_attached, 0);
}

/* Each hostile write breaks ring a; ring b keeps working. */
static void hostile_case(fix_t *f, int which)
{
    gring_t ga, gb;
    uint32_t bad[2];
    static uint8_t frag[GPM_RING_MAX_FRAG];

    enable(f);
    ga = open_ring(f, f->a, PROC);
    gb = open_ring(f, f->b, OTHER);
    switch (which) {
    case 0: /* a head past the data area */
        wr(&ga, GPM_RING_OFF_G2H_HEAD, GPM_RING_DATA_SIZE + 8);
        break;
    case 1: /* an unaligned head */
        wr(&ga, GPM_RING_OFF_G2H_HEAD, 12);
        break;
    case 2: /* a record longer than the largest fragment */
        bad[0] = GUINT32_TO_LE(GPM_RING_MAX_FRAG + 1);
        bad[1] = 0;
        memcpy(ga.pair + GPM_RING_OFF_G2H_DATA, bad, 8);
        wr(&ga, GPM_RING_OFF_G2H_HEAD, 64);
        break;
    case 3: /* reserved bits and a non-zero second word */
        bad[0] = GUINT32_TO_LE(8 | 0x01000000u);
        bad[1] = 7;
        memcpy(ga.pair + GPM_RING_OFF_G2H_DATA, bad, 8);
        wr(&ga, GPM_RING_OFF_G2H_HEAD, 16);
        break;
    case 4: /* a record claiming more than the head covers */
        bad[0] = GUINT32_TO_LE(4000);
        bad[1] = 0;
        memcpy(ga.pair + GPM_RING_OFF_G2H_DATA, bad, 8);
        wr(&ga, GPM_RING_OFF_G2H_HEAD, 64);
        break;
    case 5: /* a message growing past GPM_HC_MAX_TRANSFER */
        for (int i = 0; i < 20; i++) {
            put_record(&ga, frag, sizeof(frag), true);
            gpm_manager_ring_service(f->m);
            if (f->errors->len > 0)
                break;
        }
        break;
    case 6: /* a host->guest tail ahead of what the host wrote */
        assert_int_equal(gpm_channel_write(f->m, f->a, "q", 1), 0);
        gpm_manager_ring_service(f->m);
        wr(&ga, GPM_RING_OFF_H2G_TAIL, 4096);
        assert_int_equal(gpm_channel_write(f->m, f->a, "r", 1), 0);
        break;
    default: /* a tail moving backwards */
        assert_int_equal(gpm_channel_write(f->m, f->a, "q", 1), 0);
        gpm_manager_ring_service(f->m);
        wr(&ga, GPM_RING_OFF_H2G_TAIL, 16);
        gpm_manager_ring_service(f->m);
        wr(&ga, GPM_RING_OFF_H2G_TAIL, 8);
        assert_int_equal(gpm_channel_write(f->m, f->a, "r", 1), 0);
        break;
    }
    put_record(&gb, "still here", 10, false);
    gpm_manager_ring_service(f->m);
    assert_int_equal(f->errors->len, 1);
    assert_non_null(strstr(f->errors->pdata[0], "shut"));
    assert_int_equal((int32_t)rd(&ga, GPM_RING_OFF_STATUS), GPM_HC_EPROTO);
    assert_int_equal(rd(&gb, GPM_RING_OFF_STATUS), 0);
    assert_int_equal(f->got->len, 1);
    {
        gsize n;
        const uint8_t *p = g_bytes_get_data(f->got->pdata[0], &n);

        assert_int_equal(n, 10);
        assert_memory_equal(p, "still here", 10);
    }
    /* A broken ring stays shut, and the channel still works by hypercall. */
    put_record(&ga, "ignored", 7, false);
    gpm_manager_ring_service(f->m);
    assert_int_equal(f->got->len, 1);
    assert_int_equal(f->errors->len, 1);
}

#define HOSTILE(n)                                                             \
    static void test_hostile_##n(void **state)                                 \
    {                                                                          \
        hostile_case(*state, n);                                               \
    }
HOSTILE(0)
HOSTILE(1)
HOSTILE(2)
HOSTILE(3)
HOSTILE(4)
HOSTILE(5)
HOSTILE(6)
HOSTILE(7)

static void test_withdraw(void **state)
{
    fix_t *f = *state;
    gpm_manager_stats_t st;

    enable(f);
    open_ring(f, f->a, PROC);
    assert_int_equal(gpm_manager_set_rings(f->m, 0, 0, NULL, NULL, NULL), 0);
    assert_int_equal(gpm_manager_ring_service(f->m), GPM_EINVAL);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.rings_attached, 0);
    /* Host writes go to the queue again, for READ. */
    f->kicks = 0;
    assert_int_equal(gpm_channel_write(f->m, f->a, "x", 1), 0);
    assert_int_equal(f->kicks, 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_attach_rules), T(test_guest_to_host), T(test_host_to_guest),
        T(test_backpressure), T(test_stop_drains),   T(test_stop_requeues),
        T(test_hostile_0),    T(test_hostile_1),     T(test_hostile_2),
        T(test_hostile_3),    T(test_hostile_4),     T(test_hostile_5),
        T(test_hostile_6),    T(test_hostile_7),     T(test_withdraw),
    };

    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
