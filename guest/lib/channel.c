/*
 * channel.c - channels on top of the raw hypercall.
 *
 * Architecture independent: only gpm_hc() comes from arch/<arch>.c.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "gpm_guest.h"
#include "ring.h"

/* Page size for touching; 4 KiB is the smallest page of every target. */
#define GPM__TOUCH_STEP 4096u

/* Keep the write-busy retries to about 30 s with the capped backoff. */
#define GPM__WRITE_BUSY_TRIES 1600u
/* START answers EBUSY until the host knows the channel's owner: 30 s. */
#define GPM__START_BUSY_TRIES 1600u

/*
 * A hypercall that passes the host a buffer to read: touched first; an
 * EFAULT for it is retried a few times, touching again, because a host
 * that translates guest addresses only through the emulated TLB (PANDA on
 * MIPS, whose TLB the guest kernel refills in software) can miss a page
 * that is resident. The library never passes an address it did not just
 * touch, so a lasting EFAULT is still returned.
 */
static uint64_t hc_with_buffer(uint64_t op, uint64_t chan, const void *buf,
                               size_t len)
{
    uint64_t ret = 0;

    for (unsigned tries = 0; tries <= GPM_GUEST_EAGAIN_RETRIES; tries++) {
        gpm_touch_read(buf, len);
        ret = gpm_hc(op, chan, (uintptr_t)buf, len);
        if (gpm_hc_err(ret) != GPM_HC_EFAULT)
            break;
    }
    return ret;
}

/* START on @chan, retried while the host has not named its owner yet. */
static long start_channel(uint64_t chan)
{
    struct gpm_backoff bo = {0, 0};
    unsigned busy = 0;
    long err;

    for (;;) {
        err = gpm_hc_err(gpm_hc(GPM_HC_OP_START, chan, 0, 0));
        if (err != GPM_HC_EBUSY || ++busy > GPM__START_BUSY_TRIES)
            return err;
        gpm_backoff_wait(&bo);
    }
}

int64_t gpm_hc_signed(uint64_t ret)
{
    if (sizeof(long) == 4)
        return (int64_t)(int32_t)(uint32_t)ret;
    return (int64_t)ret;
}

long gpm_hc_err(uint64_t ret)
{
    long v;

    if (sizeof(long) == 4)
        v = (long)(int32_t)(uint32_t)ret;
    else
        v = (long)(int64_t)ret;
    if (v >= -4095 && v <= -1)
        return v;
    return 0;
}

void gpm_touch_write(void *buf, size_t len)
{
    volatile unsigned char *p = buf;
    size_t off;

    if (len == 0)
        return;
    /* Align the offsets to page starts so each page is touched once. */
    off = 0;
    while (off < len) {
        p[off] = p[off];
        off += GPM__TOUCH_STEP - ((uintptr_t)(p + off) % GPM__TOUCH_STEP);
    }
    p[len - 1] = p[len - 1];
}

void gpm_touch_read(const void *buf, size_t len)
{
    const volatile unsigned char *p = buf;
    size_t off;

    if (len == 0)
        return;
    off = 0;
    while (off < len) {
        (void)p[off];
        off += GPM__TOUCH_STEP - ((uintptr_t)(p + off) % GPM__TOUCH_STEP);
    }
    (void)p[len - 1];
}

int gpm_channel_open(const char *name, gpm_chan_t *out)
{
    size_t len;
    uint64_t ret;
    long err;

    if (!name || !out)
        return -EINVAL;
    len = strlen(name);
    if (len == 0)
        return -EINVAL;
    if (len > GPM_HC_MAX_NAME)
        return -ENAMETOOLONG;
    ret = hc_with_buffer(GPM_HC_OP_GET_CHANNEL, 0, name, len);
    /* GET_CHANNEL answers -1 for an unknown name (original ABI). */
    if (gpm_hc_err(ret) == GPM_HC_NOT_FOUND)
        return -ENOENT;
    err = gpm_hc_err(ret);
    if (err)
        return (int)err;
    if ((uint32_t)ret == 0 || ret > UINT32_MAX)
        return -EPROTO;
    err = start_channel(ret);
    if (err)
        return (int)err;
    /* A ring if the host offers one; hypercalls otherwise. */
    gpm__ring_attach((gpm_chan_t)ret);
    *out = (gpm_chan_t)ret;
    return 0;
}

int gpm_channel_manager(gpm_chan_t *out)
{
    uint64_t ret;
    long err;

    if (!out)
        return -EINVAL;
    ret = gpm_hc(GPM_HC_OP_GET_MANAGER, 0, 0, 0);
    err = gpm_hc_err(ret);
    if (err)
        return (int)err;
    if ((uint32_t)ret == 0 || ret > UINT32_MAX)
        return -EPROTO;
    err = gpm_hc_err(gpm_hc(GPM_HC_OP_START, ret, 0, 0));
    if (err)
        return (int)err;
    gpm__ring_attach((gpm_chan_t)ret);
    *out = (gpm_chan_t)ret;
    return 0;
}

