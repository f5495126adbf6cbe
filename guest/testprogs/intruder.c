/*
 * intruder.c - a guest process that is neither the daemon nor the plugin
 * it attacks (issue 11): it forges daemon frames, floods or desyncs the
 * daemon channel, snoops on a plugin's channel and hoards anonymous
 * channels. Every hypercall result is printed as "name=value" (signed;
 * see gpm/abi.h), and "done=MODE" at the end. A refused GET_CHANNEL is
 * printed as lookup=, and the id in $CHAN_ID is attacked instead.
 *
 *   intruder forge PID      fake HELLO (pid 4242), STARTED (pid 31337)
 *                           for seq 1..16 and EXITED for PID, all named
 *                           "hello"; then a READ that would steal a LOAD
 *   intruder flood MIB      MIB MiB of 16-byte headers promising 8 KiB
 *   intruder stuck          one valid FAILED header promising 1024 bytes,
 *                           and only 8 of them
 *   intruder snoop NAME     GET_CHANNEL, START, READ, WRITE, STOP on NAME
 *   intruder hoard          GET_MANAGER until refused (a full table is
 *                           retried for 5 s first); STOP one, get one
 *   intruder                (as a plugin) hoard, then write the count as
 *                           a u32 on the channel "intruder" and exit
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "gpm/daemon_proto.h"
#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("intruder", GPM_GUEST_VERSION,
                      "Attacks the daemon and other plugins' channels (a "
                      "test)");

#define MIB (1u << 20)

static void report(const char *name, uint64_t r)
{
    printf("%s=%lld\n", name, (long long)gpm_hc_signed(r));
    fflush(stdout);
}

static void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static size_t frame(uint8_t *p, uint16_t type, uint32_t seq, const void *pl,
                    uint32_t len, uint32_t claimed)
{
    le32(p, GPM_DFRAME_MAGIC);
    le16(p + 4, GPM_DFRAME_VERSION);
    le16(p + 6, type);
    le32(p + 8, seq);
    le32(p + 12, claimed);
    if (pl)
        memcpy(p + 16, pl, len);
    return 16 + len;
}

/*
 * The id of @name. A refused GET_CHANNEL is printed as lookup=; the id in
 * the environment variable CHAN_ID (the host tells the test) is used then.
 */
static uint64_t lookup(const char *name)
{
    uint64_t r =
        gpm_hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)name, strlen(name));
    const char *env = getenv("CHAN_ID");

    report("lookup", r);
    if (gpm_hc_err(r) != 0 && env)
        r = strtoull(env, NULL, 0);
    return r;
}

/* Raw WRITE of @len bytes; retries only while the host says EBUSY. */
static uint64_t raw_write(uint64_t chan, const void *buf, size_t len)
{
    struct gpm_backoff bo = {0, 0};
    uint64_t r;

    gpm_touch_read(buf, len);
    for (int i = 0; i < 200; i++) {
        r = gpm_hc(GPM_HC_OP_WRITE, chan, (uintptr_t)buf, len);
        if (gpm_hc_err(r) != GPM_HC_EBUSY)
            return r;
        gpm_backoff_wait(&bo);
    }
    return r;
}

static void forge(long victim)
{
    uint64_t d = lookup(GPM_DAEMON_CHANNEL);
    uint8_t f[64], pl[32];
    uint64_t r, worst = 0;
    size_t n;

    le32(pl, 4242);
    le32(pl + 4, 1);
    n = frame(f, GPM_DFRAME_HELLO, 0, pl, 8, 8);
    report("fake_hello", raw_write(d, f, n));
    for (uint32_t seq = 1; seq <= 16; seq++) {
        le32(pl, 31337);
        memcpy(pl + 4, "hello", 5);
        n = frame(f, GPM_DFRAME_STARTED, seq, pl, 9, 9);
        r = raw_write(d, f, n);
        if (gpm_hc_err(r) == 0)
            worst = r;
        else if (worst == 0)
            worst = r;
    }
    report("fake_started", worst);
    le32(pl, (uint32_t)victim);
    le32(pl + 4, 0);
    memcpy(pl + 8, "hello", 5);
    n = frame(f, GPM_DFRAME_EXITED, 0, pl, 13, 13);
    report("fake_exited", raw_write(d, f, n));
    gpm_touch_write(f, sizeof(f));
    report("steal_read", gpm_hc(GPM_HC_OP_READ, d, (uintptr_t)f, sizeof(f)));
    report("start_daemon", gpm_hc(GPM_HC_OP_START, d, 0, 0));
}

