/*
 * test_panda_api.c - the PANDA glue's PANDA-independent half: the C API
 * other PANDA plugins use (guest_plugin_manager.h) over the core, the
 * monitor commands, the x86_64 page-table write check, and the register
 * view that runs linjector's injector at syscalls2's system call entry.
 *
 * The Makefile's ctest links only csrc/core, so the glue is compiled in
 * here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <glib.h>

#define GUEST_PLUGIN_MANAGER_WANT_IMPORT
#include "../../csrc/panda/guest_plugin_manager.h"
#include "../../csrc/panda/gpm_panda_api.c"
#include "../../csrc/panda/gpm_panda_mem.c"
#include "elf_builder.h"
#include "fake_cpu.h"

#define EM_X86_64 62

static char *tmpdir;
static char *plugin_path;

/* What the ChannelCB callbacks saw. */
static struct {
    unsigned calls;
    ChannelId last_id;
    uint8_t last[256];
    size_t last_len;
} seen;

static void recv_cb(ChannelId id, const uint8_t *msg, size_t len)
{
    seen.calls++;
    seen.last_id = id;
    seen.last_len = len < sizeof(seen.last) ? len : sizeof(seen.last);
    memcpy(seen.last, msg, seen.last_len);
}

static GString *out;

static void collect(void *opaque, const char *line)
{
    (void)opaque;
    g_string_append(out, line);
    g_string_append_c(out, '\n');
}

static int quiet_logs;

static void log_to_string(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
    quiet_logs++;
}

static int group_setup(void **state)
{
    char *dir;

    (void)state;
    tmpdir = g_dir_make_tmp("gpmpanda-XXXXXX", NULL);
    dir = g_build_filename(tmpdir, "x86_64", NULL);
    g_mkdir_with_parents(dir, 0755);
    plugin_path = g_build_filename(dir, "etc_count", NULL);
    assert_int_equal(elf_write(plugin_path, &(elf_spec_t){true, EM_X86_64, true,
                                                          1, "etc_count"}),
                     0);
    g_free(dir);
    gpm_panda_api_set_log(log_to_string, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);

    (void)state;
    assert_int_equal(system(cmd), 0);
    g_free(cmd);
    g_free(tmpdir);
    g_free(plugin_path);
    gpm_inventory_clear_dirs();
    return 0;
}

static int api_setup(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof(seen));
    return gpm_panda_api_init(GPM_ARCH_X86_64, NULL, NULL);
}

static int api_teardown(void **state)
{
    (void)state;
    gpm_panda_api_fini();
    return 0;
}

/* The public types are what other plugins compile against. */
static void test_layout(void **state)
{
    (void)state;
    assert_int_equal(sizeof(ChannelId), 4);
    assert_int_equal(GPM_PANDA_CHANNEL_NONE, 0);
    assert_int_equal(GPM_PANDA_CHANNEL_NONE, GPM_CHANNEL_NONE);
    assert_int_equal(offsetof(GuestPlugin, plugin_name), 0);
    assert_int_equal(offsetof(GuestPlugin, guest_binary_path), sizeof(void *));
    assert_int_equal(offsetof(GuestPlugin, msg_receive_cb), 2 * sizeof(void *));
    assert_int_equal(sizeof(GuestPlugin), 3 * sizeof(void *));
    assert_int_equal(sizeof(GuestPluginManagerApi), 6 * sizeof(void *));
    /* The dlsym() importer refuses a missing plugin and zeroes the table. */
    {
        GuestPluginManagerApi api;

        memset(&api, 0xff, sizeof(api));
        assert_int_equal(guest_plugin_manager_import(NULL, &api), 0);
        assert_null(api.add_guest_plugin);
        assert_null(api.last_error);
    }
    /* The exported functions have exactly the original signatures. */
    {
        ChannelId (*add)(GuestPlugin) = add_guest_plugin;
        void (*wr)(ChannelId, const uint8_t *, size_t) = channel_write;
        ChannelId (*get)(const char *) = get_channel_from_name;
        ChannelId (*alloc)(ChannelCB) = allocate_channel;

        assert_non_null(add);
        assert_non_null(wr);
        assert_non_null(get);
        assert_non_null(alloc);
    }
}

