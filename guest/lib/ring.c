/*
 * ring.c - channel bytes through shared-memory rings, without hypercalls.
 *
 * The host hands a channel a ring pair in reserved guest-physical memory
 * (GPM_HC_OP_RING_ATTACH); this process maps it from /dev/mem and from
 * then on writes and reads that channel's bytes as records in memory
 * (gpm/ring_abi.h), which the host's ring thread serves while the VM runs.
 *
 * Memory: the mapping is of memory the kernel does not manage, so on ARM
 * it is Device memory, where unaligned accesses fault. Every access to the
 * pair therefore goes through aligned words (payloads start 8-aligned and
 * the data areas are multiples of 8); only x86, where any access is fine,
 * uses memcpy. Ordering (docs/rings.md): payload and header, then a
 * release fence, then the head; the head, an acquire fence, the record,
 * a release fence, then the tail.
 *
 * Threads: writers of one channel take its write lock, readers its read
 * lock (spinlocks in this process's memory: atomics on Device memory are
 * not allowed). A forked child forgets the parent's rings (it is another
 * process to the host) and uses hypercalls.
 */
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gpm/ring_abi.h"

#define RING_TABLE         64
/* Empty polls of a ring before the first sleep (tens of microseconds). */
#define RING_SPIN          2000
#define RING_SLEEP_MIN_NS  20000L
#define RING_SLEEP_MAX_NS  200000L
/* How long a writer waits for room before -EBUSY, as the hypercall path. */
#define RING_WRITE_WAIT_NS (30LL * 1000000000LL)

#if defined(__x86_64__) || defined(__i386__)
#define RING_PLAIN_MEMCPY 1
#else
#define RING_PLAIN_MEMCPY 0
#endif

#if defined(__x86_64__)
#include <emmintrin.h>

/*
 * memcpy for the ring on x86_64: 128-byte blocks of SSE2 moves. Under TCG
 * musl's "rep movsq" runs at about 220 MB/s, these at about 2.3 GB/s
 * (measured in the guest); SSE2 is part of x86_64.
 */
static void copy_bytes(void *dst, const void *src, size_t len)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    for (; len >= 128; d += 128, s += 128, len -= 128) {
        __m128i r0 = _mm_loadu_si128((const __m128i *)s + 0);
        __m128i r1 = _mm_loadu_si128((const __m128i *)s + 1);
        __m128i r2 = _mm_loadu_si128((const __m128i *)s + 2);
        __m128i r3 = _mm_loadu_si128((const __m128i *)s + 3);
        __m128i r4 = _mm_loadu_si128((const __m128i *)s + 4);
        __m128i r5 = _mm_loadu_si128((const __m128i *)s + 5);
        __m128i r6 = _mm_loadu_si128((const __m128i *)s + 6);
        __m128i r7 = _mm_loadu_si128((const __m128i *)s + 7);

        _mm_storeu_si128((__m128i *)d + 0, r0);
        _mm_storeu_si128((__m128i *)d + 1, r1);
        _mm_storeu_si128((__m128i *)d + 2, r2);
        _mm_storeu_si128((__m128i *)d + 3, r3);
        _mm_storeu_si128((__m128i *)d + 4, r4);
        _mm_storeu_si128((__m128i *)d + 5, r5);
        _mm_storeu_si128((__m128i *)d + 6, r6);
        _mm_storeu_si128((__m128i *)d + 7, r7);
    }
    memcpy(d, s, len);
}
#else
#define copy_bytes memcpy
#endif

typedef unsigned long gword_t;

struct gpm__ring {
    gpm_chan_t chan; /* 0: a free entry */
    volatile unsigned char *pair;
    int wlock, rlock;
    uint32_t g2h_head; /* our indices; the host trusts only its own */
    uint32_t h2g_tail;
    uint32_t rd_off; /* bytes of the current host record already read */
    int reading;     /* READY written: host bytes come through the ring */
};

static struct gpm__ring table[RING_TABLE];
static int table_lock;
static int atfork_done;

static void spin_lock(int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE) != 0)
        sched_yield();
}

