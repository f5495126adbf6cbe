/*
 * test_core.c - channels and the hypercall dispatcher, driven through a
 * fake CPU for every op and every class of bad guest input.
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
#include "core/syscalls.h"
#include "fake_cpu.h"

typedef struct recorder {
    GByteArray *bytes;
    unsigned calls;
    unsigned releases;
    gpm_channel_id_t last_id;
    gpm_manager_t *m;
    bool close_in_cb;
    bool write_in_cb;
} recorder_t;

static void rec_recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                        void *opaque)
{
    recorder_t *r = opaque;

    r->calls++;
    r->last_id = id;
    g_byte_array_append(r->bytes, buf, (guint)len);
    if (r->write_in_cb)
        assert_int_equal(gpm_channel_write(r->m, id, "echo", 4), 0);
    if (r->close_in_cb) {
        assert_int_equal(gpm_channel_close(r->m, id), 0);
        /* The release must wait until this callback has returned. */
        assert_int_equal(r->releases, 0);
    }
}

static void rec_release_cb(void *opaque)
{
    ((recorder_t *)opaque)->releases++;
}

typedef struct fixture {
    gpm_manager_t *m;
    fake_cpu_t cpu;
    recorder_t rec;
    GPtrArray *events;
} fixture_t;

static void event_cb(const gpm_event_t *ev, void *opaque)
{
    fixture_t *f = opaque;

    g_ptr_array_add(f->events,
                    g_strdup_printf("%d:%u:%s", ev->type, ev->channel,
                                    ev->text != NULL ? ev->text : ""));
}

static int setup_arch(void **state, gpm_arch_t arch)
{
    fixture_t *f = calloc(1, sizeof(*f));
    gpm_manager_config_t cfg = {.arch = arch,
                                .queue_limit = 1 << 16,
                                .total_queue_limit = 1 << 17,
                                .max_guest_channels = 4};

    assert_int_equal(gpm_manager_new(&cfg, &f->m), 0);
    fake_init(&f->cpu);
    f->rec.bytes = g_byte_array_new();
    f->rec.m = f->m;
    f->events = g_ptr_array_new_with_free_func(g_free);
    gpm_manager_set_event_cb(f->m, event_cb, f);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_arch(state, GPM_ARCH_X86_64);
}

static int setup_i386(void **state)
{
    return setup_arch(state, GPM_ARCH_I386);
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    gpm_manager_free(f->m);
    g_byte_array_free(f->rec.bytes, TRUE);
    g_ptr_array_free(f->events, TRUE);
    free(f);
    return 0;
}

static gpm_channel_id_t chan(fixture_t *f, const char *name)
{
    gpm_channel_id_t id;

    assert_int_equal(gpm_channel_allocate(f->m, name, rec_recv_cb,
                                          rec_release_cb, &f->rec, &id),
                     0);
    return id;
}

static void test_errors(void **state)
{
    (void)state;
    assert_string_equal(gpm_err_name(GPM_ENOENT), "GPM_ENOENT");
    assert_string_equal(gpm_err_name(GPM_EARCH), "GPM_EARCH");
    assert_string_equal(gpm_err_name(12345), "GPM_UNKNOWN");
    assert_string_equal(gpm_strerror(0), "success");
    assert_string_equal(gpm_strerror(GPM_EBADF), "unknown or closed channel");
    assert_string_equal(gpm_strerror(-99999), "unknown error");
}

static void test_arch_table(void **state)
{
    gpm_arch_t a;

    (void)state;
    assert_int_equal(gpm_arch_from_name("mipsel", &a), 0);
    assert_int_equal(a, GPM_ARCH_MIPSEL);
    assert_int_equal(gpm_arch_info(a)->hc_regs[0], 2);
    assert_int_equal(gpm_arch_from_name("sparc", &a), GPM_EINVAL);
    assert_null(gpm_arch_info(GPM_ARCH_COUNT));
    assert_int_equal(gpm_arch_info(GPM_ARCH_I386)->hc_regs[1], 3);
    assert_int_equal(gpm_arch_info(GPM_ARCH_X86_64)->hc_regs[4], 5);
    for (unsigned i = 0; i < GPM_ARCH_COUNT; i++) {
        const gpm_arch_info_t *ai = gpm_arch_info((gpm_arch_t)i);

        assert_non_null(ai->name);
        assert_true(ai->word_bits == 32 || ai->word_bits == 64);
        assert_int_equal(ai->hc_regs[0], ai->ret_reg);
    }
}

