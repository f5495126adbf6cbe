/*
 * gpm/manager.h - channels, the hypercall dispatcher and guest plugins.
 *
 * A gpm_manager_t owns a table of channels. A channel has a 32-bit id
 * (never 0, never reused while the manager lives), an optional unique name,
 * a receive callback for guest -> host bytes, and a FIFO of host -> guest
 * messages that the guest drains with READ hypercalls.
 *
 * Threads: every function here may be called from any thread; the manager
 * serialises them with its own lock. Callbacks run on the thread that calls
 * gpm_hypercall_handle() (the emulator's thread), with no manager lock
 * held, so a callback may call back into the manager. A callback must not
 * wait for the guest to run: the guest CPU is stopped while it runs.
 *
 * Bounds (all configurable, see gpm_manager_config_t): host -> guest bytes
 * queued per channel and in total (a write beyond either fails with
 * GPM_ENOSPC and queues nothing), the number of channels (GPM_ENOSPC), and
 * the bytes one hypercall moves (GPM_HC_MAX_TRANSFER). Each queued message
 * counts against the queue limits with its length plus 32 bytes of
 * bookkeeping, so many tiny messages cannot exhaust host memory either.
 */
#ifndef GPM_MANAGER_H
#define GPM_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpm/arch.h"
#include "gpm/host.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpm_manager gpm_manager_t;
typedef uint32_t gpm_channel_id_t;

/* Not a channel: what lookups return alongside an error. */
#define GPM_CHANNEL_NONE ((gpm_channel_id_t)0)
/* Longest channel or plugin name, without the NUL. */
#define GPM_NAME_MAX     255

/*
 * Receives bytes the guest wrote to channel @id. @buf is only valid for the
 * duration of the call. Called on the emulator thread.
 */
typedef void (*gpm_recv_cb)(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                            void *opaque);

/*
 * Called exactly once when a channel is destroyed (closed, or the manager
 * freed), so the owner can release @opaque. Never called if allocating the
 * channel failed. May run on any thread that closes the channel.
 */
typedef void (*gpm_release_cb)(void *opaque);

typedef enum gpm_event_type {
    GPM_EVENT_CHANNEL_START = 1, /* guest START on @channel */
    GPM_EVENT_CHANNEL_STOP,      /* guest STOP on @channel */
    GPM_EVENT_GUEST_ERROR,       /* guest ERROR on @channel: @text */
    GPM_EVENT_GUEST_CHANNEL,     /* guest allocated anonymous @channel */
    GPM_EVENT_DAEMON_READY,      /* daemon said HELLO: @pid */
    GPM_EVENT_PLUGIN_STARTED,    /* plugin @name runs as @pid */
    GPM_EVENT_PLUGIN_EXITED,     /* plugin @name, @pid ended: @status */
    GPM_EVENT_PLUGIN_FAILED,     /* loading @name failed: @err, @text */
    GPM_EVENT_PROTOCOL_ERROR,    /* the daemon sent a malformed frame */
    GPM_EVENT_CHANNEL_DRAINED,   /* @channel had a write refused for a
                                    full queue and has room again */
} gpm_event_type_t;

/* Every pointer in an event is only valid for the duration of the call. */
typedef struct gpm_event {
    gpm_event_type_t type;
    gpm_channel_id_t channel; /* the channel concerned, or 0 */
    const char *name;         /* plugin name, or NULL */
    const char *text;         /* NUL-terminated message, or NULL */
    int64_t pid;              /* guest pid, or -1 */
    int64_t status;           /* wait status for PLUGIN_EXITED */
    int err;                  /* positive guest errno for PLUGIN_FAILED */
    uint32_t stage;           /* GPM_DSTAGE_* for PLUGIN_FAILED */
} gpm_event_t;

typedef void (*gpm_event_cb)(const gpm_event_t *ev, void *opaque);

typedef struct gpm_manager_config {
    gpm_arch_t arch;             /* the guest's architecture */
    size_t queue_limit;          /* bytes per channel, > 32; 0: 64 MiB */
    size_t total_queue_limit;    /* all channels, > 32; 0: 256 MiB */
    unsigned max_channels;       /* 0: 4096 */
    unsigned max_guest_channels; /* anonymous ones the guest may make; 0: 256 */
} gpm_manager_config_t;

