/*
 * ringtest.c - guest side of the ring tests (tests/test_e2e_rings.py).
 *
 * Usage: ringtest stress N SEED | ringtest corrupt
 *
 *   stress   On channel "ringtest": a writer thread sends N messages of
 *            pseudo-random sizes (1 byte to 200 KiB, so records split,
 *            wrap and fill the ring), each "seq u32, len u32, pattern";
 *            a reader thread reads the host's echo of every message and
 *            checks it byte for byte, in order. Ends with
 *            "RINGTEST stress ok=N bad=B" (or the first error).
 *   corrupt  Breaks the rules of one ring on purpose: an anonymous channel
 *            whose pair it maps itself (raw RING_ATTACH and /dev/mem) gets
 *            a good record, then a head index past its data area; a second
 *            anonymous channel, attached by the library, gets its pair
 *            re-attached and its head corrupted the same way, after which
 *            the library's gpm_write must fail. The main channel keeps
 *            working throughout. Reports "RINGTEST corrupt raw_status=..
 *            lib_write=.. main=ok".
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gpm/ring_abi.h"
#include "gpm_guest.h"

#define MAX_MSG (200u << 10)

static gpm_chan_t chan;
static unsigned long nmsgs, seed;
static volatile unsigned long bad, checked;
static volatile int writer_err;

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* The size of message @seq: mostly small, some large, a few huge. */
static uint32_t msg_size(uint32_t seq)
{
    uint32_t s = (uint32_t)seed ^ (seq * 2654435761u), r = next_rand(&s);

    switch (r % 8) {
    case 0:
        return 8 + r % MAX_MSG;
    case 1:
    case 2:
        return 8 + r % 8192;
    default:
        return 8 + r % 300;
    }
}

static void fill(unsigned char *p, uint32_t seq, uint32_t len)
{
    memcpy(p, &seq, 4);
    memcpy(p + 4, &len, 4);
    for (uint32_t i = 8; i < len; i++)
        p[i] = (unsigned char)(seq * 31u + i * 7u);
}

static void *writer(void *arg)
{
    unsigned char *buf = malloc(MAX_MSG + 8);

    (void)arg;
    for (uint32_t seq = 0; buf && seq < nmsgs; seq++) {
        uint32_t len = msg_size(seq);
        ssize_t w;

        fill(buf, seq, len);
        w = gpm_write(chan, buf, len);
        if (w < 0) {
            writer_err = (int)w;
            break;
        }
    }
    free(buf);
    return NULL;
}

static int mode_stress(void)
{
    unsigned char *want = malloc(MAX_MSG + 8), *got = malloc(MAX_MSG + 8);
    char msg[160];
    pthread_t t;

    if (!want || !got || gpm_channel_open("ringtest", &chan) < 0)
        return 2;
    if (pthread_create(&t, NULL, writer, NULL) != 0)
        return 2;
    for (uint32_t seq = 0; seq < nmsgs && !writer_err; seq++) {
        uint32_t len = msg_size(seq);
        int rc;

        fill(want, seq, len);
        rc = gpm_read_exact(chan, got, len);
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "RINGTEST stress read=%d seq=%u", rc,
                     seq);
            gpm_write_str(chan, msg);
            return 1;
        }
        if (memcmp(want, got, len) != 0)
            bad++;
        checked++;
    }
    pthread_join(t, NULL);
    snprintf(msg, sizeof(msg), "RINGTEST stress ok=%lu bad=%lu writer=%d",
             checked - bad, bad, writer_err);
    gpm_write_str(chan, msg);
    gpm_channel_stop(chan);
    return bad || writer_err ? 1 : 0;
}

static volatile unsigned char *map_pair(uint64_t phys)
{
    int fd = open("/dev/mem", O_RDWR | O_CLOEXEC);
    void *p;

    if (fd < 0)
        return NULL;
    p = mmap(NULL, GPM_RING_SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
             (off_t)phys);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static uint32_t le32(uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap32(v);
#else
    return v;
#endif
}

static void put32(volatile unsigned char *pair, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(pair + off) = le32(v);
}

static int32_t status_of(volatile unsigned char *pair)
{
    /* The host shuts a broken ring within a few of its polls. */
    for (int i = 0; i < 200; i++) {
        int32_t st = (int32_t)le32(*(volatile uint32_t *)(pair + 320));
        struct timespec ts = {0, 10000000};

        if (st != 0)
            return st;
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int mode_corrupt(void)
{
    volatile unsigned char *raw, *lib;
    gpm_chan_t anon, anon2;
    uint64_t phys;
    int32_t raw_status, lib_status;
    ssize_t lib_write;
    char msg[200];

    if (gpm_channel_open("ringtest", &chan) < 0 ||
        gpm_write_str(chan, "main before") < 0)
        return 2;
    /* A pair mapped by hand: one good record, then a wild head. */
    phys = gpm_hc(GPM_HC_OP_GET_MANAGER, 0, 0, 0);
    anon = (gpm_chan_t)phys;
    if (gpm_hc_err(phys) || gpm_hc_err(gpm_hc(GPM_HC_OP_START, anon, 0, 0)))
        return 3;
    phys = gpm_hc(GPM_HC_OP_RING_ATTACH, anon, 0, 0);
    if (gpm_hc_err(phys) || (raw = map_pair(phys)) == NULL)
        return 4;
    {
        uint32_t w[2] = {le32(6), 0};

        memcpy((void *)(raw + GPM_RING_OFF_G2H_DATA), w, 8);
        memcpy((void *)(raw + GPM_RING_OFF_G2H_DATA + 8), "raw-ok", 6);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        put32(raw, GPM_RING_OFF_G2H_HEAD, 16);
        sleep(1);
        put32(raw, GPM_RING_OFF_G2H_HEAD, GPM_RING_DATA_SIZE * 3 + 8);
    }
    raw_status = status_of(raw);
    if (gpm_write_str(chan, "main between") < 0)
        return 5;
    /* A library ring, re-attached under it and corrupted the same way. */
    if (gpm_channel_manager(&anon2) < 0 || gpm_write_str(anon2, "lib-ok") < 0)
        return 6;
    sleep(1);
    phys = gpm_hc(GPM_HC_OP_RING_ATTACH, anon2, 0, 0);
    if (gpm_hc_err(phys) || (lib = map_pair(phys)) == NULL)
        return 7;
    put32(lib, GPM_RING_OFF_G2H_HEAD, 12); /* not a record boundary */
    lib_status = status_of(lib);
    lib_write = gpm_write_str(anon2, "after the break");
    snprintf(msg, sizeof(msg),
             "RINGTEST corrupt anon=%u anon2=%u raw_status=%d lib_status=%d "
             "lib_write=%zd",
             anon, anon2, raw_status, lib_status, lib_write);
    if (gpm_write_str(chan, msg) < 0 || gpm_write_str(chan, "main after") < 0)
        return 8;
    gpm_channel_stop(chan);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "stress") == 0) {
        nmsgs = strtoul(argv[2], NULL, 0);
        seed = strtoul(argv[3], NULL, 0);
        return mode_stress();
    }
    if (argc == 2 && strcmp(argv[1], "corrupt") == 0)
        return mode_corrupt();
    fprintf(stderr, "usage: ringtest stress N SEED | ringtest corrupt\n");
    return 64;
}