/*
 * MIPS: both byte orders of each ABI share one set of numbers (o32 from
 * 4000, n64 from 5000); mips64el is a little-endian 64-bit ELFCLASS64
 * EM_MIPS arch, mips64 its big-endian twin.
 */
static void test_arch_mips64el(void **state)
{
    const gpm__sys_table_t *el, *be, *o32;
    const gpm_arch_info_t *ai;
    gpm_arch_t a;

    (void)state;
    assert_int_equal(gpm_arch_from_name("mips64el", &a), 0);
    assert_int_equal(a, GPM_ARCH_MIPS64EL);
    ai = gpm_arch_info(a);
    assert_string_equal(ai->name, "mips64el");
    assert_int_equal(ai->word_bits, 64);
    assert_false(ai->big_endian);
    assert_int_equal(ai->elf_machine, 8);
    assert_int_equal(ai->elf_class, 2);
    assert_int_equal(ai->pc_reg, 37);
    assert_true(gpm_arch_info(GPM_ARCH_MIPS64)->big_endian);
    assert_int_equal(gpm_arch_from_name("mips64", &a), 0);
    assert_int_equal(a, GPM_ARCH_MIPS64);
    el = gpm__sys_table(GPM_ARCH_MIPS64EL);
    be = gpm__sys_table(GPM_ARCH_MIPS64);
    o32 = gpm__sys_table(GPM_ARCH_MIPSEL);
    assert_non_null(el);
    assert_int_equal(el->mmap, 5009);
    assert_int_equal(el->write, 5001);
    assert_int_equal(el->memfd_create, 5314);
    assert_int_equal(el->execve, 5057);
    assert_int_equal(el->exit_group, 5205);
    assert_int_equal(el->open_flags, 0x80302u);
    {
        const int a[] = {el->getuid, el->mmap,          el->munmap, el->open,
                         el->openat, el->close,         el->fork,   el->clone,
                         el->setsid, el->rt_sigprocmask};
        const int b[] = {be->getuid, be->mmap,          be->munmap, be->open,
                         be->openat, be->close,         be->fork,   be->clone,
                         be->setsid, be->rt_sigprocmask};

        assert_memory_equal(a, b, sizeof(a));
    }
    assert_int_equal(el->open_flags, be->open_flags);
    assert_int_equal(o32->mmap, 4090);
    assert_int_equal(o32->write, 4004);
    assert_int_equal(gpm__sys_table(GPM_ARCH_MIPS)->write, 4004);
}

static void test_manager_config(void **state)
{
    gpm_manager_config_t cfg = {.arch = GPM_ARCH_COUNT};
    gpm_manager_t *m = (gpm_manager_t *)1;

    (void)state;
    assert_int_equal(gpm_manager_new(&cfg, &m), GPM_EINVAL);
    assert_null(m);
    assert_int_equal(gpm_manager_new(NULL, NULL), GPM_EINVAL);
    cfg.arch = GPM_ARCH_X86_64;
    cfg.queue_limit = 32;
    assert_int_equal(gpm_manager_new(&cfg, &m), GPM_EINVAL);
    cfg.queue_limit = 0;
    cfg.total_queue_limit = 1;
    assert_int_equal(gpm_manager_new(&cfg, &m), GPM_EINVAL);
    assert_int_equal(gpm_manager_new(NULL, &m), 0);
    assert_int_equal(gpm_manager_arch(m), GPM_ARCH_X86_64);
    gpm_manager_free(m);
    gpm_manager_free(NULL);
}