/* Before the plugin is initialised every call fails without aborting. */
static void test_uninitialised(void **state)
{
    GuestPlugin p = {"etc_count", NULL, recv_cb};
    int logs = quiet_logs;

    (void)state;
    assert_null(gpm_panda_api_manager());
    assert_int_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EPERM);
    assert_int_equal(allocate_channel(recv_cb), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(get_channel_from_name("x"), GPM_PANDA_CHANNEL_NONE);
    channel_write(7, (const uint8_t *)"x", 1);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EPERM);
    assert_true(quiet_logs > logs);
}

static void test_allocate_and_exchange(void **state)
{
    gpm_manager_t *m = gpm_panda_api_manager();
    fake_cpu_t *cpu = g_new(fake_cpu_t, 1);
    ChannelId id;
    bool handled = false;

    (void)state;
    assert_non_null(m);
    assert_int_equal(gpm_panda_api_init(GPM_ARCH_X86_64, NULL, NULL),
                     GPM_EBUSY);
    fake_init(cpu);
    id = allocate_channel(recv_cb);
    assert_int_not_equal(id, GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), 0);

    /* Guest -> host: WRITE lands in the ChannelCB. */
    memcpy(cpu->mem, "hello host", 10);
    assert_int_equal(
        fake_hc(m, cpu, GPM_HC_OP_WRITE, id, FAKE_BASE, 10, &handled), 10);
    assert_true(handled);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.last_id, id);
    assert_int_equal(seen.last_len, 10);
    assert_memory_equal(seen.last, "hello host", 10);

    /* Host -> guest: channel_write is what the guest READs. */
    channel_write(id, (const uint8_t *)"hi guest", 8);
    assert_int_equal(guest_plugin_manager_last_error(), 0);
    assert_int_equal(
        fake_hc(m, cpu, GPM_HC_OP_READ, id, FAKE_BASE + 4096, 64, NULL), 8);
    assert_memory_equal(cpu->mem + 4096, "hi guest", 8);

    /* A NULL callback is allowed: guest writes then get EPIPE. */
    {
        ChannelId quiet = allocate_channel(NULL);

        assert_int_not_equal(quiet, GPM_PANDA_CHANNEL_NONE);
        assert_int_not_equal(quiet, id);
        assert_int_equal(
            fake_hc(m, cpu, GPM_HC_OP_WRITE, quiet, FAKE_BASE, 4, NULL), 4);
        assert_int_equal(seen.calls, 1);
    }

    /* Failures: unknown channel, NULL buffer. */
    channel_write(999999, (const uint8_t *)"x", 1);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EBADF);
    channel_write(id, NULL, 5);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EINVAL);
    g_free(cpu);
}

static void test_add_guest_plugin(void **state)
{
    GuestPlugin p = {"etc_count", NULL, recv_cb};
    ChannelId id, daemon;
    size_t bytes = 0, msgs = 0;

    (void)state;
    /* By path. */
    p.guest_binary_path = plugin_path;
    id = add_guest_plugin(p);
    assert_int_not_equal(id, GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(get_channel_from_name("etc_count"), id);
    daemon = get_channel_from_name("guest_daemon");
    assert_int_not_equal(daemon, GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(
        gpm_channel_pending(gpm_panda_api_manager(), daemon, &bytes, &msgs), 0);
    assert_int_equal(msgs, 1);

    /* The same name again is refused and queues nothing. */
    assert_int_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EEXIST);

    /* NULL path: looked up through the inventory. */
    p.plugin_name = "nosuchplugin";
    p.guest_binary_path = NULL;
    assert_int_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_ENOENT);
    assert_int_equal(gpm_inventory_add_dir(tmpdir), 0);
    gpm_panda_api_fini();
    assert_int_equal(gpm_panda_api_init(GPM_ARCH_X86_64, NULL, NULL), 0);
    p.plugin_name = "etc_count";
    id = add_guest_plugin(p);
    assert_int_not_equal(id, GPM_PANDA_CHANNEL_NONE);
    gpm_inventory_clear_dirs();

    /* A missing name, a missing file. */
    p.plugin_name = NULL;
    assert_int_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EINVAL);
    p.plugin_name = "other";
    p.guest_binary_path = "/nonexistent/other";
    assert_int_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    assert_true(guest_plugin_manager_last_error() < 0);

    /* Lookups. */
    assert_int_equal(get_channel_from_name("nope"), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_ENOENT);
    assert_int_equal(get_channel_from_name(NULL), GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EINVAL);
}

