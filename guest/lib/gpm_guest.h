/*
 * gpm_guest.h - the pandagpm guest channel library.
 *
 * Linked statically into every guest binary (the daemon and each plugin).
 * It wraps the hypercall ABI of gpm/abi.h: open a channel by name, write to
 * it, read from it without blocking or with an adaptive backoff, stop it,
 * and report errors to the host.
 *
 * Errors: every function that can fail returns a negative errno-style value
 * (-ENOENT, -EFAULT, ...; the GPM_HC_E* values of gpm/abi.h are the same
 * numbers). Nothing here aborts or prints.
 *
 * Threads: the functions keep no global state except a struct
 * gpm_backoff the caller owns, so they may be called from several threads
 * on different channels. Two threads reading one channel get the bytes in
 * an unspecified interleaving.
 *
 * Binaries that use this library must be linked static and non-PIE with the
 * hypercall section at its fixed address, GPM_HC_ADDR_<ARCH> of gpm/abi.h
 * (guest/toolchain.mk passes -Wl,--section-start=.gpmhc=ADDR).
 */
#ifndef GPM_GUEST_H
#define GPM_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpm/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the guest library, daemon and bundled plugins. */
#define GPM_GUEST_VERSION "0.1.0"

/* Channel ids are 32-bit on the host; 0 is never a valid id. */
typedef uint32_t gpm_chan_t;

/* How many times a READ/WRITE is retried after GPM_HC_EAGAIN. */
#define GPM_GUEST_EAGAIN_RETRIES 8

/**
 * gpm_hc() - issue one raw hypercall.
 * @op:   an enum gpm_hc_op value.
 * @chan: channel id (ignored by some ops).
 * @a1:   first argument (usually a guest pointer).
 * @a2:   second argument (usually a length).
 *
 * Loads the magic and the four values into the hypercall registers of the
 * architecture and traps to the host. Returns the raw value of the return
 * register, zero-extended to 64 bits; on a 32-bit guest an error result
 * has only its low 32 bits set, so use gpm_hc_err() to test it.
 *
 * Without a host (a plain CPU) the result is meaningless CPUID data on
 * x86; on ARM the trap is an undefined instruction (SIGILL).
 */
uint64_t gpm_hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2);

/**
 * gpm_hc_err() - the error code carried by a raw hypercall result.
 * @ret: a value returned by gpm_hc().
 *
 * Returns the negative error code if @ret, read as a signed value of the
 * guest's word size, lies in [-4095, -1]; otherwise 0.
 */
long gpm_hc_err(uint64_t ret);

/**
 * gpm_hc_signed() - a raw hypercall result as a signed number.
 * @ret: a value returned by gpm_hc().
 *
 * Reads @ret as a signed value of the guest's word size: on a 32-bit
 * guest 0xffffffda is -38 (its upper half is zero, see gpm_hc()), on a
 * 64-bit guest all 64 bits count. For printing results; test errors with
 * gpm_hc_err().
 */
int64_t gpm_hc_signed(uint64_t ret);

/**
 * gpm_channel_open() - look a channel up by name and start it.
 * @name: NUL-terminated channel name, 1 to GPM_HC_MAX_NAME bytes. A
 *        plugin's main channel has the plugin's name.
 * @out:  receives the channel id on success; untouched on failure.
 *
 * Issues GET_CHANNEL then START. A START answered -EBUSY (the host does
 * not know yet which process owns the channel, e.g. a plugin that runs
 * before the daemon's STARTED reached the host) is retried with a backoff
 * for about 30 s. Returns 0, -ENOENT if the host knows no channel of that
 * name, -EACCES if the channel belongs to another process, -EINVAL or
 * -ENAMETOOLONG for a bad name, or the error of either hypercall.
 */
int gpm_channel_open(const char *name, gpm_chan_t *out);

/**
 * gpm_channel_manager() - allocate an anonymous channel.
 * @out: receives the new channel id on success; untouched on failure.
 *
 * Issues GET_MANAGER then START on the new id. Returns 0 or a negative
 * error (e.g. -ENOSPC when the host's table is full).
 */
int gpm_channel_manager(gpm_chan_t *out);

/**
 * gpm_channel_stop() - tell the host the guest stops using @chan.
 * @chan: a channel id from gpm_channel_open() or gpm_channel_manager().
 *
 * Returns 0 or a negative error (-EBADF for an unknown id).
 */
int gpm_channel_stop(gpm_chan_t chan);

/**
 * gpm_write() - send all of @buf to the host.
 * @chan: channel id.
 * @buf:  bytes to send; only read, and only during the call.
 * @len:  number of bytes; may exceed GPM_HC_MAX_TRANSFER.
 *
 * Loops until the host has taken every byte (it takes at most
 * GPM_HC_MAX_TRANSFER per hypercall). Pages are read-touched first so they
 * are resident. When the host is busy (-EBUSY or 0 bytes taken) it backs
 * off and retries, for about 30 seconds at most. Returns @len, or a
 * negative error; after an error some bytes may have been sent.
 */
ssize_t gpm_write(gpm_chan_t chan, const void *buf, size_t len);

/**
 * gpm_write_str() - gpm_write() of a NUL-terminated string, without the NUL.
 * @chan: channel id.
 * @s:    the string.
 *
 * Returns the string length or a negative error.
 */
ssize_t gpm_write_str(gpm_chan_t chan, const char *s);