static void test_allocate_and_lookup(void **state)
{
    fixture_t *f = *state;
    char longname[GPM_NAME_MAX + 2];
    gpm_channel_id_t a, b, id;

    a = chan(f, "alpha");
    b = chan(f, NULL);
    assert_true(a != 0 && b != 0 && a != b);
    assert_int_equal(gpm_channel_lookup(f->m, "alpha", &id), 0);
    assert_int_equal(id, a);
    assert_int_equal(gpm_channel_lookup(f->m, "nope", &id), GPM_ENOENT);
    assert_int_equal(id, GPM_CHANNEL_NONE);
    assert_int_equal(
        gpm_channel_allocate(f->m, "alpha", NULL, rec_release_cb, &f->rec, &id),
        GPM_EEXIST);
    assert_int_equal(gpm_channel_allocate(f->m, "", NULL, NULL, NULL, &id),
                     GPM_EINVAL);
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(
        gpm_channel_allocate(f->m, longname, NULL, NULL, NULL, &id),
        GPM_ENAMETOOLONG);
    /* Failed allocations never call their release callback. */
    assert_int_equal(f->rec.releases, 0);
    assert_int_equal(gpm_channel_close(f->m, a), 0);
    assert_int_equal(f->rec.releases, 1);
    assert_int_equal(gpm_channel_close(f->m, a), GPM_EBADF);
    assert_int_equal(gpm_channel_lookup(f->m, "alpha", &id), GPM_ENOENT);
    /* Ids are not reused. */
    assert_true(chan(f, "alpha") > b);
}

static void test_queue_order_and_partial_reads(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "q");
    char buf[16];
    size_t n, bytes, msgs;

    assert_int_equal(gpm_channel_write(f->m, id, "hello", 5), 0);
    assert_int_equal(gpm_channel_write(f->m, id, "world!", 6), 0);
    assert_int_equal(gpm_channel_write(f->m, id, NULL, 0), 0);
    assert_int_equal(gpm_channel_pending(f->m, id, &bytes, &msgs), 0);
    assert_int_equal(bytes, 11);
    assert_int_equal(msgs, 2);
    assert_int_equal(gpm_channel_read(f->m, id, buf, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "hel", 3);
    /* A read never spans messages: the rest of the head comes first. */
    assert_int_equal(gpm_channel_read(f->m, id, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "lo", 2);
    assert_int_equal(gpm_channel_read(f->m, id, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "world!", 6);
    assert_int_equal(gpm_channel_read(f->m, id, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gpm_channel_write(f->m, 999, "x", 1), GPM_EBADF);
    assert_int_equal(gpm_channel_read(f->m, 999, buf, 1, &n), GPM_EBADF);
    assert_int_equal(gpm_channel_write(f->m, id, NULL, 1), GPM_EINVAL);
}

static void test_queue_limits(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t a = chan(f, "a"), b = chan(f, "b"), c = chan(f, "c");
    size_t big = (1 << 16) - GPM__MSG_OVERHEAD;
    uint8_t *data = calloc(1, 1 << 17);
    gpm_manager_stats_t st;
    size_t bytes;

    assert_int_equal(gpm_channel_write(f->m, a, data, big + 1), GPM_EMSGSIZE);
    assert_int_equal(gpm_channel_write(f->m, a, data, big), 0);
    /* The channel is full; nothing more is queued, nothing is lost. */
    assert_int_equal(gpm_channel_write(f->m, a, data, 1), GPM_ENOSPC);
    assert_int_equal(gpm_channel_pending(f->m, a, &bytes, NULL), 0);
    assert_int_equal(bytes, big);
    assert_int_equal(gpm_channel_write(f->m, b, data, big), 0);
    /* The total limit (two channels' worth) is reached too. */
    assert_int_equal(gpm_channel_write(f->m, c, data, 10), GPM_ENOSPC);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.queued_bytes, 2 * big);
    /* Closing a channel gives its room back. */
    assert_int_equal(gpm_channel_close(f->m, a), 0);
    assert_int_equal(gpm_channel_write(f->m, c, data, 10), 0);
    free(data);
}

static void test_not_a_hypercall(void **state)
{
    fixture_t *f = *state;
    bool handled = true;
    gpm_manager_stats_t st;

    f->cpu.regs[0] = 0x1337c0d4;
    f->cpu.regs[1] = GPM_HC_OP_GET_MANAGER;
    assert_int_equal(gpm_hypercall_handle(f->m, &fake_ops, &f->cpu, &handled),
                     0);
    assert_false(handled);
    assert_int_equal(f->cpu.regs[0], 0x1337c0d4);
    /* The magic with upper bits set is not the magic on a 64-bit guest. */
    f->cpu.regs[0] = ((uint64_t)1 << 32) | GPM_HC_MAGIC;
    assert_int_equal(gpm_hypercall_handle(f->m, &fake_ops, &f->cpu, &handled),
                     0);
    assert_false(handled);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.not_ours, 2);
    assert_int_equal(st.hypercalls, 0);
    f->cpu.regs[0] = GPM_HC_MAGIC;
    f->cpu.fail_regs = true;
    assert_int_equal(gpm_hypercall_handle(f->m, &fake_ops, &f->cpu, &handled),
                     GPM_EIO);
    assert_false(handled);
    assert_int_equal(gpm_hypercall_handle(f->m, NULL, &f->cpu, &handled),
                     GPM_EINVAL);
}

static void test_start_stop_and_events(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "s");
    bool handled = false;
    char want[64];

    assert_int_equal(gpm_channel_started(f->m, id), 0);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_START, id, 0, 0, &handled), 0);
    assert_true(handled);
    assert_int_equal(gpm_channel_started(f->m, id), 1);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_STOP, id, 0, 0, NULL), 0);
    assert_int_equal(gpm_channel_started(f->m, id), 0);
    assert_int_equal(f->events->len, 2);
    snprintf(want, sizeof(want), "%d:%u:", GPM_EVENT_CHANNEL_START, id);
    assert_string_equal(g_ptr_array_index(f->events, 0), want);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_START, 77, 0, 0, NULL),
                     GPM_HC_EBADF);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_START, (1ull << 32) | id, 0, 0, NULL),
        GPM_HC_EBADF);
    assert_int_equal(fake_hc(f->m, &f->cpu, 0, id, 0, 0, NULL), GPM_HC_ENOSYS);
    assert_int_equal(fake_hc(f->m, &f->cpu, 99, id, 0, 0, NULL), GPM_HC_ENOSYS);
    assert_int_equal(fake_hc(f->m, &f->cpu, UINT64_MAX, id, 0, 0, NULL),
                     GPM_HC_ENOSYS);
}