static void spin_unlock(int *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static uint32_t le32(uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap32(v);
#else
    return v;
#endif
}

static uint32_t rd32(const struct gpm__ring *r, uint32_t off)
{
    return le32(*(const volatile uint32_t *)(r->pair + off));
}

static void wr32(struct gpm__ring *r, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(r->pair + off) = le32(v);
}

static void nap(long ns)
{
    struct timespec ts = {0, ns};

    nanosleep(&ts, NULL);
}

/* Copies @len bytes from @src into the data area @area at position @pos. */
static void put_bytes(volatile unsigned char *area, uint32_t pos,
                      const unsigned char *src, size_t len)
{
#if RING_PLAIN_MEMCPY
    size_t at = pos % GPM_RING_DATA_SIZE, first = GPM_RING_DATA_SIZE - at;

    if (first > len)
        first = len;
    copy_bytes((unsigned char *)area + at, src, first);
    copy_bytes((unsigned char *)area, src + first, len - first);
#else
    /* @pos is 8-aligned here (payloads start on a record boundary). */
    while (len > 0) {
        gword_t w = 0;
        size_t n = len < sizeof(w) ? len : sizeof(w);

        memcpy(&w, src, n);
        *(volatile gword_t *)(area + pos % GPM_RING_DATA_SIZE) = w;
        src += n;
        pos += (uint32_t)n;
        len -= n;
    }
#endif
}

/* Copies @len bytes at position @pos (any alignment) out of @area. */
static void get_bytes(const volatile unsigned char *area, uint32_t pos,
                      unsigned char *dst, size_t len)
{
#if RING_PLAIN_MEMCPY
    size_t at = pos % GPM_RING_DATA_SIZE, first = GPM_RING_DATA_SIZE - at;

    if (first > len)
        first = len;
    copy_bytes(dst, (const unsigned char *)area + at, first);
    copy_bytes(dst + first, (const unsigned char *)area, len - first);
#else
    while (len > 0) {
        uint32_t at = pos % GPM_RING_DATA_SIZE;
        uint32_t word_at = at & ~(uint32_t)(sizeof(gword_t) - 1);
        size_t skip = at - word_at, n = sizeof(gword_t) - skip;
        gword_t w = *(const volatile gword_t *)(area + word_at);

        if (n > len)
            n = len;
        memcpy(dst, (unsigned char *)&w + skip, n);
        dst += n;
        pos += (uint32_t)n;
        len -= n;
    }
#endif
}

static void forget_all(void)
{
    for (unsigned i = 0; i < RING_TABLE; i++) {
        if (table[i].chan != 0)
            munmap((void *)table[i].pair, GPM_RING_SLOT_SIZE);
        memset(&table[i], 0, sizeof(table[i]));
    }
    table_lock = 0;
}

static int rings_disabled(void)
{
    const char *v = getenv("GPM_RINGS");

    return v != NULL && strcmp(v, "0") == 0;
}

int gpm__ring_attach(gpm_chan_t chan)
{
    struct gpm__ring *r = NULL;
    void *p = MAP_FAILED;
    uint64_t phys;
    long err;
    int fd;

    if (rings_disabled())
        return -ENOSYS;
    /* Root and /dev/mem first: a ring we cannot map must not be asked. */
    fd = open("/dev/mem", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    phys = gpm_hc(GPM_HC_OP_RING_ATTACH, chan, 0, 0);
    err = gpm_hc_err(phys);
    if (err == 0 && (phys & 4095u) == 0)
        p = mmap(NULL, GPM_RING_SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, (off_t)phys);
    close(fd);
    if (err != 0)
        return (int)err;
    if (p == MAP_FAILED)
        return -ENOMEM;
    spin_lock(&table_lock);
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, forget_all);
        atfork_done = 1;
    }
    for (unsigned i = 0; i < RING_TABLE && r == NULL; i++)
        if (table[i].chan == chan || table[i].chan == 0)
            r = &table[i];
    if (r != NULL && r->chan == chan)
        munmap((void *)r->pair, GPM_RING_SLOT_SIZE);
    if (r != NULL) {
        memset(r, 0, sizeof(*r));
        r->pair = p;
        if (rd32(r, GPM_RING_OFF_MAGIC) != GPM_RING_MAGIC ||
            rd32(r, GPM_RING_OFF_VERSION) != GPM_RING_VERSION ||
            rd32(r, GPM_RING_OFF_CHANNEL) != chan ||
            rd32(r, GPM_RING_OFF_DATASIZE) != GPM_RING_DATA_SIZE ||
            rd32(r, GPM_RING_OFF_MAXFRAG) != GPM_RING_MAX_FRAG) {
            r = NULL; /* not a ring we understand: stay on hypercalls */
        } else {
            r->chan = chan;
        }
    }
    spin_unlock(&table_lock);
    if (r == NULL) {
        munmap(p, GPM_RING_SLOT_SIZE);
        return -EPROTO;
    }
    return 0;
}

struct gpm__ring *gpm__ring_find(gpm_chan_t chan)
{
    if (chan == 0)
        return NULL;
    for (unsigned i = 0; i < RING_TABLE; i++)
        if (__atomic_load_n(&table[i].chan, __ATOMIC_ACQUIRE) == chan)
            return &table[i];
    return NULL;
}