int gpm_channel_stop(gpm_chan_t chan)
{
    gpm__ring_detach(chan);
    return (int)gpm_hc_err(gpm_hc(GPM_HC_OP_STOP, chan, 0, 0));
}

ssize_t gpm_write(gpm_chan_t chan, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    struct gpm_backoff bo = {0, 0};
    unsigned busy = 0, again = 0;
    size_t done = 0;
    struct gpm__ring *r;

    if (len > (size_t)SSIZE_MAX)
        return -EINVAL;
    r = gpm__ring_find(chan);
    if (r != NULL)
        return gpm__ring_write(r, buf, len);
    while (done < len) {
        size_t chunk = len - done;
        uint64_t ret;
        long err;

        if (chunk > GPM_HC_MAX_TRANSFER)
            chunk = GPM_HC_MAX_TRANSFER;
        gpm_touch_read(p + done, chunk);
        ret = gpm_hc(GPM_HC_OP_WRITE, chan, (uintptr_t)(p + done), chunk);
        err = gpm_hc_err(ret);
        /* EFAULT for a buffer just touched: see hc_with_buffer(). */
        if (err == GPM_HC_EAGAIN || err == GPM_HC_EFAULT) {
            /* A page went away between the touch and the call. */
            if (++again > GPM_GUEST_EAGAIN_RETRIES)
                return (int)err;
            continue;
        }
        if (err == GPM_HC_EBUSY || (!err && ret == 0)) {
            if (++busy > GPM__WRITE_BUSY_TRIES)
                return -EBUSY;
            gpm_backoff_wait(&bo);
            continue;
        }
        if (err)
            return err;
        if (ret > chunk)
            return -EPROTO;
        done += (size_t)ret;
        again = 0;
        busy = 0;
        gpm_backoff_reset(&bo);
    }
    return (ssize_t)len;
}

ssize_t gpm_write_str(gpm_chan_t chan, const char *s)
{
    if (!s)
        return -EINVAL;
    return gpm_write(chan, s, strlen(s));
}

/* One READ, retried after touching again on GPM_HC_EAGAIN. */
static ssize_t read_hypercall(gpm_chan_t chan, void *buf, size_t len)
{
    unsigned tries;

    for (tries = 0; tries <= GPM_GUEST_EAGAIN_RETRIES; tries++) {
        uint64_t ret;
        long err;

        /*
         * The host may only write to present, writable pages: a page
         * the guest has only read maps the kernel's shared zero page, and
         * writing there would corrupt every process (DESIGN.md section 4).
         */
        gpm_touch_write(buf, len);
        ret = gpm_hc(GPM_HC_OP_READ, chan, (uintptr_t)buf, len);
        err = gpm_hc_err(ret);
        if (err == GPM_HC_EAGAIN ||
            (err == GPM_HC_EFAULT && tries < GPM_GUEST_EAGAIN_RETRIES))
            continue;
        if (err)
            return err;
        if (ret > len)
            return -EPROTO;
        return (ssize_t)ret;
    }
    return -EAGAIN;
}

ssize_t gpm_read(gpm_chan_t chan, void *buf, size_t len)
{
    struct gpm__ring *r;

    if (len == 0)
        return 0;
    if (len > GPM_HC_MAX_TRANSFER)
        len = GPM_HC_MAX_TRANSFER;
    r = gpm__ring_find(chan);
    if (r != NULL)
        return gpm__ring_read(r, buf, len);
    return read_hypercall(chan, buf, len);
}

ssize_t gpm_read_blocking(gpm_chan_t chan, void *buf, size_t len)
{
    struct gpm_backoff bo = {0, 0};

    if (len == 0)
        return -EINVAL;
    for (;;) {
        struct gpm__ring *r = gpm__ring_find(chan);
        ssize_t n;

        if (r != NULL) {
            n = gpm__ring_read(r, buf, len);
            if (n != 0)
                return n;
            gpm__ring_wait(r, &bo);
            continue;
        }
        /* Read the doorbell first: data queued after it rings it again. */
        uint64_t since = gpm_doorbell_value(chan);

        n = gpm_read(chan, buf, len);

        /* EBUSY: the host cannot serve this process yet; wait as empty. */
        if (n != 0 && n != -EBUSY)
            return n;
        gpm_wait_change(chan, since, &bo);
    }
}

int gpm_read_exact(gpm_chan_t chan, void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = gpm_read_blocking(chan, p + done, len - done);

        if (n < 0)
            return (int)n;
        done += (size_t)n;
    }
    return 0;
}

int gpm_report_error(gpm_chan_t chan, const char *msg)
{
    size_t len;

    if (!msg)
        return -EINVAL;
    len = strlen(msg);
    if (len > GPM_HC_MAX_ERROR_MSG)
        len = GPM_HC_MAX_ERROR_MSG;
    return (int)gpm_hc_err(hc_with_buffer(GPM_HC_OP_ERROR, chan, msg, len));
}
