/*
 * gpm/daemon_proto.h - the framed protocol on the "guest_daemon" channel.
 *
 * Plain C99, shared by the host core and the guest daemon. A channel moves
 * bytes; on the daemon channel those bytes are a stream of frames, each a
 * 16-byte header followed by @len payload bytes. Every integer is
 * little-endian on the wire, whatever the guest's byte order; use
 * gpm_le16/32 helpers of your side to convert.
 *
 * Frames, host -> guest:
 *   LOAD      payload: u16 name_len, u16 argc, u32 elf_len, then name_len
 *             bytes of plugin name (no NUL), then argc NUL-terminated
 *             argument strings, then elf_len bytes of the static ELF.
 *             @seq is chosen by the host and echoed in the replies.
 *   PING      empty payload; the daemon answers HELLO.
 *   PROBE     payload: up to GPM_DPROBE_MAX_PIDS u32 pids; the daemon
 *             answers GONE with those that no longer exist. The host uses
 *             it to free what guest processes that ended still held.
 * Frames, guest -> host:
 *   HELLO     payload: u32 daemon pid, u32 protocol version. Sent once when
 *             the daemon has opened its channel, and in reply to PING.
 *   STARTED   payload: u32 pid of the plugin process, then the name.
 *   EXITED    payload: u32 pid, i32 wait status (as waitpid gives it),
 *             then the name.
 *   FAILED    payload: i32 errno (positive), u32 stage (GPM_DSTAGE_*),
 *             then a UTF-8 message (no NUL).
 *   GONE      payload: u32 pids of a PROBE that no longer exist.
 * No reply payload is longer than GPM_DFRAME_MAX_REPLY; the host drops a
 * longer one unread.
 */
#ifndef GPM_DAEMON_PROTO_H
#define GPM_DAEMON_PROTO_H

#include <stdint.h>

#include "gpm/wire.h"

#define GPM_DAEMON_CHANNEL     "guest_daemon"
#define GPM_DAEMON_PLUGIN_NAME "guest_daemon"

/* The frame layout is gpm/wire.h's, with the daemon's magic. */
#define GPM_DFRAME_MAGIC       GPM_WIRE_MAGIC_DAEMON
#define GPM_DFRAME_VERSION     GPM_WIRE_VERSION
#define GPM_DFRAME_HDR_SIZE    GPM_WIRE_HDR_SIZE
/* Largest payload either side sends or accepts (an ELF plus its name). */
#define GPM_DFRAME_MAX_PAYLOAD (64u << 20)
#define GPM_DFRAME_MAX_ARGS    64u
/* Longest payload of a guest -> host frame. */
#define GPM_DFRAME_MAX_REPLY   1024u
/* Most pids one PROBE asks about (so that GONE fits a reply). */
#define GPM_DPROBE_MAX_PIDS    255u

enum gpm_dframe_type {
    GPM_DFRAME_LOAD = 1,
    GPM_DFRAME_PING = 2,
    GPM_DFRAME_PROBE = 3,
    GPM_DFRAME_HELLO = 16,
    GPM_DFRAME_STARTED = 17,
    GPM_DFRAME_EXITED = 18,
    GPM_DFRAME_FAILED = 19,
    GPM_DFRAME_GONE = 20,
};

/* Where a LOAD failed in the guest, reported in FAILED frames. */
enum gpm_dstage {
    GPM_DSTAGE_PROTOCOL = 1, /* malformed frame */
    GPM_DSTAGE_MEMORY = 2,   /* out of memory */
    GPM_DSTAGE_FILE = 3,     /* memfd_create or the /tmp fallback */
    GPM_DSTAGE_WRITE = 4,    /* writing the ELF */
    GPM_DSTAGE_FORK = 5,
    GPM_DSTAGE_EXEC = 6, /* execve failed in the child */
    GPM_DSTAGE_LOST = 7, /* host side: the daemon was replaced or lost */
};

/* A decoded header (layout: gpm/wire.h). */
#define gpm_dframe_hdr gpm_wire_hdr

#endif /* GPM_DAEMON_PROTO_H */