/* Statistics, for tests and benchmarks. */
typedef struct gpm_manager_stats {
    uint64_t hypercalls;       /* handled hypercalls */
    uint64_t not_ours;         /* stops without the magic value */
    uint64_t guest_errors;     /* hypercalls answered with an error result */
    uint64_t bytes_to_guest;   /* bytes moved by READ */
    uint64_t bytes_from_guest; /* bytes moved by WRITE */
    size_t queued_bytes;       /* host -> guest bytes queued now */
    unsigned channels;         /* channels alive now */
    uint64_t refused;          /* calls refused by channel ownership */
    uint64_t protocol_errors;  /* malformed frames from the daemon */
    /* The shared-memory rings (gpm_manager_set_rings()). */
    unsigned rings_attached;       /* ring pairs in use now */
    uint64_t ring_msgs_from_guest; /* messages delivered from rings */
    uint64_t ring_bytes_from_guest;
    uint64_t ring_msgs_to_guest; /* records written into rings */
    uint64_t ring_bytes_to_guest;
    uint64_t ring_broken; /* rings shut for breaking the rules */
    /* A ring message's receive callback is running now: the host is not
     * reading any ring meanwhile (a slow callback holds them all up). */
    bool ring_delivering;
} gpm_manager_stats_t;

/**
 * gpm_manager_new() - create a manager.
 * @cfg: settings, copied; NULL for the defaults with arch x86_64.
 * @out: receives the manager; the caller frees it with gpm_manager_free().
 *
 * Returns 0, GPM_EINVAL for a bad arch or a limit of 32 bytes or less, or
 * GPM_ENOMEM.
 */
int gpm_manager_new(const gpm_manager_config_t *cfg, gpm_manager_t **out);

/**
 * gpm_manager_free() - destroy a manager and every channel.
 *
 * Calls each channel's release callback. No other call on @m may be under
 * way or follow. NULL is ignored.
 */
void gpm_manager_free(gpm_manager_t *m);

/**
 * gpm_manager_arch() - the guest architecture the manager was made for.
 */
gpm_arch_t gpm_manager_arch(const gpm_manager_t *m);

/**
 * gpm_manager_set_event_cb() - receive lifecycle events.
 * @cb: NULL to stop receiving them. @opaque is passed to @cb unchanged and
 *      stays owned by the caller, who must keep it alive until the callback
 *      is replaced or the manager freed.
 */
void gpm_manager_set_event_cb(gpm_manager_t *m, gpm_event_cb cb, void *opaque);

/*
 * Rings the doorbell of channel @id after the host queued a message on it
 * (see GPM_HC_OP_GET_DOORBELL in gpm/abi.h). Called on the thread that
 * wrote, with the manager's lock held: it must only store to the page and
 * never call into the manager.
 */
typedef void (*gpm_doorbell_cb)(gpm_channel_id_t id, void *opaque);

/**
 * gpm_manager_set_doorbell() - offer the guest a doorbell page.
 * @guest_phys: the page's guest-physical address (page-aligned), which
 *              GET_DOORBELL returns; 0 withdraws the doorbell.
 * @ring:       called after every successful host write; must only store
 *              to that page. @opaque is passed to it and must stay alive
 *              until the doorbell is withdrawn or the manager freed.
 *
 * Returns 0 or GPM_EINVAL (unaligned address, or NULL @ring with a
 * non-zero address).
 */
int gpm_manager_set_doorbell(gpm_manager_t *m, uint64_t guest_phys,
                             gpm_doorbell_cb ring, void *opaque);

/*
 * Tells the host's ring thread that host -> guest data was queued on a
 * channel with a ring, so it serves the rings soon. Called on the thread
 * that wrote, without the manager's lock; it must not call into the
 * manager (it only wakes the thread that calls gpm_manager_ring_service()).
 */
typedef void (*gpm_ring_kick_cb)(void *opaque);