static void flood(unsigned mib)
{
    uint64_t d = lookup(GPM_DAEMON_CHANNEL);
    uint8_t *buf = mmap(NULL, MIB, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint64_t r = 0, taken = 0;

    if (buf == MAP_FAILED) {
        printf("mmap_failed=1\n");
        exit(3);
    }
    for (size_t off = 0; off < MIB; off += 16)
        frame(buf + off, GPM_DFRAME_STARTED, 1, NULL, 0, 8192);
    for (unsigned i = 0; i < mib; i++) {
        r = raw_write(d, buf, MIB);
        if (gpm_hc_err(r) != 0)
            break;
        taken += r;
    }
    report("flood_last", r);
    report("flood_taken", taken);
}

static void stuck(void)
{
    uint64_t d = lookup(GPM_DAEMON_CHANNEL);
    uint8_t f[24] = {0};

    frame(f, GPM_DFRAME_FAILED, 1, NULL, 0, 1024);
    report("stuck", raw_write(d, f, sizeof(f)));
}

static void snoop(const char *name)
{
    uint64_t c = lookup(name);
    uint8_t buf[256];

    report("snoop_start", gpm_hc(GPM_HC_OP_START, c, 0, 0));
    gpm_touch_write(buf, sizeof(buf));
    report("snoop_read", gpm_hc(GPM_HC_OP_READ, c, (uintptr_t)buf, 256));
    report("snoop_write", raw_write(c, "forged by the intruder", 22));
    report("snoop_stop", gpm_hc(GPM_HC_OP_STOP, c, 0, 0));
}

static unsigned hoard(void)
{
    uint64_t r, first = 0;
    unsigned count = 0;

    for (unsigned full = 0;;) {
        r = gpm_hc(GPM_HC_OP_GET_MANAGER, 0, 0, 0);
        /*
         * A full table makes the host ask its daemon which holders have
         * ended; their channels come back soon after: retry for a while.
         */
        if (count == 0 && gpm_hc_err(r) == GPM_HC_ENOSPC && ++full < 100) {
            struct timespec ts = {0, 50 * 1000 * 1000};

            nanosleep(&ts, NULL);
            continue;
        }
        if (gpm_hc_err(r) != 0 || r == 0 || count >= 100000)
            break;
        if (!first)
            first = r;
        count++;
    }
    printf("hoard_count=%u\n", count);
    report("hoard_refused", r);
    report("hoard_stop", gpm_hc(GPM_HC_OP_STOP, first, 0, 0));
    report("hoard_again", gpm_hc(GPM_HC_OP_GET_MANAGER, 0, 0, 0));
    return count;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "plugin";

    if (strcmp(mode, "forge") == 0 && argc > 2) {
        forge(atol(argv[2]));
    } else if (strcmp(mode, "flood") == 0 && argc > 2) {
        flood((unsigned)atoi(argv[2]));
    } else if (strcmp(mode, "stuck") == 0) {
        stuck();
    } else if (strcmp(mode, "snoop") == 0 && argc > 2) {
        snoop(argv[2]);
    } else if (strcmp(mode, "hoard") == 0) {
        hoard();
    } else if (strcmp(mode, "plugin") == 0) {
        gpm_chan_t chan;
        uint8_t le[4];

        if (gpm_channel_open("intruder", &chan) < 0)
            return 2;
        le32(le, hoard());
        if (gpm_write(chan, le, 4) != 4)
            return 3;
    } else {
        fprintf(stderr,
                "usage: %s forge PID | flood MIB | stuck | "
                "snoop NAME | hoard\n",
                argv[0]);
        return 2;
    }
    printf("done=%s\n", mode);
    return 0;
}