static void test_guest_write(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "w");
    uint64_t p = FAKE_BASE + 100;
    gpm_manager_stats_t st;

    memcpy(f->cpu.mem + 100, "from guest", 10);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, p, 10, NULL),
                     10);
    assert_int_equal(f->rec.calls, 1);
    assert_int_equal(f->rec.last_id, id);
    assert_memory_equal(f->rec.bytes->data, "from guest", 10);
    /* Read-only pages may be read. */
    f->cpu.flags[0] = FAKE_PRESENT;
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, p, 4, NULL),
                     4);
    /* A zero length takes nothing and calls nothing. */
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, p, 0, NULL),
                     0);
    assert_int_equal(f->rec.calls, 2);
    /* Bad pointers. */
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, 0, 4, NULL),
                     GPM_HC_EFAULT);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id,
                             0xffffffff81000000ull, 4, NULL),
                     GPM_HC_EFAULT);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, UINT64_MAX - 1, 4, NULL),
        GPM_HC_EFAULT);
    f->cpu.flags[1] = 0;
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id,
                             FAKE_BASE + FAKE_PAGE - 2, 4, NULL),
                     GPM_HC_EFAULT);
    /* Huge lengths are bounded, never trusted: 2^32 and 2^63. */
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, p, 1ull << 32, NULL),
        GPM_HC_EFAULT);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, p, 1ull << 63, NULL),
        GPM_HC_EFAULT);
    assert_int_equal(f->rec.calls, 2);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, 4242, p, 4, NULL),
                     GPM_HC_EBADF);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.bytes_from_guest, 14);
}

static void test_guest_write_clamped(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "big");
    static uint8_t region[GPM_HC_MAX_TRANSFER + 4096];
    fake_cpu_t *c = &f->cpu;

    (void)region;
    /* Every page of the fake memory is readable; ask for more than max. */
    assert_true(FAKE_PAGES * FAKE_PAGE < GPM_HC_MAX_TRANSFER);
    assert_int_equal(fake_hc(f->m, c, GPM_HC_OP_WRITE, id, FAKE_BASE,
                             FAKE_PAGES * FAKE_PAGE, NULL),
                     FAKE_PAGES * FAKE_PAGE);
    assert_int_equal(f->rec.bytes->len, FAKE_PAGES * FAKE_PAGE);
}