static void test_monitor(void **state)
{
    GuestPlugin p = {"etc_count", NULL, recv_cb};
    ChannelId anon;

    (void)state;
    p.guest_binary_path = plugin_path;
    assert_int_not_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    anon = allocate_channel(recv_cb);
    channel_write(anon, (const uint8_t *)"abc", 3);

    out = g_string_new(NULL);
    /* "help" prints our part but leaves the command to others too. */
    assert_false(gpm_panda_api_monitor("help", collect, NULL));
    assert_non_null(strstr(out->str, "gpm list"));
    g_string_truncate(out, 0);
    assert_false(gpm_panda_api_monitor("info registers", collect, NULL));
    assert_int_equal(out->len, 0);
    assert_false(gpm_panda_api_monitor("   ", collect, NULL));

    assert_true(gpm_panda_api_monitor("gpm  list", collect, NULL));
    assert_non_null(strstr(out->str, "guest plugins:"));
    assert_non_null(strstr(out->str, "etc_count"));
    assert_non_null(strstr(out->str, "queued for the guest daemon"));
    assert_non_null(strstr(out->str, "(anonymous)"));
    assert_non_null(strstr(out->str, "queued 1 msg / 3 bytes"));
    g_string_truncate(out, 0);
    assert_true(gpm_panda_api_monitor("gpm stats", collect, NULL));
    assert_non_null(strstr(out->str, "hypercalls 0"));
    g_string_truncate(out, 0);
    assert_true(gpm_panda_api_monitor("gpm frobnicate", collect, NULL));
    assert_non_null(strstr(out->str, "unknown command"));
    g_string_free(out, TRUE);
}

/* The original documentation's spelling names the same member. */
static void test_original_spelling(void **state)
{
    GuestPlugin p = {"etc_count", NULL, NULL};
    GuestPlugin q = {.plugin_name = "x", .msg_recieve_cb = recv_cb};

    (void)state;
    assert_int_equal(offsetof(GuestPlugin, msg_recieve_cb),
                     offsetof(GuestPlugin, msg_receive_cb));
    p.msg_recieve_cb = recv_cb;
    assert_ptr_equal(p.msg_receive_cb, recv_cb);
    assert_ptr_equal(q.msg_receive_cb, recv_cb);
    assert_null(q.guest_binary_path);
}

/* A named host channel for guest programs started another way. */
static void test_open_channel(void **state)
{
    ChannelId id;

    (void)state;
    id = guest_plugin_manager_open_channel("hostile", recv_cb);
    assert_int_not_equal(id, GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), 0);
    assert_int_equal(get_channel_from_name("hostile"), id);
    assert_int_equal(guest_plugin_manager_open_channel("hostile", NULL),
                     GPM_PANDA_CHANNEL_NONE);
    assert_true(guest_plugin_manager_last_error() < 0);
    assert_int_equal(guest_plugin_manager_open_channel("", NULL),
                     GPM_PANDA_CHANNEL_NONE);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EINVAL);
    assert_int_equal(guest_plugin_manager_open_channel(NULL, NULL),
                     GPM_PANDA_CHANNEL_NONE);
    channel_write(id, (const uint8_t *)"probe", 5);
    assert_int_equal(guest_plugin_manager_last_error(), 0);
}