/**
 * gpm_manager_set_rings() - offer the guest shared-memory ring pairs.
 * @guest_phys: start of a guest-physical region the guest kernel never
 *              uses (4 KiB aligned), which GPM_HC_OP_RING_ATTACH hands out
 *              in GPM_RING_SLOT_SIZE pieces (gpm/ring_abi.h); 0 withdraws.
 * @size:       the region's size; at least one GPM_RING_SLOT_SIZE.
 * @host:       the same region mapped writable in this process (QEMU's RAM
 *              file). Owned by the caller; it must stay mapped until the
 *              rings are withdrawn or the manager freed.
 * @kick:       see gpm_ring_kick_cb; may be NULL (the ring thread then
 *              only finds new data when it polls). @opaque is passed to it.
 *
 * Withdrawing detaches every ring (the guest keeps its mapping but the
 * host stops reading and writing it) and must not race with
 * gpm_manager_ring_service(): stop the ring thread first. Any thread.
 * Returns 0, GPM_EINVAL (unaligned, too small, NULL @host) or GPM_ENOMEM.
 */
int gpm_manager_set_rings(gpm_manager_t *m, uint64_t guest_phys, size_t size,
                          void *host, gpm_ring_kick_cb kick, void *opaque);

/**
 * gpm_manager_ring_service() - one pass over every attached ring.
 *
 * Takes the guest's complete messages out of each ring and hands each to
 * its channel's receive callback (on this thread, without the lock, one
 * call per message as for a WRITE), then moves queued host -> guest bytes
 * into the rings, ringing the doorbell of each channel that got some. A
 * ring whose guest broke the rules (an index or length out of bounds) is
 * shut, with a GPM_EVENT_GUEST_ERROR on its channel; the others go on.
 * Bounded work per call. Returns the number of records moved, 0 when there
 * was nothing to do (the caller then backs off), or GPM_EINVAL without
 * rings. Call from one thread only (the host's ring thread).
 */
int gpm_manager_ring_service(gpm_manager_t *m);

/**
 * gpm_manager_stats() - copy the manager's counters into @out.
 */
void gpm_manager_stats(gpm_manager_t *m, gpm_manager_stats_t *out);

/**
 * gpm_channel_allocate() - create a channel.
 * @name:    unique name (at most GPM_NAME_MAX bytes), or NULL for an
 *           anonymous channel. Copied.
 * @cb:      receives guest -> host bytes; NULL makes guest writes fail
 *           with GPM_HC_EPIPE.
 * @release: called once with @opaque when the channel is destroyed; may be
 *           NULL. If this function fails it is never called.
 * @out:     receives the new id.
 *
 * Returns 0, GPM_EEXIST (name taken), GPM_ENAMETOOLONG, GPM_EINVAL (empty
 * name), GPM_ENOSPC (too many channels) or GPM_ENOMEM.
 */
int gpm_channel_allocate(gpm_manager_t *m, const char *name, gpm_recv_cb cb,
                         gpm_release_cb release, void *opaque,
                         gpm_channel_id_t *out);

/**
 * gpm_channel_set_callback() - replace a channel's receive callback.
 * @cb, @release, @opaque: as for gpm_channel_allocate().
 *
 * The old release callback, if any, is called once with the old opaque
 * before this returns. Used for channels the guest allocated with
 * GET_MANAGER (see GPM_EVENT_GUEST_CHANNEL). Returns 0 or GPM_EBADF (in
 * which case @release is never called).
 */
int gpm_channel_set_callback(gpm_manager_t *m, gpm_channel_id_t id,
                             gpm_recv_cb cb, gpm_release_cb release,
                             void *opaque);

/**
 * gpm_channel_set_paused() - refuse or accept guest writes on @id.
 *
 * While paused, a guest WRITE on the channel takes nothing and gets
 * GPM_HC_EBUSY, and the guest retries later: a receiver whose buffer is
 * full pauses its channel instead of dropping bytes the guest was told
 * were taken. May be called from a receive callback. Returns 0 or
 * GPM_EBADF.
 */