static void test_guest_write_paused(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "full");

    memcpy(f->cpu.mem, "abcd", 4);
    assert_int_equal(gpm_channel_set_paused(f->m, id, true), 0);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 4, NULL),
        GPM_HC_EBUSY);
    assert_int_equal(f->rec.calls, 0);
    assert_int_equal(gpm_channel_set_paused(f->m, id, false), 0);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 4, NULL), 4);
    assert_int_equal(f->rec.calls, 1);
    assert_int_equal(gpm_channel_set_paused(f->m, 4242, true), GPM_EBADF);
}

static void test_guest_write_no_receiver(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id;

    assert_int_equal(gpm_channel_allocate(f->m, "mute", NULL, NULL, NULL, &id),
                     0);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 4, NULL),
        GPM_HC_EPIPE);
}

static void test_guest_read(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "r");
    uint64_t p = FAKE_BASE + FAKE_PAGE;
    size_t bytes;

    /* Nothing queued: 0. */
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 64, NULL),
                     0);
    /* Queued before the guest ever started the channel. */
    assert_int_equal(gpm_channel_write(f->m, id, "0123456789", 10), 0);
    assert_int_equal(gpm_channel_write(f->m, id, "abc", 3), 0);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 4, NULL), 4);
    assert_memory_equal(f->cpu.mem + FAKE_PAGE, "0123", 4);
    /* Read-only page: retry code, and the queue is intact. */
    f->cpu.flags[1] = FAKE_PRESENT;
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 64, NULL),
                     GPM_HC_EAGAIN);
    /* Unmapped page, NULL, kernel address, wrap-around: fault. */
    f->cpu.flags[1] = 0;
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 64, NULL),
                     GPM_HC_EFAULT);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, 0, 64, NULL),
                     GPM_HC_EFAULT);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id,
                             0xffff888000000000ull, 64, NULL),
                     GPM_HC_EFAULT);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, UINT64_MAX - 2, 64, NULL),
        GPM_HC_EFAULT);
    assert_int_equal(gpm_channel_pending(f->m, id, &bytes, NULL), 0);
    assert_int_equal(bytes, 9);
    /* Huge maximum lengths are clamped to what is queued. */
    p = FAKE_BASE + 2 * FAKE_PAGE;
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 1ull << 63, NULL), 6);
    assert_memory_equal(f->cpu.mem + 2 * FAKE_PAGE, "456789", 6);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 1ull << 32, NULL), 3);
    assert_memory_equal(f->cpu.mem + 2 * FAKE_PAGE, "abc", 3);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, id, p, 0, NULL), 0);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_READ, 0, p, 8, NULL),
                     GPM_HC_EBADF);
}

/* A host accessor that consumes from the channel while the guest reads. */
static gpm_manager_t *race_m;
static gpm_channel_id_t race_id;

static int racing_write_mem(void *cpu, uint64_t addr, const void *buf,
                            size_t len)
{
    char tmp[8];
    size_t n;

    assert_int_equal(gpm_channel_read(race_m, race_id, tmp, 2, &n), 0);
    return fake_write_mem(cpu, addr, buf, len);
}