/* One-word commands, the daemon channel, channel states, stats. */
static void test_monitor_states(void **state)
{
    gpm_manager_t *m = gpm_panda_api_manager();
    fake_cpu_t *cpu = g_new(fake_cpu_t, 1);
    gpm_channel_id_t daemon;
    ChannelId anon;

    (void)state;
    fake_init(cpu);
    assert_int_equal(gpm_daemon_channel(m, &daemon), 0);
    anon = allocate_channel(recv_cb);
    out = g_string_new(NULL);

    assert_true(gpm_panda_api_monitor("gpm-list", collect, NULL));
    assert_non_null(strstr(out->str, "guest_daemon"));
    assert_non_null(strstr(out->str, "no daemon yet"));
    assert_non_null(strstr(out->str, "not started yet"));
    g_string_truncate(out, 0);
    assert_true(gpm_panda_api_monitor("gpm_channels", collect, NULL));
    assert_non_null(strstr(out->str, "(anonymous)"));
    g_string_truncate(out, 0);
    assert_false(gpm_panda_api_monitor("gpm-", collect, NULL));
    assert_int_equal(out->len, 0);

    /* Started, then stopped by the guest: not "not started". */
    fake_hc(m, cpu, GPM_HC_OP_START, anon, 0, 0, NULL);
    assert_true(gpm_panda_api_monitor("gpm channels", collect, NULL));
    assert_non_null(strstr(out->str, ", started"));
    g_string_truncate(out, 0);
    fake_hc(m, cpu, GPM_HC_OP_STOP, anon, 0, 0, NULL);
    assert_true(gpm_panda_api_monitor("gpm channels", collect, NULL));
    assert_non_null(strstr(out->str, "stopped by the guest"));
    assert_null(strstr(out->str, "not started"));
    g_string_truncate(out, 0);

    /* "No doorbell" and "no ring" are answers, not errors. */
    assert_int_equal(
        (int64_t)fake_hc(m, cpu, GPM_HC_OP_GET_DOORBELL, 0, 0, 0, NULL),
        GPM_HC_ENOSYS);
    gpm_panda_api_count_no_doorbell();
    assert_int_equal(
        (int64_t)fake_hc(m, cpu, GPM_HC_OP_RING_ATTACH, 1, 0, 0, NULL),
        GPM_HC_ENOSYS);
    assert_true(gpm_panda_api_monitor("gpm stats", collect, NULL));
    assert_non_null(strstr(out->str, "errors 0, doorbell queries 1"));
    g_string_truncate(out, 0);
    fake_hc(m, cpu, 99, 0, 0, 0, NULL);
    assert_true(gpm_panda_api_monitor("gpm stats", collect, NULL));
    assert_non_null(strstr(out->str, "errors 1, doorbell queries 1"));
    g_string_free(out, TRUE);
    g_free(cpu);
}

/* After a snapshot load the manager starts over only if the guest used it. */
static void test_reset_if_used(void **state)
{
    GuestPlugin p = {"etc_count", NULL, recv_cb};
    fake_cpu_t *cpu = g_new(fake_cpu_t, 1);
    ChannelId id;

    (void)state;
    fake_init(cpu);
    p.guest_binary_path = plugin_path;
    id = add_guest_plugin(p);
    assert_int_not_equal(id, GPM_PANDA_CHANNEL_NONE);
    /* No hypercall yet: what was queued survives. */
    assert_int_equal(gpm_panda_api_reset_if_used(), 0);
    assert_int_equal(get_channel_from_name("etc_count"), id);
    fake_hc(gpm_panda_api_manager(), cpu, GPM_HC_OP_START, id, 0, 0, NULL);
    assert_int_equal(gpm_panda_api_reset_if_used(), 1);
    assert_int_equal(get_channel_from_name("etc_count"),
                     GPM_PANDA_CHANNEL_NONE);
    channel_write(id, (const uint8_t *)"x", 1);
    assert_int_equal(guest_plugin_manager_last_error(), GPM_EBADF);
    /* The new manager works. */
    assert_int_not_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    gpm_panda_api_fini();
    assert_int_equal(gpm_panda_api_reset_if_used(), GPM_EPERM);
    assert_int_equal(gpm_panda_api_init(GPM_ARCH_X86_64, NULL, NULL), 0);
    g_free(cpu);
}

