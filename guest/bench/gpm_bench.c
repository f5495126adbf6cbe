/*
 * gpm_bench.c - guest side of the pandagpm benchmarks (bench/).
 *
 * Usage: gpm_bench [-c CHANNEL] [MODE ARGS...]
 *
 *   (no mode)         open CHANNEL, write "GPMBENCH ready", exit. Used as
 *                     a plugin to time load_guest_plugin-to-first-message.
 *   hc N              N no-op hypercalls (READ of at most 8 bytes on
 *                     CHANNEL, which the host keeps empty), each timed with
 *                     clock_gettime; the percentiles go to the host.
 *   hcw N             N one-byte WRITEs on CHANNEL (the host timestamps
 *                     each in its callback).
 *   bare N            N calls of the hypercall stub with no channel: for a
 *                     bare gdbstub client that only continues past the
 *                     breakpoint. Prints the percentiles on stdout.
 *   g2h SIZE TOTAL    write TOTAL bytes to CHANNEL, SIZE bytes per call.
 *   h2g SIZE TOTAL    read TOTAL bytes from CHANNEL into a SIZE-byte buffer.
 *   rt N SIZE         N round trips: write SIZE bytes, wait for the host's
 *                     answer (any bytes) with gpm_read_blocking; each
 *                     timed with clock_gettime, the percentiles go to the
 *                     host as "GPMBENCH rt ...".
 *   flood SIZE TOTAL  raw WRITE hypercalls of SIZE bytes on CHANNEL until
 *                     TOTAL bytes were offered, whatever the host answers;
 *                     counts the answers and prints them on stdout.
 *
 * CHANNEL defaults to "gpm_bench". Control messages to the host are text
 * starting with "GPMBENCH "; bulk data is 0xa5 bytes, so the two never
 * mix up. Times measured here use the guest's CLOCK_MONOTONIC, which
 * does not advance while QEMU holds the VM stopped at a breakpoint: the
 * host's own clock is the reference for everything that includes a stop.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("gpm_bench", GPM_GUEST_VERSION,
                      "pandagpm benchmark program (bench/)");

#define FILL_BYTE 0xa5

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The value at fraction @q (0..1) of a sorted array. */
static uint64_t pct(const uint64_t *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);

    return v[i < n ? i : n - 1];
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (*end != '\0' || v == 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int send_text(gpm_chan_t chan, const char *text)
{
    ssize_t n = gpm_write_str(chan, text);

    if (n < 0) {
        fprintf(stderr, "gpm_bench: write: %s\n", strerror((int)-n));
        return -1;
    }
    return 0;
}

/* Formats the percentiles of @v (sorted in place) after @prefix. */
static void format_pcts(char *out, size_t room, const char *prefix, uint64_t *v,
                        size_t n, uint64_t total_ns)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    snprintf(out, room,
             "%s n=%zu min_ns=%llu p10_ns=%llu p50_ns=%llu p90_ns=%llu "
             "p99_ns=%llu max_ns=%llu total_ns=%llu",
             prefix, n, (unsigned long long)v[0],
             (unsigned long long)pct(v, n, 0.10),
             (unsigned long long)pct(v, n, 0.50),
             (unsigned long long)pct(v, n, 0.90),
             (unsigned long long)pct(v, n, 0.99), (unsigned long long)v[n - 1],
             (unsigned long long)total_ns);
}

/* Times @n hypercalls of @op; @chan 0 means "no channel" (bare mode). */
static uint64_t *time_calls(size_t n, uint64_t op, gpm_chan_t chan,
                            uint64_t *total_ns, unsigned long *errors)
{
    static unsigned char buf[8];
    uint64_t *v = calloc(n, sizeof(*v));
    uint64_t t_start;
    size_t i;

    if (!v)
        return NULL;
    gpm_touch_write(buf, sizeof(buf));
    *errors = 0;
    t_start = now_ns();
    for (i = 0; i < n; i++) {
        uint64_t t0 = now_ns(), ret;

        buf[0] = 'x';
        ret = gpm_hc(op, chan, (uintptr_t)buf, op == GPM_HC_OP_WRITE ? 1 : 8);
        v[i] = now_ns() - t0;
        if (chan && gpm_hc_err(ret))
            (*errors)++;
    }
    *total_ns = now_ns() - t_start;
    return v;
}

