/*
 * test_plugins.c - the plugin inventory (ELF and descriptor checks, the
 * search path) and the daemon link (LOAD frames out, replies as events).
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

#include "elf_builder.h"
#include "fake_cpu.h"

#define EM_386    3
#define EM_ARM    40
#define EM_X86_64 62

static char *tmpdir;

static char *path_in(const char *a, const char *b)
{
    return g_build_filename(tmpdir, a, b, NULL);
}

static void put_elf(const char *sub, const char *file, elf_spec_t spec)
{
    char *dir = g_build_filename(tmpdir, sub, NULL);
    char *p = g_build_filename(dir, file, NULL);

    g_mkdir_with_parents(dir, 0755);
    assert_int_equal(elf_write(p, &spec), 0);
    g_free(p);
    g_free(dir);
}

static int group_setup(void **state)
{
    (void)state;
    tmpdir = g_dir_make_tmp("gpmtest-XXXXXX", NULL);
    put_elf("x86_64", "hello", (elf_spec_t){true, EM_X86_64, true, 1, "hello"});
    put_elf("x86_64", "armbin", (elf_spec_t){false, EM_ARM, true, 1, "armbin"});
    put_elf("x86_64", "i386bin",
            (elf_spec_t){false, EM_386, true, 1, "i386bin"});
    put_elf("x86_64", "nodesc", (elf_spec_t){true, EM_X86_64, false, 1, ""});
    put_elf("x86_64", "future",
            (elf_spec_t){true, EM_X86_64, true, 2, "future"});
    put_elf("x86_64", "liar", (elf_spec_t){true, EM_X86_64, true, 1, "other"});
    put_elf("extra/build/x86_64", "extra",
            (elf_spec_t){true, EM_X86_64, true, 1, "extra"});
    {
        char *junk = path_in("x86_64", "junk");

        g_file_set_contents(junk, "#!/bin/sh\necho not elf\n", -1, NULL);
        g_free(junk);
    }
    return 0;
}

static int group_teardown(void **state)
{
    char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);

    (void)state;
    assert_int_equal(system(cmd), 0);
    g_free(cmd);
    g_free(tmpdir);
    gpm_inventory_clear_dirs();
    return 0;
}

static void test_inspect(void **state)
{
    gpm_plugin_info_t info;
    char why[512];
    char *p;

    (void)state;
    p = path_in("x86_64", "hello");
    assert_int_equal(gpm_plugin_inspect(p, &info, why, sizeof(why)), 0);
    assert_string_equal(info.name, "hello");
    assert_string_equal(info.version, "1.2.3");
    assert_string_equal(info.description, "a test plugin");
    assert_int_equal(info.arch, GPM_ARCH_X86_64);
    assert_int_equal(info.desc_abi, 1);
    assert_int_equal(gpm_plugin_check_arch(&info, GPM_ARCH_X86_64, why, 512),
                     0);
    assert_int_equal(gpm_plugin_check_arch(&info, GPM_ARCH_I386, why, 512),
                     GPM_EARCH);
    assert_non_null(strstr(why, "x86_64"));
    assert_non_null(strstr(why, "i386"));
    g_free(p);

    p = path_in("x86_64", "junk");
    assert_int_equal(gpm_plugin_inspect(p, &info, why, 512), GPM_ENOEXEC);
    assert_non_null(strstr(why, "not an ELF"));
    g_free(p);

    p = path_in("x86_64", "nodesc");
    assert_int_equal(gpm_plugin_inspect(p, &info, why, 512), GPM_EDESC);
    g_free(p);

    p = path_in("x86_64", "future");
    assert_int_equal(gpm_plugin_inspect(p, &info, why, 512), GPM_EDESC);
    assert_non_null(strstr(why, "version 2"));
    g_free(p);

    p = path_in("x86_64", "i386bin");
    assert_int_equal(gpm_plugin_inspect(p, &info, why, 512), 0);
    assert_int_equal(info.arch, GPM_ARCH_I386);
    assert_int_equal(gpm_plugin_check_arch(&info, GPM_ARCH_X86_64, why, 512),
                     GPM_EARCH);
    assert_non_null(strstr(why, "32-bit"));
    g_free(p);

    assert_int_equal(gpm_plugin_inspect("/nonexistent/x", &info, why, 512),
                     GPM_ENOENT);
    assert_int_equal(gpm_plugin_inspect(tmpdir, &info, why, 512), GPM_ENOEXEC);
}

static void test_find(void **state)
{
    gpm_plugin_info_t info;
    char why[2048];
    char *extra;

    (void)state;
    gpm_inventory_clear_dirs();
    assert_int_equal(
        gpm_plugin_find("hello", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_ENOENT);
    assert_non_null(strstr(why, "empty search path"));
    assert_int_equal(gpm_inventory_add_dir(tmpdir), 0);
    assert_int_equal(
        gpm_plugin_find("hello", NULL, GPM_ARCH_X86_64, &info, why, 2048), 0);
    assert_non_null(strstr(info.path, "x86_64/hello"));
    assert_int_equal(
        gpm_plugin_find("missing", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_ENOENT);
    assert_non_null(strstr(why, tmpdir));
    assert_non_null(strstr(why, "missing"));
    assert_int_equal(
        gpm_plugin_find("armbin", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_EARCH);
    assert_int_equal(
        gpm_plugin_find("junk", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_ENOEXEC);
    assert_int_equal(
        gpm_plugin_find("liar", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_EDESC);
    assert_int_equal(
        gpm_plugin_find("../etc", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_EINVAL);

    /* EXTRA_GUEST_PLUGINS_PATH: its build/<arch> directory is searched. */
    extra = g_build_filename(tmpdir, "extra", NULL);
    g_setenv("EXTRA_GUEST_PLUGINS_PATH", extra, TRUE);
    assert_int_equal(
        gpm_plugin_find("extra", NULL, GPM_ARCH_X86_64, &info, why, 2048), 0);
    g_unsetenv("EXTRA_GUEST_PLUGINS_PATH");
    assert_int_equal(
        gpm_plugin_find("extra", NULL, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_ENOENT);
    /* An explicit directory is searched first. */
    assert_int_equal(
        gpm_plugin_find("extra", extra, GPM_ARCH_X86_64, &info, why, 2048),
        GPM_ENOENT);
    g_free(extra);
    extra = g_build_filename(tmpdir, "extra", "build", NULL);
    assert_int_equal(
        gpm_plugin_find("extra", extra, GPM_ARCH_X86_64, &info, why, 2048), 0);
    g_free(extra);
}