/* The record follows the daemon's plugin events. */
static void test_events(void **state)
{
    GuestPlugin p = {"etc_count", NULL, recv_cb};
    gpm_event_t ev = {0};

    (void)state;
    p.guest_binary_path = plugin_path;
    assert_int_not_equal(add_guest_plugin(p), GPM_PANDA_CHANNEL_NONE);
    ev.type = GPM_EVENT_PLUGIN_STARTED;
    ev.name = "etc_count";
    ev.pid = 321;
    on_event(&ev, NULL);
    out = g_string_new(NULL);
    gpm_panda_api_describe(collect, NULL);
    assert_non_null(strstr(out->str, "running as pid 321"));
    ev.type = GPM_EVENT_PLUGIN_FAILED;
    ev.text = "execve: ENOENT";
    on_event(&ev, NULL);
    g_string_truncate(out, 0);
    gpm_panda_api_describe(collect, NULL);
    assert_non_null(strstr(out->str, "failed: execve: ENOENT"));
    ev.type = GPM_EVENT_GUEST_CHANNEL;
    ev.channel = 4242;
    on_event(&ev, NULL);
    g_string_free(out, TRUE);
}

/* A tiny physical memory holding x86_64 page tables. */
#define PHYS_SIZE (64u * 4096u)
static uint8_t phys[PHYS_SIZE];
static unsigned phys_reads;

static int phys_read(void *opaque, uint64_t paddr, void *buf, size_t len)
{
    (void)opaque;
    phys_reads++;
    if (paddr >= PHYS_SIZE || len > PHYS_SIZE - paddr)
        return GPM_EFAULT;
    memcpy(buf, phys + paddr, len);
    return 0;
}

static void set_pte(uint64_t table, unsigned idx, uint64_t val)
{
    le64(phys + table + 8u * idx, val);
}

#define P  1u
#define RW 2u
#define US 4u
#define PS 0x80u

/*
 * Maps, under CR3 = page 1: va 0x400000 + n * 4096 for n = 0..3 with
 * flags rw/ro/absent/rw; a 2 MiB page at 0x40000000 (writable); and a
 * supervisor-only page at 0x600000.
 */
static void build_tables(void)
{
    uint64_t pml4 = 1 * 4096, pdpt = 2 * 4096, pd = 3 * 4096, pt = 4 * 4096,
             pd1 = 5 * 4096, pt2 = 6 * 4096;

    memset(phys, 0, sizeof(phys));
    set_pte(pml4, 0, pdpt | P | RW | US);
    set_pte(pdpt, 0, pd | P | RW | US);
    set_pte(pdpt, 1, pd1 | P | RW | US);
    set_pte(pd, 2, pt | P | RW | US);  /* 0x400000 */
    set_pte(pd, 3, pt2 | P | RW | US); /* 0x600000 */
    set_pte(pt, 0, (10 * 4096) | P | RW | US);
    set_pte(pt, 1, (11 * 4096) | P | US); /* read-only: the zero page */
    set_pte(pt, 2, 0);                    /* never touched */
    set_pte(pt, 3, (12 * 4096) | P | RW | US);
    set_pte(pt2, 0, (13 * 4096) | P | RW); /* supervisor only */
    set_pte(pd1, 0, (16ull << 21) | P | RW | US | PS);
}