static int mode_hc(gpm_chan_t chan, size_t n, int write)
{
    char msg[512], prefix[64];
    unsigned long errors;
    uint64_t total, *v;

    if (send_text(chan, "GPMBENCH begin") < 0)
        return 1;
    v = time_calls(n, write ? GPM_HC_OP_WRITE : GPM_HC_OP_READ, chan, &total,
                   &errors);
    if (!v)
        return 1;
    snprintf(prefix, sizeof(prefix), "GPMBENCH %s errors=%lu",
             write ? "hcw" : "hc", errors);
    format_pcts(msg, sizeof(msg), prefix, v, n, total);
    free(v);
    return send_text(chan, msg) < 0;
}

static int mode_bare(size_t n)
{
    char msg[512];
    unsigned long errors;
    uint64_t total, *v;

    v = time_calls(n, GPM_HC_OP_READ, 0, &total, &errors);
    if (!v)
        return 1;
    format_pcts(msg, sizeof(msg), "GPMBENCH bare", v, n, total);
    free(v);
    printf("%s\n", msg);
    return 0;
}

static unsigned char *alloc_buf(size_t size)
{
    unsigned char *buf = malloc(size);

    if (buf)
        memset(buf, FILL_BYTE, size); /* every page present and private */
    return buf;
}

static int mode_g2h(gpm_chan_t chan, size_t size, size_t total)
{
    unsigned char *buf = alloc_buf(size);
    uint64_t t0, t1;
    size_t done = 0;
    char msg[160];

    if (!buf || send_text(chan, "GPMBENCH begin") < 0)
        return 1;
    t0 = now_ns();
    while (done < total) {
        size_t n = total - done < size ? total - done : size;
        ssize_t w = gpm_write(chan, buf, n);

        if (w < 0) {
            fprintf(stderr, "gpm_bench: g2h write: %s\n", strerror((int)-w));
            free(buf);
            return 1;
        }
        done += n;
    }
    t1 = now_ns();
    free(buf);
    snprintf(msg, sizeof(msg), "GPMBENCH g2h bytes=%zu size=%zu guest_ns=%llu",
             done, size, (unsigned long long)(t1 - t0));
    return send_text(chan, msg) < 0;
}

static int mode_h2g(gpm_chan_t chan, size_t size, size_t total)
{
    unsigned char *buf = alloc_buf(size);
    unsigned long bad = 0, reads = 0;
    uint64_t t0, t1;
    size_t done = 0, i;
    char msg[200];

    if (!buf || send_text(chan, "GPMBENCH begin") < 0)
        return 1;
    t0 = now_ns();
    while (done < total) {
        size_t want = total - done < size ? total - done : size;
        ssize_t n = gpm_read_blocking(chan, buf, want);

        if (n < 0) {
            fprintf(stderr, "gpm_bench: h2g read: %s\n", strerror((int)-n));
            free(buf);
            return 1;
        }
        reads++;
        /* Spot-check the content: the host sends FILL_BYTE too. */
        for (i = 0; i < (size_t)n; i += 4096)
            bad += buf[i] != FILL_BYTE;
        done += (size_t)n;
    }
    t1 = now_ns();
    free(buf);
    snprintf(msg, sizeof(msg),
             "GPMBENCH h2g bytes=%zu size=%zu reads=%lu bad=%lu guest_ns=%llu",
             done, size, reads, bad, (unsigned long long)(t1 - t0));
    return send_text(chan, msg) < 0;
}