static void count_cb(const gpm_plugin_info_t *info, void *opaque)
{
    GPtrArray *names = opaque;

    g_ptr_array_add(names, g_strdup(info->name));
}

static void test_list(void **state)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);

    (void)state;
    gpm_inventory_clear_dirs();
    assert_int_equal(gpm_inventory_add_dir(tmpdir), 0);
    assert_int_equal(gpm_plugin_list(NULL, count_cb, names), 0);
    /* hello, armbin, i386bin and liar (named "other") are valid files. */
    assert_int_equal(names->len, 4);
    g_ptr_array_free(names, TRUE);
}

typedef struct ev_log {
    GPtrArray *lines;
} ev_log_t;

static void log_event_cb(const gpm_event_t *ev, void *opaque)
{
    ev_log_t *log = opaque;

    g_ptr_array_add(log->lines,
                    g_strdup_printf("%d|%s|%lld|%lld|%d|%s", ev->type,
                                    ev->name ? ev->name : "",
                                    (long long)ev->pid, (long long)ev->status,
                                    ev->err, ev->text ? ev->text : ""));
}

static void recv_nothing_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                            void *opaque)
{
    (void)id;
    (void)buf;
    (void)len;
    (void)opaque;
}

static void release_count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

/* Puts a reply frame into fake guest memory at @off; returns its size. */
static size_t put_frame(fake_cpu_t *c, size_t off, uint16_t type, uint32_t seq,
                        const void *payload, uint32_t len)
{
    uint8_t *p = c->mem + off;

    le32(p, GPM_DFRAME_MAGIC);
    le16(p + 4, GPM_DFRAME_VERSION);
    le16(p + 6, type);
    le32(p + 8, seq);
    le32(p + 12, len);
    memcpy(p + 16, payload, len);
    return 16 + len;
}