static void test_page_walk(void **state)
{
    const uint64_t cr3 = 4096 | 0x5; /* PCID bits are ignored */

    (void)state;
    build_tables();
    assert_int_equal(gpm_x86_64_check_user_write(cr3, false, 0x400000, 4096,
                                                 phys_read, NULL),
                     0);
    assert_int_equal(
        gpm_x86_64_check_user_write(cr3, false, 0x400ff0, 32, phys_read, NULL),
        GPM_EROFS);
    assert_int_equal(
        gpm_x86_64_check_user_write(cr3, false, 0x401000, 1, phys_read, NULL),
        GPM_EROFS);
    assert_int_equal(
        gpm_x86_64_check_user_write(cr3, false, 0x402000, 1, phys_read, NULL),
        GPM_EFAULT);
    assert_int_equal(gpm_x86_64_check_user_write(cr3, false, 0x403000, 4096,
                                                 phys_read, NULL),
                     0);
    /* Kernel memory is a fault, never "touch and retry". */
    assert_int_equal(
        gpm_x86_64_check_user_write(cr3, false, 0x600010, 8, phys_read, NULL),
        GPM_EFAULT);
    /* Reads need present and user only; a kernel page is a fault. */
    assert_int_equal(
        gpm_x86_64_check_user_read(cr3, false, 0x400ff0, 32, phys_read, NULL),
        0);
    assert_int_equal(
        gpm_x86_64_check_user_read(cr3, false, 0x600010, 8, phys_read, NULL),
        GPM_EFAULT);
    assert_int_equal(
        gpm_x86_64_check_user_read(cr3, false, 0x401ff0, 32, phys_read, NULL),
        GPM_EFAULT);
    assert_int_equal(gpm_x86_64_check_user_read(
                         cr3, false, 0x0000800000000000ull, 1, phys_read, NULL),
                     GPM_EFAULT);
    /* The 2 MiB page, and the walk ending beyond it. */
    assert_int_equal(gpm_x86_64_check_user_write(cr3, false, 0x40000000,
                                                 2u << 20, phys_read, NULL),
                     0);
    assert_int_equal(
        gpm_x86_64_check_user_write(cr3, false, 0x401fffff, 2, phys_read, NULL),
        GPM_EFAULT);
    /* Unmapped top-level slot, non-canonical, wrapping, empty. */
    assert_int_equal(gpm_x86_64_check_user_write(cr3, false, 0x7f0000000000, 1,
                                                 phys_read, NULL),
                     GPM_EFAULT);
    assert_int_equal(gpm_x86_64_check_user_write(
                         cr3, false, 0x0000800000000000ull, 1, phys_read, NULL),
                     GPM_EFAULT);
    assert_int_equal(gpm_x86_64_check_user_write(cr3, false, UINT64_MAX - 1, 16,
                                                 phys_read, NULL),
                     GPM_EFAULT);
    phys_reads = 0;
    assert_int_equal(
        gpm_x86_64_check_user_write(cr3, false, 0x402000, 0, phys_read, NULL),
        0);
    assert_int_equal(phys_reads, 0);
    /* A table outside physical memory. */
    set_pte(4096, 1, (1000ull * 4096) | P | RW | US);
    assert_int_equal(gpm_x86_64_check_user_write(cr3, false, 0x8000000000ull, 1,
                                                 phys_read, NULL),
                     GPM_EFAULT);
}

static void test_entry_view(void **state)
{
    fake_cpu_t *cpu = g_new(fake_cpu_t, 1);
    gpm_entry_view_t v;
    uint64_t val;

    (void)state;
    fake_init(cpu);
    cpu->regs[2] = 0xdeadbeef; /* RCX: dead at a SYSCALL instruction */
    cpu->regs[0] = 39;
    gpm_entry_view_init(&v, &fake_ops, cpu, 2, 0x401000, 2, 64);
    assert_int_equal(gpm_entry_view_ops.read_reg(&v, 2, &val), 0);
    assert_int_equal(val, 0x401002);
    assert_int_equal(gpm_entry_view_ops.read_reg(&v, 0, &val), 0);
    assert_int_equal(val, 39);
    assert_int_equal(gpm_entry_view_ops.write_reg(&v, 0, 9), 0);
    assert_int_equal(cpu->regs[0], 9);
    assert_false(v.written);
    assert_int_equal(gpm_entry_view_ops.write_reg(&v, 2, 0x401000), 0);
    assert_true(v.written);
    assert_true(v.reenter);
    assert_int_equal(cpu->regs[2], 0xdeadbeef); /* never the real RCX */
    assert_int_equal(gpm_entry_view_ops.write_reg(&v, 2, 0x401002), 0);
    assert_false(v.reenter);
    assert_int_equal(gpm_entry_view_ops.write_reg(&v, 2, 0x1234), GPM_EINVAL);
    /* 32-bit words wrap. */
    gpm_entry_view_init(&v, &fake_ops, cpu, 2, 0xfffffffe, 2, 32);
    assert_int_equal(gpm_entry_view_ops.read_reg(&v, 2, &val), 0);
    assert_int_equal(val, 0);
    /* Memory passes through. */
    memcpy(cpu->mem, "abcd", 4);
    assert_int_equal(gpm_entry_view_ops.read_mem(&v, FAKE_BASE, &val, 4), 0);
    assert_memory_equal(&val, "abcd", 4);
    assert_int_equal(gpm_entry_view_ops.write_mem(&v, FAKE_BASE, "wxyz", 4), 0);
    assert_memory_equal(cpu->mem, "wxyz", 4);
    g_free(cpu);
}