/* The host's verdict on the ring: 0, or why it no longer serves it. */
static int ring_status(const struct gpm__ring *r)
{
    int32_t st = (int32_t)rd32(r, GPM_RING_OFF_STATUS);

    /* A pair handed to another channel is no longer ours. */
    if (st == 0 && rd32(r, GPM_RING_OFF_CHANNEL) != r->chan)
        return -EBADF;
    return st < 0 && st >= -4095 ? st : (st == 0 ? 0 : -EPROTO);
}

/* True once the host stopped serving the ring for good. */
static int ring_dead(const struct gpm__ring *r)
{
    int st = ring_status(r);

    return st != 0 && st != -EPIPE;
}

/*
 * Polls until @done(@r) holds: RING_SPIN checks first, then sleeps from
 * RING_SLEEP_MIN_NS doubling to RING_SLEEP_MAX_NS, for about @max_ns of
 * sleep at most. Returns whether @done held.
 */
static int poll_until(const struct gpm__ring *r,
                      int (*done)(const struct gpm__ring *), long max_ns)
{
    long slept = 0, step = RING_SLEEP_MIN_NS;

    for (unsigned spins = 0; spins < RING_SPIN; spins++)
        if (done(r))
            return 1;
    while (slept < max_ns) {
        if (done(r))
            return 1;
        nap(step);
        slept += step;
        step = step * 2 > RING_SLEEP_MAX_NS ? RING_SLEEP_MAX_NS : step * 2;
    }
    return done(r);
}

/* The host took every record we wrote (or no longer serves the ring). */
static int drained(const struct gpm__ring *r)
{
    return rd32(r, GPM_RING_OFF_G2H_TAIL) == r->g2h_head || ring_dead(r);
}

void gpm__ring_detach(gpm_chan_t chan)
{
    struct gpm__ring *r;

    spin_lock(&table_lock);
    r = gpm__ring_find(chan);
    if (r != NULL) {
        spin_lock(&r->wlock);
        /* STOP frees the pair: let the host take what is in it first. */
        poll_until(r, drained, 2000000000L);
        /* What we read of a host record, so nobody gets it again. */
        wr32(r, GPM_RING_OFF_H2G_PART, r->rd_off);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        spin_lock(&r->rlock);
        munmap((void *)r->pair, GPM_RING_SLOT_SIZE);
        __atomic_store_n(&r->chan, 0, __ATOMIC_RELEASE);
        r->pair = NULL;
        spin_unlock(&r->rlock);
        spin_unlock(&r->wlock);
    }
    spin_unlock(&table_lock);
}

/* Waits for @need bytes of room for a record; 0 or a negative error. */
static int wait_room(struct gpm__ring *r, uint32_t need, long long *slept_ns)
{
    long step = RING_SLEEP_MIN_NS;
    unsigned spins = 0;

    for (;;) {
        uint32_t tail = rd32(r, GPM_RING_OFF_G2H_TAIL);
        uint32_t used = r->g2h_head - tail;
        int st;

        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (used > GPM_RING_DATA_SIZE)
            return -EPROTO;
        if (GPM_RING_DATA_SIZE - used >= need)
            return 0;
        st = ring_status(r);
        if (st != 0)
            return st;
        if (++spins < RING_SPIN)
            continue;
        if (*slept_ns >= RING_WRITE_WAIT_NS)
            return -EBUSY;
        nap(step);
        *slept_ns += step;
        step = step * 2 > RING_SLEEP_MAX_NS ? RING_SLEEP_MAX_NS : step * 2;
    }
}

/* One message of at most GPM_HC_MAX_TRANSFER bytes, as records. */
static int write_message(struct gpm__ring *r, const unsigned char *p,
                         size_t len, long long *slept_ns)
{
    volatile unsigned char *area = r->pair + GPM_RING_OFF_G2H_DATA;
    size_t off = 0;
    int err = ring_status(r);

    if (err != 0)
        return err;
    do {
        size_t frag = len - off;
        uint32_t w0;

        if (frag > GPM_RING_MAX_FRAG)
            frag = GPM_RING_MAX_FRAG;
        err = wait_room(r, GPM_RING_REC_SPACE((uint32_t)frag), slept_ns);
        if (err != 0)
            return err;
        w0 = (uint32_t)frag | (off + frag < len ? GPM_RING_MORE : 0);
        put_bytes(area, r->g2h_head + GPM_RING_REC_HDR, p + off, frag);
        *(volatile uint32_t *)(area + r->g2h_head % GPM_RING_DATA_SIZE) =
            le32(w0);
        *(volatile uint32_t *)(area + (r->g2h_head + 4) % GPM_RING_DATA_SIZE) =
            0;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        r->g2h_head += GPM_RING_REC_SPACE((uint32_t)frag);
        wr32(r, GPM_RING_OFF_G2H_HEAD, r->g2h_head);
        off += frag;
    } while (off < len);
    return 0;
}