static void test_daemon_link(void **state)
{
    ev_log_t log = {g_ptr_array_new_with_free_func(g_free)};
    gpm_manager_t *m;
    gpm_channel_id_t id, daemon;
    fake_cpu_t *cpu = g_new(fake_cpu_t, 1);
    uint8_t frame[2048];
    uint8_t payload[64];
    size_t n, len;
    int releases = 0;
    char why[1024];
    char *p = path_in("x86_64", "hello");
    uint32_t seq;

    (void)state;
    fake_init(cpu);
    assert_int_equal(gpm_manager_new(NULL, &m), 0);
    gpm_manager_set_event_cb(m, log_event_cb, &log);
    assert_int_equal(gpm_guest_plugin_add(m, "hello", p, recv_nothing_cb,
                                          release_count_cb, &releases, &id, why,
                                          sizeof(why)),
                     0);
    assert_int_equal(gpm_channel_lookup(m, "hello", &daemon), 0);
    assert_int_equal(daemon, id);
    assert_int_equal(gpm_channel_lookup(m, GPM_DAEMON_CHANNEL, &daemon), 0);

    /* The LOAD frame waits on the daemon channel. */
    assert_int_equal(gpm_channel_read(m, daemon, frame, sizeof(frame), &n), 0);
    /* The ELF is 512 bytes then two 64-byte section headers. */
    assert_int_equal(n, 16 + 8 + 5 + 640);
    assert_int_equal(frame[6], GPM_DFRAME_LOAD);
    seq = (uint32_t)frame[8] | (uint32_t)frame[9] << 8;
    assert_int_equal(frame[16], 5);
    assert_int_equal(frame[20] | frame[21] << 8, 640);
    assert_memory_equal(frame + 24, "hello", 5);
    assert_memory_equal(frame + 29, "\177ELF", 4);

    /* Refusals queue nothing and never call the release callback. */
    assert_int_equal(gpm_guest_plugin_add(m, "hello", p, NULL, release_count_cb,
                                          &releases, &id, why, sizeof(why)),
                     GPM_EEXIST);
    g_free(p);
    p = path_in("x86_64", "armbin");
    assert_int_equal(gpm_guest_plugin_add(m, "armbin", p, NULL,
                                          release_count_cb, &releases, &id, why,
                                          sizeof(why)),
                     GPM_EARCH);
    assert_int_equal(gpm_guest_plugin_add(m, "guest_daemon", p, NULL, NULL,
                                          NULL, &id, why, sizeof(why)),
                     GPM_EINVAL);
    assert_int_equal(releases, 0);
    assert_int_equal(gpm_channel_pending(m, daemon, &n, NULL), 0);
    assert_int_equal(n, 0);

    /* Replies from the daemon, split across two guest writes. */
    le32(payload, 4242);
    le32(payload + 4, 1);
    len = put_frame(cpu, 0, GPM_DFRAME_HELLO, 0, payload, 8);
    le32(payload, 77);
    memcpy(payload + 4, "hello", 5);
    len += put_frame(cpu, len, GPM_DFRAME_STARTED, seq, payload, 9);
    assert_int_equal(
        fake_hc(m, cpu, GPM_HC_OP_WRITE, daemon, FAKE_BASE, 30, NULL), 30);
    assert_int_equal(log.lines->len, 1);
    assert_int_equal(fake_hc(m, cpu, GPM_HC_OP_WRITE, daemon, FAKE_BASE + 30,
                             len - 30, NULL),
                     (int64_t)(len - 30));
    assert_int_equal(log.lines->len, 2);
    assert_string_equal(g_ptr_array_index(log.lines, 0), "5||4242|0|0|");
    assert_string_equal(g_ptr_array_index(log.lines, 1), "6|hello|77|0|0|");

    /*
     * Garbage is skipped and the next frame still parses; the error is
     * reported once, after the frames of the same write.
     */
    memset(cpu->mem, 'Z', 7);
    le32(payload, 77);
    le32(payload + 4, 256);
    memcpy(payload + 8, "hello", 5);
    len = 7 + put_frame(cpu, 7, GPM_DFRAME_EXITED, 0, payload, 13);
    assert_int_equal(
        fake_hc(m, cpu, GPM_HC_OP_WRITE, daemon, FAKE_BASE, len, NULL),
        (int64_t)len);
    assert_int_equal(log.lines->len, 4);
    assert_string_equal(g_ptr_array_index(log.lines, 2), "7|hello|77|256|0|");
    assert_string_equal(g_ptr_array_index(log.lines, 3),
                        "9||-1|0|0|guest daemon: bytes outside any frame");

    /* A FAILED reply names the plugin through its request number. */
    g_free(p);
    p = path_in("x86_64", "i386bin");
    {
        gpm_manager_t *m32;
        gpm_manager_config_t cfg = {.arch = GPM_ARCH_I386};

        assert_int_equal(gpm_manager_new(&cfg, &m32), 0);
        assert_int_equal(gpm_guest_plugin_add(m32, "i386bin", p, NULL, NULL,
                                              NULL, &id, why, sizeof(why)),
                         0);
        gpm_manager_free(m32);
    }
    g_free(p);
    p = path_in("x86_64", "hello");
    gpm_channel_close(m, id);
    assert_int_equal(gpm_channel_close(m, 1000), GPM_EBADF);
    assert_int_equal(gpm_guest_plugin_add(m, "hello2", p, NULL, NULL, NULL, &id,
                                          why, sizeof(why)),
                     0);
    assert_int_equal(gpm_channel_read(m, daemon, frame, sizeof(frame), &n), 0);
    seq = (uint32_t)frame[8] | (uint32_t)frame[9] << 8;
    le32(payload, 8);
    le32(payload + 4, GPM_DSTAGE_EXEC);
    memcpy(payload + 8, "exec format error", 17);
    len = put_frame(cpu, 0, GPM_DFRAME_FAILED, seq, payload, 25);
    assert_int_equal(
        fake_hc(m, cpu, GPM_HC_OP_WRITE, daemon, FAKE_BASE, len, NULL),
        (int64_t)len);
    assert_string_equal(g_ptr_array_index(log.lines, 4),
                        "8|hello2|-1|0|8|exec format error");

    gpm_manager_free(m);
    assert_int_equal(releases, 1);
    g_ptr_array_free(log.lines, TRUE);
    g_free(p);
    g_free(cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_daemon_link),
    };

    return cmocka_run_group_tests_name("plugins", tests, group_setup,
                                       group_teardown);
}