/**
 * gpm_read() - one non-blocking read.
 * @chan: channel id.
 * @buf:  destination; every page of it is write-touched (its content kept)
 *        before the host is asked to fill it.
 * @len:  room in @buf; the host copies at most GPM_HC_MAX_TRANSFER.
 *
 * Issues one READ (repeated after touching again if the host answers
 * GPM_HC_EAGAIN, at most GPM_GUEST_EAGAIN_RETRIES times). Returns the
 * number of bytes copied, 0 if nothing is queued (or @len is 0), or a
 * negative error. A message longer than @len stays queued, in order.
 */
ssize_t gpm_read(gpm_chan_t chan, void *buf, size_t len);

/**
 * gpm_read_blocking() - wait until some bytes arrive, then read them.
 * @chan: channel id.
 * @buf:  destination, as for gpm_read().
 * @len:  room in @buf, at least 1.
 *
 * Polls with gpm_read() under an adaptive backoff (see struct
 * gpm_backoff); -EBUSY from the host counts as nothing queued yet. Returns the
 * number of bytes copied (>= 1) or a negative error; -EINVAL if @len is 0.
 */
ssize_t gpm_read_blocking(gpm_chan_t chan, void *buf, size_t len);

/**
 * gpm_read_exact() - block until exactly @len bytes have been read.
 * @chan: channel id.
 * @buf:  destination, as for gpm_read().
 * @len:  bytes wanted.
 *
 * Returns 0 once @buf is full, or a negative error (the bytes read so far
 * are then lost to the caller).
 */
int gpm_read_exact(gpm_chan_t chan, void *buf, size_t len);

/**
 * gpm_report_error() - send an error message to the host (ERROR op).
 * @chan: the channel the error concerns.
 * @msg:  NUL-terminated text; truncated to GPM_HC_MAX_ERROR_MSG bytes.
 *
 * Returns 0 or a negative error.
 */
int gpm_report_error(gpm_chan_t chan, const char *msg);

/**
 * gpm_touch_write() - make every page of a buffer present and writable.
 * @buf: start of the buffer.
 * @len: its length; 0 touches nothing.
 *
 * Reads and writes back one byte in each page (the content is unchanged),
 * which breaks copy-on-write and replaces the kernel's shared zero page by
 * a private page. Must not race with other writers of the same bytes.
 */
void gpm_touch_write(void *buf, size_t len);

/**
 * gpm_touch_read() - make every page of a buffer present.
 * @buf: start of the buffer.
 * @len: its length; 0 touches nothing.
 */
void gpm_touch_read(const void *buf, size_t len);

/**
 * struct gpm_backoff - adaptive wait between empty polls.
 * @spins:    empty polls so far in the current idle period.
 * @sleep_ns: the next sleep, in nanoseconds (0 while still spinning).
 *
 * Each empty poll costs a VM exit (about 1 ms on the stock-QEMU host, of
 * which most is the host stopping and restarting the guest), so polling in
 * a tight loop wastes the whole CPU, while the original design's fixed
 * 10 ms sleeps added up to 10 ms of latency to every message and made
 * multi-message exchanges slow. The backoff retries at once a few times
 * (replies usually follow quickly), then sleeps from about 50 us, doubling
 * up to a 20 ms cap; gpm_backoff_reset() starts over when data arrives.
 * Owned by the caller; zero-initialising it is the same as
 * gpm_backoff_reset().
 */
struct gpm_backoff {
    unsigned spins;
    unsigned long sleep_ns;
};

#define GPM_BACKOFF_SPINS  4
#define GPM_BACKOFF_MIN_NS 50000UL
#define GPM_BACKOFF_MAX_NS 20000000UL

/**
 * gpm_backoff_reset() - start a new idle period (call when data arrived).
 * @b: the backoff state.
 */
void gpm_backoff_reset(struct gpm_backoff *b);

/**
 * gpm_backoff_wait() - wait after an empty poll.
 * @b: the backoff state.
 *
 * Returns at once for the first GPM_BACKOFF_SPINS calls of an idle period,
 * then sleeps with nanosleep() for a growing time. Interrupted sleeps are
 * not resumed (a signal, e.g. SIGCHLD, ends the wait early).
 */
void gpm_backoff_wait(struct gpm_backoff *b);

/**
 * gpm_doorbell() - the host's doorbell page, mapped read-only, or NULL.
 *
 * Asked once per process (GPM_HC_OP_GET_DOORBELL) and mapped through
 * /dev/mem; NULL when the host has none or the mapping is refused (not
 * root, no /dev/mem). See doorbell.c for why it exists.
 */
const volatile uint64_t *gpm_doorbell(void);

/**
 * gpm_doorbell_value() - @chan's doorbell slot now, 0 without a doorbell.
 * Read it before a READ; if the READ was empty, wait for a change with
 * gpm_wait_change().
 */
uint64_t gpm_doorbell_value(gpm_chan_t chan);

/**
 * gpm_wait_change() - wait until @chan's slot differs from @since.
 * @b: backoff state, used as gpm_backoff_wait() when there is no doorbell.
 *
 * With a doorbell this makes no hypercall; it returns 1 on a change, 0
 * after about a second without one (or after one backoff step without a
 * doorbell), and -EINTR when a signal interrupted the wait.
 */
int gpm_wait_change(gpm_chan_t chan, uint64_t since, struct gpm_backoff *b);

#ifdef __cplusplus
}
#endif

#endif /* GPM_GUEST_H */
