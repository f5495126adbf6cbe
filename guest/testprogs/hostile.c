/*
 * hostile.c - a guest program that attacks the host with bad hypercalls,
 * then floods its channel.
 *
 *   hostile [--flood-only]
 *
 * Protocol on channel "hostile" (the host creates it and, unless
 * --flood-only, queues two probe messages before the program starts):
 *
 *  1. Raw hypercalls (gpm_hc) with bad ops, channel ids, pointers, lengths
 *     and names; each result is printed to stdout as "name=value" (the
 *     value signed; see gpm/abi.h for the error codes). The probes must
 *     survive every failed READ; then they are read with absurd lengths
 *     and printed as read_probe1=/read_probe2=.
 *     Guest -> host messages of this phase, in order: 1 MiB (WRITE with
 *     length 2^32), 1 MiB (length 2^63), both with byte j = j * 7 + 3;
 *     4096 zero bytes (WRITE from a read-only zero page); "ATTACKS-DONE".
 *     One ERROR hypercall with length 2^63 sends 4096 'E's as an error.
 *  2. Reads 8 bytes: little-endian u32 N and u32 SIZE (8 .. 1 MiB).
 *  3. Writes N messages of SIZE bytes as fast as it can (gpm_write): bytes
 *     0-7 are the sequence number (little-endian u64, from 0), byte j >= 8
 *     is (seq + j) & 0xff. Prints flood_done=N, stops the channel, exits 0.
 *
 * KPTR is a kernel address of the guest's arch and NONCANON the first
 * address above its user address space (see below); on 32-bit arches
 * every argument is truncated to 32 bits by the hypercall registers, so
 * the 2^32 and 2^63 cases there test truncation, not the host's bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR(
    "hostile", GPM_GUEST_VERSION,
    "Issues bad hypercalls, then floods its channel (a test)");

#define PAGE 4096u
#if defined(__x86_64__)
#define KPTR     0xffffffff81000000ull /* kernel text, nokaslr */
#define NONCANON 0x0000800000000000ull /* first non-canonical address */
#elif defined(__aarch64__)
/* Kernel image (48-bit VA, nokaslr); above TTBR0's 48-bit range. */
#define KPTR     0xffff800008000000ull
#define NONCANON 0x0001000000000000ull
#elif defined(__arm__)
/* PAGE_OFFSET of the 3G/1G split; 2^32 truncates to a NULL pointer. */
#define KPTR     0xc0008000ull
#define NONCANON 0x100000000ull
#elif defined(__i386__)
/* Kernel text of the 3G/1G split (CONFIG_PHYSICAL_START 16 MiB). */
#define KPTR     0xc1000000ull
#define NONCANON 0x100000000ull
#elif defined(__mips__) && _MIPS_SIM == _ABIO32
/* kseg0 kernel text (malta load address, nokaslr); 2^32 truncates. */
#define KPTR     0x80100000ull
#define NONCANON 0x100000000ull
#elif defined(__mips__) && _MIPS_SIM == _ABI64
/* ckseg0 kernel text; xsseg (supervisor space), never a user address. */
#define KPTR     0xffffffff80100000ull
#define NONCANON 0x4000000000000000ull
#else
#error "hostile.c: no kernel address for this architecture"
#endif
/*
 * Values past what a 32-bit register holds: the host must not truncate
 * them. A 32-bit guest cannot pass them at all, so there the same probes
 * use the top bit of its registers (2^31), which must not be dropped
 * either; the expected results are the same.
 */
#define WIDE_GUEST (sizeof(uintptr_t) == 8)
#define E2_32      (WIDE_GUEST ? 1ull << 32 : 1ull << 31)
#define E2_63      (WIDE_GUEST ? 1ull << 63 : 1ull << 31)
#define BIG        (2u << 20)
#define MAX_FLOOD  (1u << 20)

static const char rodata_page[PAGE] __attribute__((aligned(PAGE))) = "ro";

static void report(const char *name, uint64_t r)
{
    printf("%s=%lld\n", name, (long long)gpm_hc_signed(r));
    fflush(stdout);
}

static uint64_t hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2)
{
    return gpm_hc(op, chan, a1, a2);
}

static void *map_pages(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        printf("mmap_failed=1\n");
        exit(3);
    }
    return p;
}

static void attack_ops(gpm_chan_t chan)
{
    report("op_0", hc(0, chan, 0, 0));
    report("op_8", hc(8, chan, 0, 0));
    report("op_10", hc(10, chan, 0, 0));
    report("op_255", hc(255, chan, 0, 0));
    /* Low 32 bits say READ: the op must not be truncated. */
    report("op_2e32_plus_3", hc(E2_32 + GPM_HC_OP_READ, chan, 0, 64));
    report("op_2e63", hc(E2_63, chan, 0, 0));
}