static void test_guest_read_race(void **state)
{
    fixture_t *f = *state;
    gpm_host_ops_t ops = fake_ops;
    const gpm_arch_info_t *a = gpm_arch_info(GPM_ARCH_X86_64);
    bool handled;
    char buf[8];
    size_t n;

    race_m = f->m;
    race_id = chan(f, "race");
    ops.write_mem = racing_write_mem;
    assert_int_equal(gpm_channel_write(f->m, race_id, "abcdef", 6), 0);
    f->cpu.regs[a->hc_regs[0]] = GPM_HC_MAGIC;
    f->cpu.regs[a->hc_regs[1]] = GPM_HC_OP_READ;
    f->cpu.regs[a->hc_regs[2]] = race_id;
    f->cpu.regs[a->hc_regs[3]] = FAKE_BASE;
    f->cpu.regs[a->hc_regs[4]] = 6;
    assert_int_equal(gpm_hypercall_handle(f->m, &ops, &f->cpu, &handled), 0);
    /* The guest's copy went stale: it must retry; nothing is duplicated. */
    assert_int_equal((int64_t)f->cpu.regs[a->ret_reg], GPM_HC_EAGAIN);
    assert_int_equal(gpm_channel_read(f->m, race_id, buf, 8, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "cdef", 4);
}

static void ring_cb(gpm_channel_id_t id, void *opaque)
{
    recorder_t *r = opaque;

    r->calls++;
    r->last_id = id;
}

static void test_doorbell(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "db");
    recorder_t rings = {0};

    /* No doorbell: the guest is told to poll. */
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_DOORBELL, 0, 0, 0, NULL),
        GPM_HC_ENOSYS);
    assert_int_equal(
        gpm_manager_set_doorbell(f->m, 0x1fe00800, ring_cb, &rings),
        GPM_EINVAL);
    assert_int_equal(gpm_manager_set_doorbell(f->m, 0x1fe00000, NULL, NULL),
                     GPM_EINVAL);
    assert_int_equal(
        gpm_manager_set_doorbell(f->m, 0x1fe00000, ring_cb, &rings), 0);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_DOORBELL, 0, 0, 0, NULL),
        0x1fe00000);
    /* Every queued message rings; refused and empty writes do not. */
    assert_int_equal(gpm_channel_write(f->m, id, "a", 1), 0);
    assert_int_equal(gpm_channel_write(f->m, id, "b", 1), 0);
    assert_int_equal(gpm_channel_write(f->m, id, NULL, 0), 0);
    assert_int_equal(gpm_channel_write(f->m, 9999, "c", 1), GPM_EBADF);
    assert_int_equal(rings.calls, 2);
    assert_int_equal(rings.last_id, id);
    /* Withdrawn: polling again. */
    assert_int_equal(gpm_manager_set_doorbell(f->m, 0, NULL, NULL), 0);
    assert_int_equal(gpm_channel_write(f->m, id, "d", 1), 0);
    assert_int_equal(rings.calls, 2);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_DOORBELL, 0, 0, 0, NULL),
        GPM_HC_ENOSYS);
}

static void test_get_channel(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "hello");
    uint64_t p = FAKE_BASE + 8;

    memcpy(f->cpu.mem + 8, "hello\0junk", 10);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, p, 5, NULL), id);
    /* A length that counts the terminator finds the same channel. */
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, p, 10, NULL), id);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, p, 4, NULL),
        GPM_HC_NOT_FOUND);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, p, 0, NULL),
        GPM_HC_EINVAL);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, p,
                             GPM_HC_MAX_NAME + 1, NULL),
                     GPM_HC_ENAMETOOLONG);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, 16, 5, NULL),
        GPM_HC_EFAULT);
    f->cpu.mem[8] = '\0';
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_CHANNEL, 0, p, 5, NULL),
        GPM_HC_EINVAL);
}

static void test_get_manager_bounded(void **state)
{
    fixture_t *f = *state;
    int64_t ids[4];
    gpm_manager_stats_t st;

    for (int i = 0; i < 4; i++) {
        ids[i] = fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL);
        assert_true(ids[i] > 0);
    }
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL),
        GPM_HC_ENOSPC);
    /* A guest-made channel has no receiver until the host gives it one. */
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, ids[0], FAKE_BASE, 4, NULL),
        GPM_HC_EPIPE);
    assert_int_equal(gpm_channel_set_callback(f->m, (gpm_channel_id_t)ids[0],
                                              rec_recv_cb, rec_release_cb,
                                              &f->rec),
                     0);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, ids[0], FAKE_BASE, 4, NULL), 4);
    /* Closing one gives the guest room for another. */
    assert_int_equal(gpm_channel_close(f->m, (gpm_channel_id_t)ids[1]), 0);
    assert_true(fake_hc(f->m, &f->cpu, GPM_HC_OP_GET_MANAGER, 0, 0, 0, NULL) >
                0);
    gpm_manager_stats(f->m, &st);
    assert_int_equal(st.channels, 4);
    assert_int_equal(gpm_channel_set_callback(f->m, 9999, NULL, NULL, NULL),
                     GPM_EBADF);
}