static int mode_rt(gpm_chan_t chan, size_t n, size_t size)
{
    unsigned char *buf = alloc_buf(size), answer[4096];
    uint64_t *v = calloc(n, sizeof(*v)), t_start;
    char msg[300];
    size_t i;

    if (!buf || !v || send_text(chan, "GPMBENCH begin") < 0)
        return 1;
    t_start = now_ns();
    for (i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        ssize_t r = gpm_write(chan, buf, size);

        if (r >= 0)
            r = gpm_read_blocking(chan, answer, sizeof(answer));
        if (r < 0) {
            fprintf(stderr, "gpm_bench: rt: %s\n", strerror((int)-r));
            return 1;
        }
        v[i] = now_ns() - t0;
    }
    format_pcts(msg, sizeof(msg), "GPMBENCH rt", v, n, now_ns() - t_start);
    free(v);
    free(buf);
    return send_text(chan, msg) < 0;
}

static int mode_flood(const char *name, size_t size, size_t total)
{
    unsigned long calls = 0, accepted_calls = 0, zero = 0, epipe = 0, ebusy = 0,
                  other = 0;
    unsigned char *buf = alloc_buf(size);
    unsigned long long accepted = 0;
    size_t offered = 0;
    uint64_t t0, ret;
    long err;
    gpm_chan_t chan;
    int rc;

    if (!buf)
        return 1;
    rc = gpm_channel_open(name, &chan);
    if (rc < 0) {
        fprintf(stderr, "gpm_bench: open %s: %s\n", name, strerror(-rc));
        free(buf);
        return 2;
    }
    t0 = now_ns();
    while (offered < total) {
        size_t n = total - offered < size ? total - offered : size;

        ret = gpm_hc(GPM_HC_OP_WRITE, chan, (uintptr_t)buf, n);
        calls++;
        err = gpm_hc_err(ret);
        if (err == GPM_HC_EPIPE)
            epipe++;
        else if (err == GPM_HC_EBUSY)
            ebusy++;
        else if (err)
            other++;
        else if (ret == 0)
            zero++;
        else {
            accepted += ret;
            accepted_calls++;
        }
        offered += n;
    }
    printf("GPMBENCH flood calls=%lu offered=%zu accepted=%llu "
           "accepted_calls=%lu zero=%lu epipe=%lu ebusy=%lu other=%lu "
           "guest_ns=%llu\n",
           calls, offered, accepted, accepted_calls, zero, epipe, ebusy, other,
           (unsigned long long)(now_ns() - t0));
    free(buf);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: gpm_bench [-c CHANNEL] [hc N | hcw N | bare N | "
                    "g2h SIZE TOTAL | h2g SIZE TOTAL | rt N SIZE | "
                    "flood SIZE TOTAL]\n");
    return 64;
}

int main(int argc, char **argv)
{
    const char *name = "gpm_bench", *mode;
    size_t a = 0, b = 0;
    gpm_chan_t chan;
    int rc, i = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 2 && strcmp(argv[1], "-c") == 0) {
        name = argv[2];
        i = 3;
    }
    mode = i < argc ? argv[i] : NULL;
    if (mode && i + 1 < argc && parse_size(argv[i + 1], &a) < 0)
        return usage();
    if (mode && i + 2 < argc && parse_size(argv[i + 2], &b) < 0)
        return usage();
    if (mode && strcmp(mode, "bare") == 0)
        return a ? mode_bare(a) : usage();
    if (mode && strcmp(mode, "flood") == 0)
        return a && b ? mode_flood(name, a, b) : usage();

    rc = gpm_channel_open(name, &chan);
    if (rc < 0) {
        fprintf(stderr, "gpm_bench: open %s: %s\n", name, strerror(-rc));
        return 2;
    }
    if (!mode)
        rc = send_text(chan, "GPMBENCH ready") < 0;
    else if (strcmp(mode, "hc") == 0 && a)
        rc = mode_hc(chan, a, 0);
    else if (strcmp(mode, "hcw") == 0 && a)
        rc = mode_hc(chan, a, 1);
    else if (strcmp(mode, "g2h") == 0 && a && b)
        rc = mode_g2h(chan, a, b);
    else if (strcmp(mode, "h2g") == 0 && a && b)
        rc = mode_h2g(chan, a, b);
    else if (strcmp(mode, "rt") == 0 && a && b)
        rc = mode_rt(chan, a, b);
    else
        rc = usage();
    gpm_channel_stop(chan);
    return rc;
}