/*
 * The injector runs unchanged through the view at a syscalls2-style entry:
 * the first stop is hijacked (an mmap goes into RAX, re-entry requested),
 * the re-entry with the mmap's result continues the chain, and a thread
 * stopped at another instruction is left alone.
 */
static void test_injector_through_view(void **state)
{
    static const uint8_t elf[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
    gpm_inj_config_t cfg = {0};
    gpm_injector_t *inj = NULL;
    gpm_inj_thread_t t = {100, 100, 1, 0, "sh", 0};
    fake_cpu_t *cpu = g_new(fake_cpu_t, 1);
    gpm_entry_view_t v;
    const uint64_t pc = 0x401000;

    (void)state;
    fake_init(cpu);
    cfg.arch = GPM_ARCH_X86_64;
    cfg.elf = elf;
    cfg.elf_len = sizeof(elf);
    assert_int_equal(gpm_injector_new(&cfg, &inj), 0);

    cpu->regs[0] = 39; /* getpid */
    cpu->regs[5] = 1111;
    gpm_entry_view_init(&v, &fake_ops, cpu, 2, pc, 2, 64);
    assert_int_equal(gpm_injector_on_syscall(inj, &gpm_entry_view_ops, &v, &t),
                     0);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_RUNNING);
    assert_true(v.reenter);
    assert_int_equal(cpu->regs[0], 9); /* mmap */

    /* Another thread at another syscall instruction: untouched. */
    {
        gpm_inj_thread_t other = {200, 200, 1, 0, "init", 0};

        cpu->regs[0] = 1;
        gpm_entry_view_init(&v, &fake_ops, cpu, 2, 0x500000, 2, 64);
        assert_int_equal(
            gpm_injector_on_syscall(inj, &gpm_entry_view_ops, &v, &other), 0);
        assert_false(v.written);
        assert_int_equal(cpu->regs[0], 1);
    }

    /* Re-entry: RAX holds the mmap's result, the scratch address. */
    cpu->regs[0] = FAKE_BASE;
    gpm_entry_view_init(&v, &fake_ops, cpu, 2, pc, 2, 64);
    assert_int_equal(gpm_injector_on_syscall(inj, &gpm_entry_view_ops, &v, &t),
                     0);
    assert_true(v.written);
    assert_true(v.reenter);
    assert_int_equal(cpu->regs[0], 14); /* rt_sigprocmask: block signals */

    /* Re-entry with its result: then memfd_create. */
    cpu->regs[0] = 0;
    gpm_entry_view_init(&v, &fake_ops, cpu, 2, pc, 2, 64);
    assert_int_equal(gpm_injector_on_syscall(inj, &gpm_entry_view_ops, &v, &t),
                     0);
    assert_true(v.reenter);
    assert_int_equal(cpu->regs[0], 319); /* memfd_create */
    assert_null(gpm_injector_error(inj));
    gpm_injector_free(inj);
    g_free(cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_uninitialised),
        cmocka_unit_test_setup_teardown(test_allocate_and_exchange, api_setup,
                                        api_teardown),
        cmocka_unit_test_setup_teardown(test_add_guest_plugin, api_setup,
                                        api_teardown),
        cmocka_unit_test_setup_teardown(test_monitor, api_setup, api_teardown),
        cmocka_unit_test(test_original_spelling),
        cmocka_unit_test_setup_teardown(test_open_channel, api_setup,
                                        api_teardown),
        cmocka_unit_test_setup_teardown(test_monitor_states, api_setup,
                                        api_teardown),
        cmocka_unit_test_setup_teardown(test_events, api_setup, api_teardown),
        cmocka_unit_test_setup_teardown(test_reset_if_used, api_setup,
                                        api_teardown),
        cmocka_unit_test(test_page_walk),
        cmocka_unit_test(test_entry_view),
        cmocka_unit_test(test_injector_through_view),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