static void test_guest_error(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "e");
    char *want;

    memcpy(f->cpu.mem, "it broke", 8);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_ERROR, id, FAKE_BASE, 8, NULL), 0);
    want = g_strdup_printf("%d:%u:it broke", GPM_EVENT_GUEST_ERROR, id);
    assert_string_equal(g_ptr_array_index(f->events, 0), want);
    g_free(want);
    /* A message longer than the bound is cut, not refused. */
    memset(f->cpu.mem, 'A', 2 * FAKE_PAGE);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_ERROR, id, FAKE_BASE,
                             1ull << 40, NULL),
                     0);
    want = g_strdup_printf("%d:%u:", GPM_EVENT_GUEST_ERROR, id);
    assert_int_equal(strlen(g_ptr_array_index(f->events, 1)),
                     strlen(want) + GPM_HC_MAX_ERROR_MSG);
    g_free(want);
    assert_int_equal(fake_hc(f->m, &f->cpu, GPM_HC_OP_ERROR, id, 0, 8, NULL),
                     GPM_HC_EFAULT);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_ERROR, 5555, FAKE_BASE, 8, NULL),
        GPM_HC_EBADF);
}

static void test_callback_reentry(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "re");
    size_t bytes;

    f->rec.write_in_cb = true;
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 3, NULL), 3);
    assert_int_equal(gpm_channel_pending(f->m, id, &bytes, NULL), 0);
    assert_int_equal(bytes, 4);
    f->rec.write_in_cb = false;
    f->rec.close_in_cb = true;
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 3, NULL), 3);
    assert_int_equal(f->rec.releases, 1);
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 3, NULL),
        GPM_HC_EBADF);
}

static void test_release_on_free(void **state)
{
    recorder_t rec = {.bytes = g_byte_array_new()};
    gpm_manager_t *m;
    gpm_channel_id_t id;

    (void)state;
    assert_int_equal(gpm_manager_new(NULL, &m), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gpm_channel_allocate(m, NULL, rec_recv_cb,
                                              rec_release_cb, &rec, &id),
                         0);
    assert_int_equal(gpm_channel_write(m, id, "left behind", 11), 0);
    gpm_manager_free(m);
    assert_int_equal(rec.releases, 3);
    g_byte_array_free(rec.bytes, TRUE);
}

static void test_i386_masking(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id = chan(f, "x");
    const gpm_arch_info_t *a = gpm_arch_info(GPM_ARCH_I386);
    bool handled = false;

    /* Upper register bits are ignored on a 32-bit guest. */
    f->cpu.regs[a->hc_regs[0]] = 0xdead00001337c0d3ull;
    f->cpu.regs[a->hc_regs[1]] = 0xffffffff00000000ull | GPM_HC_OP_START;
    f->cpu.regs[a->hc_regs[2]] = 0xabcd000000000000ull | id;
    assert_int_equal(gpm_hypercall_handle(f->m, &fake_ops, &f->cpu, &handled),
                     0);
    assert_true(handled);
    assert_int_equal(f->cpu.regs[a->ret_reg], 0);
    assert_int_equal(gpm_channel_started(f->m, id), 1);
    /* An error result is a 32-bit value. */
    assert_int_equal(fake_hc(f->m, &f->cpu, 42, id, 0, 0, NULL), GPM_HC_ENOSYS);
    assert_int_equal(f->cpu.regs[a->ret_reg], (uint32_t)GPM_HC_ENOSYS);
    /* A range that wraps the 32-bit address space is a fault. */
    assert_int_equal(
        fake_hc(f->m, &f->cpu, GPM_HC_OP_WRITE, id, 0xfffffff0u, 0x20, NULL),
        GPM_HC_EFAULT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_arch_table),
        cmocka_unit_test(test_arch_mips64el),
        cmocka_unit_test(test_manager_config),
        cmocka_unit_test(test_release_on_free),
        cmocka_unit_test_setup_teardown(test_allocate_and_lookup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_queue_order_and_partial_reads,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_hypercall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_stop_and_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guest_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_write_clamped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guest_write_no_receiver, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guest_write_paused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guest_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doorbell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_read_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_manager_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guest_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_reentry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_i386_masking, setup_i386,
                                        teardown),
    };

    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
