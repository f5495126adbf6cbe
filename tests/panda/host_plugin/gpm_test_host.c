/*
 * gpm_test_host.c - a small C host plugin for tests/test_panda_real_cmdline.py:
 * what a PANDA user writes on top of guest_plugin_manager.
 *
 * It uses the API both ways a user can:
 *  - by name: add_guest_plugin(), channel_write(), get_channel_from_name()
 *    and allocate_channel() called directly (PANDA reopens
 *    guest_plugin_manager with RTLD_GLOBAL, so this plugin must be loaded
 *    after it), with GuestPlugin's msg_receive_cb;
 *  - through dlsym() on panda_get_plugin_by_name("guest_plugin_manager")
 *    under the original function names, with the original documentation's
 *    spelling msg_recieve_cb.
 *
 * Arguments (-panda gpm_test_host:key=value,...):
 *   out=FILE       where results go, one "key=value" line each (appended,
 *                  flushed at once);
 *   number=N       the u32 sent to the hello guest plugin (default 7);
 *   hostile=true   open the named channel "hostile" for
 *                  guest/testprogs/hostile.c started from the guest shell:
 *                  queue its two probes, check its attack-phase messages,
 *                  answer with flood=N of size=S and check the flood.
 *
 * It also registers guest_plugin_manager's PPP callback on_guest_agent_load:
 * from the second daemon on (after a snapshot load) it loads etc_count
 * again.
 *
 * Results: api_same, etc_count, hello_1..3, lookup_*, anon_*, agent_load,
 * etc_count_again, and with hostile hostile_pre, hostile_big_ok,
 * hostile_zero_ok, flood_*.
 */
#include "panda/plugin.h"
#include "panda/plugin_plugin.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* guest_plugin_manager_import(): dlsym() under the original names. */
#define GUEST_PLUGIN_MANAGER_WANT_IMPORT
#include "guest_plugin_manager.h"

bool init_plugin(void *self);
void uninit_plugin(void *self);

#define HOSTILE_BIG (1u << 20)

static FILE *out;
static uint32_t hello_number = 7;
static unsigned hello_seen;
static GuestPluginManagerApi api; /* the dlsym() path */
static ChannelId hello_chan, hostile_chan;

static struct {
    unsigned pre; /* attack-phase messages seen */
    unsigned pre_len[4];
    bool big_ok, zero_ok, flooding;
    uint32_t flood_n, flood_size;
    uint64_t next;
    unsigned bad;
} hs;