int gpm_channel_set_paused(gpm_manager_t *m, gpm_channel_id_t id, bool paused);

/**
 * gpm_channel_set_queue_limit() - a smaller host -> guest queue for @id.
 * @limit: bytes (with the per-message overhead), more than 32; 0 restores
 *         the manager's queue_limit, and a value above it is cut to it.
 *
 * A sender that streams (a file copy) sets a few MiB so that host memory
 * stays bounded whatever the guest does. Returns 0, GPM_EBADF or
 * GPM_EINVAL. Any thread.
 */
int gpm_channel_set_queue_limit(gpm_manager_t *m, gpm_channel_id_t id,
                                size_t limit);

/*
 * The drained event: when gpm_channel_write() on a channel fails with
 * GPM_ENOSPC, the channel is marked full; once the guest's reads have
 * brought its queue down to half its limit (or empty), the core emits one
 * GPM_EVENT_CHANNEL_DRAINED for it, on the thread that read (the
 * emulator's, for a guest READ), without the lock. A sender then writes
 * again instead of polling gpm_channel_pending(). If the write failed for
 * the manager's total limit, the room may be taken by other channels by
 * the time it retries: a sender waits for the event with a bound and
 * retries.
 */

/**
 * gpm_channel_lookup() - find a channel by name.
 * @out: receives the id, or GPM_CHANNEL_NONE on failure.
 *
 * Returns 0, GPM_ENOENT for an unknown name, GPM_EINVAL for NULL.
 */
int gpm_channel_lookup(gpm_manager_t *m, const char *name,
                       gpm_channel_id_t *out);

/**
 * gpm_channel_write() - queue one host -> guest message.
 * @buf: copied; the caller keeps ownership. @len may be 0 only if @buf is
 *       NULL or not; an empty message is accepted and ignored.
 *
 * The message stays queued, in order, until the guest reads it, even if
 * the guest has not started the channel yet. Returns 0, GPM_EBADF,
 * GPM_ENOSPC (the per-channel or total limit would be passed; nothing is
 * queued), GPM_EMSGSIZE (larger than the per-channel limit by itself) or
 * GPM_ENOMEM.
 */
int gpm_channel_write(gpm_manager_t *m, gpm_channel_id_t id, const void *buf,
                      size_t len);

/**
 * gpm_channel_read() - take queued host -> guest bytes on the host side.
 *
 * Does what a guest READ does, into a host buffer: copies up to @cap bytes
 * of the head message into @buf and keeps the rest at the head. Used by
 * tests and by hosts that move data without a hypercall.
 * @out: receives the count, 0 if nothing is queued.
 *
 * Returns 0 or GPM_EBADF.
 */
int gpm_channel_read(gpm_manager_t *m, gpm_channel_id_t id, void *buf,
                     size_t cap, size_t *out);

/**
 * gpm_channel_pending() - how much is queued host -> guest on @id.
 * @bytes, @msgs: either may be NULL.
 *
 * Returns 0 or GPM_EBADF.
 */
int gpm_channel_pending(gpm_manager_t *m, gpm_channel_id_t id, size_t *bytes,
                        size_t *msgs);

/**
 * gpm_channel_started() - whether the guest has sent START on @id.
 *
 * Returns 1, 0, or GPM_EBADF.
 */
int gpm_channel_started(gpm_manager_t *m, gpm_channel_id_t id);

/**
 * gpm_channel_close() - destroy a channel and drop what is queued on it.
 *
 * The release callback runs once no receive callback for the channel is
 * running any more (possibly on the emulator thread). Guest calls on the
 * id then get GPM_HC_EBADF. Returns 0 or GPM_EBADF.
 */
int gpm_channel_close(gpm_manager_t *m, gpm_channel_id_t id);

