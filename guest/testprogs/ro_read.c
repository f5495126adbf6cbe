/*
 * ro_read.c - the zero-page hazard, seen from the guest.
 *
 * A page a process has only read maps the kernel's shared zero page, so a
 * host that filled it would corrupt every process's fresh memory (see
 * DESIGN.md section 4). This program asks the host for exactly that.
 *
 *   ro_read             on channel "ro_read", which must have a message
 *                       queued: a raw READ hypercall into a page it has
 *                       only read, then into a page it never touched, then
 *                       a proper read (gpm_read) of the queued message,
 *                       which it echoes back on the channel. Prints
 *                         ro_read=<raw result, signed>
 *                         ro_page_after=zero|dirty
 *                         untouched_read=<raw result, signed>
 *                         queued_len=<bytes gpm_read returned>
 *                         queued=<the message as text>
 *                         echo=<gpm_write result>
 *   ro_read --check-zero
 *                       maps fresh anonymous pages, read-only touched (so
 *                       they are the zero page) and written (fresh private
 *                       pages), checks every byte is 0 and prints
 *                       "ZERO OK" or "ZERO BAD page P offset O value V".
 *
 * The raw hypercalls use gpm_hc(), not gpm_read(), which would write-touch
 * the buffer first and so hide the hazard. Exit status: 0, or 2 if the
 * channel cannot be opened, or 1 for ZERO BAD.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("ro_read", GPM_GUEST_VERSION,
                      "Asks the host to fill the zero page (a test)");

#define PAGE        4096u
#define CHECK_PAGES 64u

static void *map_pages(size_t n)
{
    void *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

/* Returns the offset of the first non-zero byte, or -1. */
static long first_nonzero(const volatile unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            return (long)i;
    return -1;
}

static int check_zero(void)
{
    volatile unsigned char *ro = map_pages(CHECK_PAGES);
    volatile unsigned char *rw = map_pages(CHECK_PAGES);
    long bad;

    if (ro == NULL || rw == NULL) {
        printf("ZERO BAD mmap failed\n");
        return 1;
    }
    /* Read-only touched: these all map the shared zero page. */
    bad = first_nonzero(ro, CHECK_PAGES * PAGE);
    if (bad < 0) {
        /* Write-touched: fresh private pages, copied from the zero page. */
        for (size_t i = 0; i < CHECK_PAGES; i++)
            rw[i * PAGE + 1] = 0;
        bad = first_nonzero(rw, CHECK_PAGES * PAGE);
        ro = rw;
    }
    if (bad >= 0) {
        printf("ZERO BAD page %ld offset %ld value %u\n", bad / (long)PAGE,
               bad % (long)PAGE, (unsigned)ro[bad]);
        return 1;
    }
    printf("ZERO OK\n");
    return 0;
}

int main(int argc, char **argv)
{
    static unsigned char buf[PAGE];
    volatile unsigned char *ro, *untouched;
    gpm_chan_t chan;
    uint64_t r;
    ssize_t n;
    int rc;

    if (argc > 1 && strcmp(argv[1], "--check-zero") == 0)
        return check_zero();

    rc = gpm_channel_open("ro_read", &chan);
    if (rc < 0) {
        printf("open=%d\n", rc);
        return 2;
    }
    ro = map_pages(1);
    untouched = map_pages(1);
    if (ro == NULL || untouched == NULL) {
        printf("mmap failed\n");
        return 2;
    }
    /* Only read: the page table entry now points at the zero page. */
    if (first_nonzero(ro, PAGE) >= 0)
        printf("fresh page not zero\n");

    r = gpm_hc(GPM_HC_OP_READ, chan, (uintptr_t)ro, PAGE);
    printf("ro_read=%lld\n", (long long)gpm_hc_signed(r));
    printf("ro_page_after=%s\n",
           first_nonzero(ro, PAGE) < 0 ? "zero" : "dirty");

    r = gpm_hc(GPM_HC_OP_READ, chan, (uintptr_t)untouched, PAGE);
    printf("untouched_read=%lld\n", (long long)gpm_hc_signed(r));

    /* The library write-touches the buffer: this read must succeed. */
    n = gpm_read(chan, buf, sizeof(buf));
    printf("queued_len=%zd\n", n);
    if (n > 0) {
        printf("queued=%.*s\n", (int)n, (const char *)buf);
        printf("echo=%zd\n", gpm_write(chan, buf, (size_t)n));
    }
    gpm_channel_stop(chan);
    return 0;
}