static void result(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void result(const char *fmt, ...)
{
    va_list ap;

    if (out == NULL)
        return;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

/* etc_count sends one little-endian u32 (by-name path). */
static void on_etc_count(ChannelId id, const uint8_t *msg, size_t len)
{
    (void)id;
    if (len == 4)
        result("etc_count=%u", (unsigned)msg[0] | (unsigned)msg[1] << 8 |
                                   (unsigned)msg[2] << 16 |
                                   (unsigned)msg[3] << 24);
    else
        result("etc_count_bad_len=%zu", len);
}

/* hello: two messages, then our number, then its echo (dlsym path). */
static void on_hello(ChannelId id, const uint8_t *msg, size_t len)
{
    hello_seen++;
    result("hello_%u=%.*s", hello_seen, (int)len, (const char *)msg);
    if (hello_seen == 2) {
        uint8_t le[4] = {(uint8_t)hello_number, (uint8_t)(hello_number >> 8),
                         (uint8_t)(hello_number >> 16),
                         (uint8_t)(hello_number >> 24)};

        api.channel_write(id, le, sizeof(le));
        result("hello_sent=%u error=%d", hello_number, api.last_error());
    }
}

static void on_etc_again(ChannelId id, const uint8_t *msg, size_t len)
{
    (void)id;
    if (len == 4)
        result("etc_count_again=%u", (unsigned)msg[0] | (unsigned)msg[1] << 8 |
                                         (unsigned)msg[2] << 16 |
                                         (unsigned)msg[3] << 24);
}

/*
 * guest_plugin_manager's PPP callback: a daemon said hello. The first
 * one serves what init_plugin() queued; every later one (after a
 * snapshot load) gets etc_count again.
 */
static void on_agent_load(CPUState *cpu)
{
    static unsigned hellos;
    GuestPlugin again = {"etc_count", NULL, on_etc_again};

    (void)cpu;
    hellos++;
    result("agent_load=%u", hellos);
    if (hellos >= 2)
        result("etc_count_again_chan=%u", add_guest_plugin(again));
}

static void on_anon(ChannelId id, const uint8_t *msg, size_t len)
{
    (void)msg;
    result("anon_received=%u:%zu", id, len);
}

/* Bytes 8.. of flood message @seq: (seq + j) & 0xff. */
static bool flood_ok(const uint8_t *msg, size_t len, uint64_t seq)
{
    uint64_t got = 0;

    if (len != hs.flood_size)
        return false;
    for (unsigned i = 0; i < 8; i++)
        got |= (uint64_t)msg[i] << (8 * i);
    if (got != seq)
        return false;
    for (size_t j = 8; j < len; j++)
        if (msg[j] != (uint8_t)((seq + j) & 0xff))
            return false;
    return true;
}

static void hostile_attack_msg(ChannelId id, const uint8_t *msg, size_t len)
{
    if (hs.pre < 4)
        hs.pre_len[hs.pre] = (unsigned)len;
    hs.pre++;
    if (hs.pre <= 2) {
        bool ok = len == HOSTILE_BIG;

        for (size_t j = 0; ok && j < len; j++)
            ok = msg[j] == (uint8_t)(j * 7 + 3);
        hs.big_ok = (hs.pre == 1 || hs.big_ok) && ok;
    } else if (hs.pre == 3) {
        bool ok = len == 4096;

        for (size_t j = 0; ok && j < len; j++)
            ok = msg[j] == 0;
        hs.zero_ok = ok;
    }
    if (len == 12 && memcmp(msg, "ATTACKS-DONE", 12) == 0) {
        uint8_t cmd[8];

        for (unsigned i = 0; i < 4; i++) {
            cmd[i] = (uint8_t)(hs.flood_n >> (8 * i));
            cmd[4 + i] = (uint8_t)(hs.flood_size >> (8 * i));
        }
        result("hostile_pre=%u,%u,%u,%u", hs.pre_len[0], hs.pre_len[1],
               hs.pre_len[2], hs.pre_len[3]);
        result("hostile_pre_count=%u", hs.pre);
        result("hostile_big_ok=%d", hs.big_ok);
        result("hostile_zero_ok=%d", hs.zero_ok);
        hs.flooding = true;
        channel_write(id, cmd, sizeof(cmd));
        result("flood_sent=%d", guest_plugin_manager_last_error());
    }
}

static void on_hostile(ChannelId id, const uint8_t *msg, size_t len)
{
    if (!hs.flooding) {
        hostile_attack_msg(id, msg, len);
        return;
    }
    if (!flood_ok(msg, len, hs.next) && hs.bad++ < 3)
        result("flood_bad=%llu:%zu", (unsigned long long)hs.next, len);
    hs.next++;
    if (hs.next == hs.flood_n)
        result("flood_done=%llu bad=%u", (unsigned long long)hs.next, hs.bad);
}

/* The two probes hostile.c reads back after its failed READs. */
static void hostile_setup(void)
{
    char p1[65], p2[101];

    memset(p1, 'a', 64);
    memcpy(p1, "PROBE1-", 7);
    p1[64] = '\0';
    memset(p2, 'b', 100);
    memcpy(p2, "PROBE2-", 7);
    p2[100] = '\0';
    hostile_chan = api.open_channel("hostile", on_hostile);
    result("hostile_chan=%u", hostile_chan);
    channel_write(hostile_chan, (const uint8_t *)p1, 64);
    channel_write(hostile_chan, (const uint8_t *)p2, 100);
}

bool init_plugin(void *self)
{
    panda_arg_list *args = panda_get_args("gpm_test_host");
    const char *path = panda_parse_string_opt(args, "out", NULL, "results");
    bool hostile = panda_parse_bool_opt(args, "hostile", "hostile channel");
    void *gpm = panda_get_plugin_by_name("guest_plugin_manager");
    GuestPlugin etc = {"etc_count", NULL, on_etc_count};
    GuestPlugin hello = {0};
    ChannelId etc_chan, anon, unknown;

    (void)self;
    hello_number = panda_parse_uint32_opt(args, "number", 7, "for hello");
    hs.flood_n = panda_parse_uint32_opt(args, "flood", 2000, "flood count");
    hs.flood_size = panda_parse_uint32_opt(args, "size", 2048, "flood size");
    out = path != NULL ? fopen(path, "a") : NULL;
    panda_free_args(args);
    if (out == NULL || gpm == NULL || !guest_plugin_manager_import(gpm, &api)) {
        fprintf(stderr, "gpm_test_host: needs out=FILE and "
                        "guest_plugin_manager loaded first\n");
        if (out != NULL)
            fclose(out);
        out = NULL;
        return false;
    }
    /* Both paths reach the same functions. */
    result("api_same=%d",
           api.add_guest_plugin == add_guest_plugin &&
               api.channel_write == channel_write &&
               api.get_channel_from_name == get_channel_from_name &&
               api.allocate_channel == allocate_channel);

    etc_chan = add_guest_plugin(etc);
    result("etc_count_chan=%u", etc_chan);
    hello.plugin_name = "hello";
    hello.msg_recieve_cb = on_hello; /* the original spelling */
    hello_chan = api.add_guest_plugin(hello);
    result("hello_chan=%u", hello_chan);
    result("lookup_hello=%d", get_channel_from_name("hello") == hello_chan &&
                                  hello_chan != GPM_PANDA_CHANNEL_NONE);
    unknown = api.get_channel_from_name("no_such_channel");
    result("lookup_unknown=%u error=%d", unknown, api.last_error());
    anon = allocate_channel(on_anon);
    result("anon_chan=%u", anon);
    channel_write(anon, (const uint8_t *)"for nobody", 10);
    result("anon_write=%d", guest_plugin_manager_last_error());
    if (hostile)
        hostile_setup();
    PPP_REG_CB("guest_plugin_manager", on_guest_agent_load, on_agent_load);
    return true;
}

void uninit_plugin(void *self)
{
    (void)self;
    /* Not PPP_REMOVE_CB(): it asserts if the manager is already gone. */
    if (panda_get_plugin_by_name("guest_plugin_manager") != NULL)
        PPP_REMOVE_CB("guest_plugin_manager", on_guest_agent_load,
                      on_agent_load);
    result("uninit=1");
    if (out != NULL)
        fclose(out);
    out = NULL;
}