/**
 * gpm_hypercall_handle() - handle a possible hypercall of a stopped CPU.
 * @ops, @cpu: the host's access to the CPU; used only during this call.
 * @handled:   receives true if the magic value was present. The caller then
 *             moves the CPU past the hypercall instruction; when false it
 *             leaves the instruction to run normally.
 *
 * Reads the hypercall registers, performs the op and writes the result
 * register. Every guest value is checked: the result for the guest is an
 * error code of gpm/abi.h for any bad op, channel, pointer or length.
 * Channel and event callbacks run inside this call.
 *
 * Returns 0, or a negative GPM_E* code if the host ops failed to read or
 * write a register (the hypercall then has no effect on the channels).
 */
int gpm_hypercall_handle(gpm_manager_t *m, const gpm_host_ops_t *ops, void *cpu,
                         bool *handled);

/**
 * gpm_daemon_channel() - the id of the "guest_daemon" channel, creating it
 * if needed. Returns 0 or a negative GPM_E* code.
 */
int gpm_daemon_channel(gpm_manager_t *m, gpm_channel_id_t *out);

/**
 * gpm_guest_plugin_add() - register a guest plugin and ask the daemon to
 * load it.
 * @name:        the plugin's name; its main channel gets this name.
 * @binary_path: the plugin's static ELF, or NULL to find @name through
 *               the inventory search path (see gpm/inventory.h).
 * @cb, @release, @opaque: as for gpm_channel_allocate(), for the main
 *               channel.
 * @out:         receives the main channel's id.
 * @why, @why_len: if not NULL, receives a NUL-terminated explanation of a
 *               failure (e.g. every place that was searched).
 *
 * The binary is checked (ELF, architecture, descriptor), read, and queued
 * as a LOAD frame on the "guest_daemon" channel, which is created on first
 * use. The daemon receives it when it next reads; its replies become
 * GPM_EVENT_PLUGIN_* events. Returns 0 or a negative GPM_E* code (e.g.
 * GPM_ENOENT, GPM_ENOEXEC, GPM_EARCH, GPM_EDESC, GPM_EEXIST); on failure
 * nothing is queued and @release is never called.
 */
int gpm_guest_plugin_add(gpm_manager_t *m, const char *name,
                         const char *binary_path, gpm_recv_cb cb,
                         gpm_release_cb release, void *opaque,
                         gpm_channel_id_t *out, char *why, size_t why_len);

/*
 * Channel ownership (threat model: docs/security.md).
 *
 * Any guest process can issue hypercalls, so the core checks who makes
 * each one. A host that can tell passes the calling thread's thread-group
 * id (what getpid() returns in the guest) to gpm_hypercall_handle_as();
 * a channel with an owner then answers START, STOP, READ, WRITE and ERROR
 * from any other process with GPM_HC_EACCES, and GET_CHANNEL on it too.
 * Owners are set by the core itself: the daemon channel by
 * gpm_daemon_reset() (the host names the process it injected), a plugin's
 * main channel by the daemon's STARTED reply (the plugin's pid), an
 * anonymous channel by the GET_MANAGER that made it. Channels the host
 * allocates have no owner unless gpm_channel_set_owner() gives one.
 *
 * Fallback: a hypercall whose caller is unknown (GPM_TGID_UNKNOWN, e.g.
 * through gpm_hypercall_handle()) is never refused for ownership, which
 * is what the original design did; so is every call once
 * gpm_manager_set_ownership(m, false) chose the compatibility mode.
 */
#define GPM_TGID_UNKNOWN  ((int64_t)-1)
/* Owner values besides a tgid (> 0). */
#define GPM_OWNER_ANY     ((int64_t)-1) /* every process may use it */
#define GPM_OWNER_PENDING ((int64_t)0)  /* owner not known yet: EBUSY */
#define GPM_OWNER_NONE    ((int64_t)-2) /* owner gone: always EACCES */

/**
 * gpm_hypercall_handle_as() - gpm_hypercall_handle() for a known caller.
 * @tgid: thread-group id of the guest process whose thread executed the
 *        hypercall, or GPM_TGID_UNKNOWN. Threads of one process share it.
 *
 * While a channel's owner is GPM_OWNER_PENDING, calls on it from a known
 * process get GPM_HC_EBUSY (the guest library retries), except from the
 * channel's previous owner, which gets GPM_HC_EACCES. Same returns as
 * gpm_hypercall_handle(). Emulator thread, as that function.
 */
