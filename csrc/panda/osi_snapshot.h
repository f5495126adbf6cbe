/*
 * osi_snapshot.h - the guest agent's latest process list and memory maps,
 * as the OSI provider (osi_provider.c) hands them to PANDA's OSI API.
 *
 * PANDA-independent (glib and libc only), so it is unit-tested without
 * PANDA (tests/c/test_osi_snapshot.c). The bytes come from the "procs"
 * guest plugin in the format of gpm/tools_proto.h; the guest is hostile,
 * so every length is checked and a malformed reply drops what was
 * buffered and leaves the last good snapshot in place.
 *
 * Freshness: OSI's callers ask at arbitrary emulation points, when the
 * guest cannot be asked, so answers come from the last complete reply.
 * gpm_osi_snapshot_next_request() asks for a new process list at most
 * every @period_ms of host time while the guest runs (the provider calls
 * it from the hypercall path, i.e. while the agent talks to the host), so
 * a list is at most one period plus one guest round trip old. A process's
 * memory maps are asked for once a caller wanted them and then with every
 * refresh; the first question about a pid finds nothing. Without an agent
 * (none loaded yet, or the guest state was reset) there is no snapshot
 * and every answer is "nothing", never a guess.
 *
 * Threads: every function takes the snapshot's own lock, so it may be
 * called from any thread.
 */
#ifndef GPM_OSI_SNAPSHOT_H
#define GPM_OSI_SNAPSHOT_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include "gpm/tools_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One process of a snapshot; strings owned by the snapshot. */
typedef struct gpm_osi_proc {
    int32_t pid;
    int32_t ppid;
    uint64_t start_time; /* clock ticks after boot */
    char *name;
} gpm_osi_proc_t;

/* One memory mapping of a snapshot; strings owned by the snapshot. */
typedef struct gpm_osi_map {
    uint64_t start, end, offset;
    char perms[5];
    char *path; /* "" for an anonymous mapping */
} gpm_osi_map_t;

typedef struct gpm_osi_snapshot gpm_osi_snapshot_t;

/* Processes whose maps are kept up to date; more wishes are dropped. */
#define GPM_OSI_MAX_WANTED 64

/**
 * gpm_osi_snapshot_new() - an empty snapshot (no agent yet).
 * Returns it; free with gpm_osi_snapshot_free(). Never NULL (glib aborts
 * on out-of-memory).
 */
gpm_osi_snapshot_t *gpm_osi_snapshot_new(void);

/* gpm_osi_snapshot_free() - frees @s and everything in it; NULL is fine. */
void gpm_osi_snapshot_free(gpm_osi_snapshot_t *s);

/**
 * gpm_osi_snapshot_reset() - forget everything (the agent is gone).
 *
 * Afterwards every fill answers "nothing" until a new reply arrives.
 */
void gpm_osi_snapshot_reset(gpm_osi_snapshot_t *s);

/**
 * gpm_osi_snapshot_feed() - bytes the procs plugin wrote to its channel.
 * @buf: @len bytes, only read during the call.
 *
 * Replies may arrive split over several calls. Returns 0, or -EPROTO
 * after a malformed reply (what was buffered is dropped; the snapshot
 * keeps its last good content).
 */
int gpm_osi_snapshot_feed(gpm_osi_snapshot_t *s, const uint8_t *buf,
                          size_t len);

/**
 * gpm_osi_snapshot_next_request() - the request to send now, if any.
 * @req:       receives GPM_PROCS_REQ_LEN bytes when one is due.
 * @now_ms:    the host's monotonic clock, in milliseconds.
 * @period_ms: how often to refresh the process list.
 *
 * At most one request is outstanding: none is due until its reply came
 * (or 10 periods passed without one, when it is taken for lost). Returns
 * 1 if @req was filled, else 0.
 */
int gpm_osi_snapshot_next_request(gpm_osi_snapshot_t *s, uint8_t *req,
                                  int64_t now_ms, int64_t period_ms);

/**
 * gpm_osi_snapshot_want_maps() - keep the maps of @pid up to date from
 * now on (a caller asked for them).
 */
void gpm_osi_snapshot_want_maps(gpm_osi_snapshot_t *s, int32_t pid);

/*
 * Writes one element of a caller's GArray from a snapshot record. @elem
 * is zeroed storage of the array's element size; strings put there must
 * be glib-allocated (the array's clear function frees them).
 */
typedef void (*gpm_osi_proc_fill_fn)(void *elem, const gpm_osi_proc_t *p);
typedef void (*gpm_osi_map_fill_fn)(void *elem, const gpm_osi_map_t *m);

/**
 * gpm_osi_snapshot_fill_procs() - add the process list to @out.
 * @out:       OSI's container: if *@out is NULL a new GArray of
 *             @elem_size elements with @clear set as its clear function
 *             (g_array_set_clear_func()) is made; else the processes are
 *             appended to *@out.
 * @elem_size: sizeof the element type (OsiProc).
 * @clear:     frees one element's contents (strings), not the element.
 * @fill:      writes one element.
 *
 * Returns the number of processes added (>= 0), -ENODATA without a
 * snapshot (*@out untouched: "nothing"), or -EINVAL if *@out holds
 * elements of another size: then *@out and its contents are freed and
 * *@out is set to NULL, as OSI's container rules ask.
 */
int gpm_osi_snapshot_fill_procs(gpm_osi_snapshot_t *s, GArray **out,
                                size_t elem_size, GDestroyNotify clear,
                                gpm_osi_proc_fill_fn fill);

/**
 * gpm_osi_snapshot_fill_maps() - add the memory maps of @pid to @out.
 *
 * As gpm_osi_snapshot_fill_procs() (same container rules), for the maps
 * of @pid; -ENODATA when they are not known yet (they are asked for from
 * now on).
 */
int gpm_osi_snapshot_fill_maps(gpm_osi_snapshot_t *s, int32_t pid, GArray **out,
                               size_t elem_size, GDestroyNotify clear,
                               gpm_osi_map_fill_fn fill);

/* Counters for tests and the monitor: complete replies, rejected ones. */
void gpm_osi_snapshot_counts(gpm_osi_snapshot_t *s, uint64_t *replies,
                             uint64_t *rejected);

#ifdef __cplusplus
}
#endif

#endif /* GPM_OSI_SNAPSHOT_H */