static void attack_ids(gpm_chan_t chan, uint64_t buf)
{
    report("start_chan_0", hc(GPM_HC_OP_START, 0, 0, 0));
    report("start_chan_unknown", hc(GPM_HC_OP_START, 0x7fffffffu, 0, 0));
    /* Low 32 bits name the real channel: ids must not be truncated. */
    report("start_chan_2e32_plus_id", hc(GPM_HC_OP_START, E2_32 + chan, 0, 0));
    report("stop_chan_2e63", hc(GPM_HC_OP_STOP, E2_63, 0, 0));
    report("read_chan_unknown", hc(GPM_HC_OP_READ, 0x7fffffffu, buf, 64));
    report("read_chan_2e32_plus_id", hc(GPM_HC_OP_READ, E2_32 + chan, buf, 64));
    report("write_chan_unknown", hc(GPM_HC_OP_WRITE, 0x7fffffffu, buf, 16));
    report("write_chan_2e32_plus_id",
           hc(GPM_HC_OP_WRITE, E2_32 + chan, buf, 16));
    report("error_chan_unknown", hc(GPM_HC_OP_ERROR, 0x7fffffffu, buf, 4));
}

/* Every READ here fails, so the queued probes must stay queued. */
static void attack_reads(gpm_chan_t chan)
{
    volatile unsigned char *zero = map_pages(PAGE);
    unsigned char *untouched = map_pages(PAGE);

    (void)zero[0]; /* read-only touch: maps the kernel's zero page */
    gpm_touch_read(rodata_page, sizeof(rodata_page));

    report("read_null", hc(GPM_HC_OP_READ, chan, 0, 64));
    report("read_null_len_2e32", hc(GPM_HC_OP_READ, chan, 0, E2_32));
    report("read_kernel", hc(GPM_HC_OP_READ, chan, KPTR, 64));
    report("read_noncanonical", hc(GPM_HC_OP_READ, chan, NONCANON, 64));
    report("read_wrap", hc(GPM_HC_OP_READ, chan, 0xfffffffffffffff0ull, 64));
    report("read_zero_page", hc(GPM_HC_OP_READ, chan, (uintptr_t)zero, PAGE));
    printf("zero_page_after=%s\n", zero[0] == 0 ? "zero" : "dirty");
    report("read_rodata",
           hc(GPM_HC_OP_READ, chan, (uintptr_t)rodata_page, PAGE));
    report("read_untouched",
           hc(GPM_HC_OP_READ, chan, (uintptr_t)untouched, PAGE));
    /* Straddles a writable page and a never-touched one. */
    {
        unsigned char *two = map_pages(2 * PAGE);

        two[0] = 1;
        report("read_straddle",
               hc(GPM_HC_OP_READ, chan, (uintptr_t)two + PAGE - 8, 64));
        printf("straddle_after=%s\n", two[PAGE - 8] == 0 ? "zero" : "dirty");
    }
}

static void print_text(const char *name, uint64_t r, const unsigned char *buf)
{
    int64_t n = gpm_hc_signed(r);

    report(name, r);
    if (n > 0 && n <= (int64_t)PAGE)
        printf("%s_data=%.*s\n", name, (int)n, (const char *)buf);
    fflush(stdout);
}

static void good_reads(gpm_chan_t chan)
{
    unsigned char *buf = map_pages(PAGE);

    gpm_touch_write(buf, PAGE);
    /* The length is only a bound: 2^63 and 2^32 copy the probe. */
    print_text("read_probe1", hc(GPM_HC_OP_READ, chan, (uintptr_t)buf, E2_63),
               buf);
    print_text("read_probe2", hc(GPM_HC_OP_READ, chan, (uintptr_t)buf, E2_32),
               buf);
    report("read_empty", hc(GPM_HC_OP_READ, chan, (uintptr_t)buf, PAGE));
    report("read_empty_null", hc(GPM_HC_OP_READ, chan, 0, 64));
}

static void attack_writes(gpm_chan_t chan)
{
    unsigned char *big = map_pages(BIG);
    volatile unsigned char *zero = map_pages(PAGE);
    unsigned char *untouched = map_pages(PAGE);

    for (size_t j = 0; j < BIG; j++)
        big[j] = (unsigned char)(j * 7 + 3);
    (void)zero[0];

    report("write_null", hc(GPM_HC_OP_WRITE, chan, 0, 16));
    report("write_kernel", hc(GPM_HC_OP_WRITE, chan, KPTR, 16));
    report("write_noncanonical", hc(GPM_HC_OP_WRITE, chan, NONCANON, 16));
    report("write_untouched",
           hc(GPM_HC_OP_WRITE, chan, (uintptr_t)untouched, 16));
    report("write_wrap",
           hc(GPM_HC_OP_WRITE, chan, 0xfffffffffffff000ull, 0x2000));
    report("write_len_0", hc(GPM_HC_OP_WRITE, chan, 0, 0));
    /* Lengths are capped at GPM_HC_MAX_TRANSFER, never an error. */
    report("write_len_2e32", hc(GPM_HC_OP_WRITE, chan, (uintptr_t)big, E2_32));
    report("write_len_2e63", hc(GPM_HC_OP_WRITE, chan, (uintptr_t)big, E2_63));
    /* Reading the zero page is harmless: the host gets zeros. */
    report("write_zero_page", hc(GPM_HC_OP_WRITE, chan, (uintptr_t)zero, PAGE));
    munmap(big, BIG);
}