int gpm_hypercall_handle_as(gpm_manager_t *m, const gpm_host_ops_t *ops,
                            void *cpu, int64_t tgid, bool *handled);

/**
 * gpm_channel_set_owner() - restrict channel @id to one guest process.
 * @owner: a tgid (> 0), or GPM_OWNER_ANY, GPM_OWNER_PENDING or
 *         GPM_OWNER_NONE. The previous owner is remembered (see
 *         gpm_hypercall_handle_as()).
 *
 * Returns 0, GPM_EBADF or GPM_EINVAL. Any thread.
 */
int gpm_channel_set_owner(gpm_manager_t *m, gpm_channel_id_t id, int64_t owner);

/**
 * gpm_channel_owner() - @id's owner into @out (see the values above).
 * Returns 0, GPM_EBADF or GPM_EINVAL. Any thread.
 */
int gpm_channel_owner(gpm_manager_t *m, gpm_channel_id_t id, int64_t *out);

/**
 * gpm_manager_set_ownership() - enforce channel ownership (the default)
 * or not (@enforce false: the compatibility mode for guest binaries built
 * with the original channel library, which neither retry GPM_HC_EBUSY nor
 * know GPM_HC_EACCES). Owners are still recorded. Any thread.
 */
void gpm_manager_set_ownership(gpm_manager_t *m, bool enforce);

/**
 * gpm_manager_set_guest_quota() - anonymous channels one guest process
 * may hold at a time (GET_MANAGER beyond it gets GPM_HC_ENOSPC).
 * @per_process: 0 for the default, 32; at most max_guest_channels.
 *
 * A guest-made channel is freed when its owner STOPs it, when the daemon
 * reports the plugin that made it EXITED, or when a PROBE finds its maker
 * gone (gpm_daemon_probe(); sent by itself when the table is full).
 * Returns 0 or GPM_EINVAL. Any thread.
 */
int gpm_manager_set_guest_quota(gpm_manager_t *m, unsigned per_process);

/**
 * gpm_process_gone() - guest process @tgid has ended.
 *
 * Frees the anonymous channels it made and sets the owner of every other
 * channel it owned to GPM_OWNER_NONE (so a reused pid gets nothing). The
 * core calls it itself for each EXITED reply of the daemon; a host that
 * learns of exits otherwise may call it. Returns the number of channels
 * concerned. Any thread; release callbacks run on it.
 */
unsigned gpm_process_gone(gpm_manager_t *m, int64_t tgid);

/**
 * gpm_daemon_probe() - ask the daemon which guest processes that hold
 * anonymous channels have ended (a PROBE frame); its GONE reply frees
 * their channels as gpm_process_gone() does. The core also sends one by
 * itself when a GET_MANAGER finds the channel table full. At most one a
 * second: returns 0 if one was queued, GPM_EAGAIN if one was sent less
 * than a second ago or nobody holds such channels, GPM_EBADF without a
 * daemon channel. Any thread.
 */
int gpm_daemon_probe(gpm_manager_t *m);

/**
 * gpm_daemon_reset() - forget the current guest daemon.
 * @owner: the tgid of the daemon that will serve the channel next (the
 *         process the host injected), GPM_OWNER_PENDING while it is not
 *         known yet, or GPM_OWNER_ANY.
 *
 * Drops every frame still queued for the old daemon (so no LOAD is ever
 * replayed to its successor), clears the partial frame being received,
 * and fails every load still waiting for an answer: each gets a
 * GPM_EVENT_PLUGIN_FAILED event (err ECONNRESET, stage GPM_DSTAGE_LOST)
 * and its channel's owner becomes GPM_OWNER_NONE. The old owner is
 * refused from then on. Creates the channel if needed. Returns the number
 * of loads failed, or a negative GPM_E* code. Any thread; the events are
 * delivered on it before this returns.
 */
int gpm_daemon_reset(gpm_manager_t *m, int64_t owner);

#ifdef __cplusplus
}
#endif

#endif /* GPM_MANAGER_H */