ssize_t gpm__ring_write(struct gpm__ring *r, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    long long slept_ns = 0;
    size_t done = 0;
    int err = 0;

    spin_lock(&r->wlock);
    while (done < len && err == 0) {
        size_t chunk = len - done;

        if (chunk > GPM_HC_MAX_TRANSFER)
            chunk = GPM_HC_MAX_TRANSFER;
        err = write_message(r, p + done, chunk, &slept_ns);
        if (err == 0)
            done += chunk;
    }
    spin_unlock(&r->wlock);
    return err != 0 ? err : (ssize_t)len;
}

/*
 * After READY: the host moved into the ring what its queue held, or says
 * nothing is queued (or no longer serves the ring).
 */
static int queued_arrived(const struct gpm__ring *r)
{
    return rd32(r, GPM_RING_OFF_H2G_HEAD) != r->h2g_tail ||
           rd32(r, GPM_RING_OFF_QUEUED) == 0 || ring_dead(r);
}

ssize_t gpm__ring_read(struct gpm__ring *r, void *buf, size_t len)
{
    const volatile unsigned char *area = r->pair + GPM_RING_OFF_H2G_DATA;
    unsigned char *dst = buf;
    size_t got = 0;

    if (len == 0)
        return 0;
    spin_lock(&r->rlock);
    if (!r->reading) {
        /*
         * From now on the host sends this channel's bytes through the
         * ring. What it had queued before arrives within a pass or two:
         * wait for it, so a program's first read still finds it.
         */
        wr32(r, GPM_RING_OFF_READY, GPM_RING_MAGIC);
        r->reading = 1;
        poll_until(r, queued_arrived, 1000000000L);
    }
    for (;;) {
        uint32_t head = rd32(r, GPM_RING_OFF_H2G_HEAD), w0, flen, more, n;
        uint32_t avail = head - r->h2g_tail;

        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (avail > GPM_RING_DATA_SIZE) {
            spin_unlock(&r->rlock);
            return -EPROTO;
        }
        if (avail == 0)
            break;
        w0 = le32(*(const volatile uint32_t *)(area + r->h2g_tail %
                                                          GPM_RING_DATA_SIZE));
        flen = w0 & GPM_RING_LEN_MASK;
        more = w0 & GPM_RING_MORE;
        if (flen > GPM_RING_MAX_FRAG || GPM_RING_REC_SPACE(flen) > avail ||
            r->rd_off > flen) {
            spin_unlock(&r->rlock);
            return -EPROTO;
        }
        n = flen - r->rd_off;
        if (n > len - got)
            n = (uint32_t)(len - got);
        get_bytes(area, r->h2g_tail + GPM_RING_REC_HDR + r->rd_off, dst + got,
                  n);
        got += n;
        r->rd_off += n;
        if (r->rd_off < flen)
            break; /* the buffer is full */
        /* The record is read: give its room back. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        r->h2g_tail += GPM_RING_REC_SPACE(flen);
        r->rd_off = 0;
        wr32(r, GPM_RING_OFF_H2G_TAIL, r->h2g_tail);
        /* A read never spans two messages; it may span one's records. */
        if (!more || got == len)
            break;
    }
    spin_unlock(&r->rlock);
    /* No receiver matters to writers only. */
    if (got == 0 && ring_dead(r))
        return ring_status(r);
    return (ssize_t)got;
}

void gpm__ring_wait(struct gpm__ring *r, struct gpm_backoff *b)
{
    long slept = 0;

    for (unsigned i = 0; i < RING_SPIN; i++) {
        if (rd32(r, GPM_RING_OFF_H2G_HEAD) != r->h2g_tail || ring_dead(r))
            return;
    }
    /* Then sleep, growing as gpm_backoff does, up to about a second. */
    while (slept < 1000000000L) {
        long step = b->sleep_ns ? (long)b->sleep_ns : RING_SLEEP_MIN_NS;

        nap(step);
        slept += step;
        b->sleep_ns = (unsigned long)step * 2 > GPM_BACKOFF_MAX_NS
                          ? GPM_BACKOFF_MAX_NS
                          : (unsigned long)step * 2;
        if (rd32(r, GPM_RING_OFF_H2G_HEAD) != r->h2g_tail || ring_dead(r))
            return;
    }
}