static void attack_errors(gpm_chan_t chan)
{
    static char text[2 * PAGE];

    memset(text, 'E', sizeof(text));
    report("error_null", hc(GPM_HC_OP_ERROR, chan, 0, 10));
    report("error_kernel", hc(GPM_HC_OP_ERROR, chan, KPTR, 10));
    report("error_len_2e63", hc(GPM_HC_OP_ERROR, chan, (uintptr_t)text, E2_63));
}

static void attack_names(gpm_chan_t chan)
{
    static char name[2 * PAGE];
    uint64_t r;

    memset(name, 'a', sizeof(name));
    report("getchan_len_0", hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)name, 0));
    report("getchan_len_256",
           hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)name, 256));
    report("getchan_len_2e32",
           hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)name, E2_32));
    report("getchan_len_2e63",
           hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)name, E2_63));
    report("getchan_len_255_unknown",
           hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)name, 255));
    report("getchan_null", hc(GPM_HC_OP_GET_CHANNEL, 0, 0, 5));
    report("getchan_kernel", hc(GPM_HC_OP_GET_CHANNEL, 0, KPTR, 5));
    report("getchan_wrap",
           hc(GPM_HC_OP_GET_CHANNEL, 0, 0xfffffffffffffffeull, 10));
    report("getchan_empty_string",
           hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t) "", 1));
    report("getchan_unknown",
           hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t) "no-such-channel", 15));
    /* The terminating NUL may be counted. */
    r = hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t) "hostile", 8);
    printf("getchan_self_matches=%d\n", r == chan);
}

static void attack_manager(void)
{
    uint64_t r, first = 0;
    unsigned count = 0;

    for (;;) {
        r = hc(GPM_HC_OP_GET_MANAGER, 0, 0, 0);
        if (gpm_hc_err(r) != 0 || r == 0 || count >= 100000)
            break;
        if (first == 0)
            first = r;
        count++;
    }
    printf("getmgr_count=%u\n", count);
    report("getmgr_refused", r);
    /* Nobody receives on an anonymous channel the host did not attach. */
    report("write_no_receiver", hc(GPM_HC_OP_WRITE, first, (uintptr_t) "x", 1));
}

static int flood(gpm_chan_t chan)
{
    unsigned char hdr[8], *msg;
    uint32_t n, size;

    if (gpm_read_exact(chan, hdr, sizeof(hdr)) < 0) {
        printf("flood_header=failed\n");
        return 1;
    }
    n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
        (uint32_t)hdr[3] << 24;
    size = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
           (uint32_t)hdr[7] << 24;
    if (size < 8 || size > MAX_FLOOD) {
        printf("flood_size_bad=%u\n", size);
        return 1;
    }
    msg = map_pages(size);
    printf("flood_start=%u\n", n);
    fflush(stdout);
    for (uint64_t seq = 0; seq < n; seq++) {
        ssize_t w;

        for (unsigned b = 0; b < 8; b++)
            msg[b] = (unsigned char)(seq >> (8 * b));
        for (uint32_t j = 8; j < size; j++)
            msg[j] = (unsigned char)(seq + j);
        w = gpm_write(chan, msg, size);
        if (w != (ssize_t)size) {
            printf("flood_error=%llu:%zd\n", (unsigned long long)seq, w);
            return 1;
        }
    }
    printf("flood_done=%u\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    int flood_only = argc > 1 && strcmp(argv[1], "--flood-only") == 0;
    unsigned char *buf;
    gpm_chan_t chan;
    int rc;

    rc = gpm_channel_open("hostile", &chan);
    if (rc < 0) {
        printf("open=%d\n", rc);
        return 2;
    }
    printf("chan=%u\n", (unsigned)chan);
    if (!flood_only) {
        buf = map_pages(PAGE);
        gpm_touch_write(buf, PAGE);
        attack_ops(chan);
        attack_ids(chan, (uintptr_t)buf);
        attack_reads(chan);
        good_reads(chan);
        attack_writes(chan);
        attack_errors(chan);
        attack_names(chan);
        attack_manager();
        printf("attacks_done=1\n");
        fflush(stdout);
        if (gpm_write_str(chan, "ATTACKS-DONE") < 0)
            return 1;
    }
    rc = flood(chan);
    gpm_channel_stop(chan);
    fflush(stdout);
    return rc;
}
