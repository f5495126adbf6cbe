/*
 * gpm/tools_proto.h - the wire formats of the "procs" and "tcp_fwd" guest
 * plugins, shared by the guest plugins, the host's Python tools
 * (pandagpm/tools/) and the PANDA OSI provider.
 *
 * Plain C99 with no dependencies. Every integer is little-endian on the
 * wire whatever the guest's byte order; structures are never sent as raw
 * memory, each side encodes and decodes field by field at the offsets
 * given here, so the same plugin source serves every architecture.
 *
 * The definitions may move into gpm/wire.h once that header exists; the
 * numbers and layouts then stay as they are.
 */
#ifndef GPM_TOOLS_PROTO_H
#define GPM_TOOLS_PROTO_H

#include <stdint.h>

/* ------------------------------------------------------------------ */
/* procs: processes, memory maps and sockets, read from /proc.          */
/* ------------------------------------------------------------------ */

/*
 * Request, host -> guest, on the channel "procs": 12 bytes,
 *   u32 op (enum gpm_procs_op), u32 seq (echoed), u32 arg (a pid for MAPS).
 *
 * Reply, guest -> host, one write:
 *   u32 magic GPM_PROCS_MAGIC, u32 op, u32 seq, i32 status (0 or -errno),
 *   u32 count (records), u32 len (bytes of records that follow),
 *   then the records. A reply never exceeds GPM_PROCS_MAX_REPLY bytes; a
 *   listing that would is cut at a record boundary and has flag
 *   GPM_PROCS_TRUNCATED in op's high bit.
 *
 * Each record starts with u32 rec_len (the whole record, this field
 * included) so that a reader can skip records of a later, longer layout.
 */
#define GPM_PROCS_MAGIC     0x43525047u /* "GPRC" */
#define GPM_PROCS_REQ_LEN   12u
#define GPM_PROCS_HDR_LEN   24u
#define GPM_PROCS_MAX_REPLY (8u << 20)
#define GPM_PROCS_TRUNCATED 0x80000000u
/* Longest string field the guest sends; longer ones are cut. */
#define GPM_PROCS_MAX_STR   4096u

enum gpm_procs_op {
    GPM_PROCS_OP_PS = 1,      /* every process: PROC records */
    GPM_PROCS_OP_MAPS = 2,    /* arg's memory maps: MAP records */
    GPM_PROCS_OP_SOCKETS = 3, /* TCP and UDP sockets: SOCK records */
    GPM_PROCS_OP_EXIT = 4,    /* the plugin exits; no reply */
};

/*
 * PROC record (offsets from the record start):
 *   0  u32 rec_len
 *   4  i32 pid
 *   8  i32 ppid
 *   12 u32 uid (real)
 *   16 u32 state (the letter of /proc/PID/stat, e.g. 'S')
 *   20 u64 start_time (clock ticks after boot, /proc/PID/stat field 22)
 *   28 u32 name_len, 32 u32 cmdline_len, 36 u32 exe_len
 *   40 name, then cmdline (arguments separated by NUL), then exe (the
 *      target of /proc/PID/exe; empty for kernel threads or when unknown)
 */
#define GPM_PROCS_PROC_FIXED 40u

/*
 * MAP record:
 *   0  u32 rec_len
 *   4  u64 start, 12 u64 end, 20 u64 offset
 *   28 u32 perms (four ASCII letters as in /proc/PID/maps, e.g. "r-xp",
 *      first letter in the low byte)
 *   32 u64 inode
 *   40 u32 path_len, 44 path (may be empty, or "[stack]" and the like)
 */
#define GPM_PROCS_MAP_FIXED 44u

/*
 * SOCK record:
 *   0  u32 rec_len
 *   4  u8 proto (6 TCP, 17 UDP), 5 u8 family (4 or 6), 6 u8 state (the
 *      kernel's TCP state number, 1 ESTABLISHED .. 10 LISTEN; UDP 7 is
 *      unconnected, 1 connected), 7 u8 reserved
 *   8  u16 local_port, 10 u16 remote_port
 *   12 local address (16 bytes, network order; IPv4 in the first 4)
 *   28 remote address (16 bytes)
 *   44 u32 uid, 48 i32 pid (-1: no process found), 52 u64 inode
 *   60 u32 prog_len, 64 prog (the owner's name, empty without one)
 */
#define GPM_PROCS_SOCK_FIXED 64u

/* ------------------------------------------------------------------ */
/* tcp_fwd: TCP connections multiplexed over one channel.               */
/* ------------------------------------------------------------------ */

/*
 * Both directions carry a stream of frames on the channel "tcp_fwd":
 *   u8 type (enum gpm_fwd_type), u8 flags (0), u16 reserved (0),
 *   u32 conn (connection or listener id), u32 len, then len bytes.
 * A frame may be split across hypercalls; each side reassembles. len is
 * at most GPM_FWD_MAX_PAYLOAD; a larger one is a protocol error that
 * ends the session.
 *
 * Connection ids: the host picks ids below GPM_FWD_GUEST_BIT for the
 * connections it opens (host port -> guest service); the guest picks ids
 * with that bit set for the connections it accepts on a reverse listener.
 *
 * Flow control: each side may have at most the window its peer granted
 * in flight on a connection: GPM_FWD_WINDOW bytes at the start, plus
 * every byte the peer acknowledged with ACK (u32 bytes now written to
 * the far socket). So neither side ever buffers more than one window per
 * connection, and a slow reader slows only its own connection.
 *
 * Ending: SHUT (no payload) says the sender will send no more DATA (the
 * far socket sent FIN); the receiver shuts its socket for writing once
 * the data before it is delivered. A connection is finished when both
 * sides sent SHUT and all data was acknowledged, or after a RESET (i32
 * errno, 0 for none) in either direction; then its id may be reused.
 */
#define GPM_FWD_HDR_LEN       12u
#define GPM_FWD_MAX_PAYLOAD   (256u << 10)
#define GPM_FWD_WINDOW        (1u << 20)
#define GPM_FWD_GUEST_BIT     0x80000000u
/* Connections the guest serves at once; more are refused (RESET). */
#define GPM_FWD_MAX_CONNS     256u
/* Reverse listeners the guest holds at once. */
#define GPM_FWD_MAX_LISTENERS 32u

enum gpm_fwd_type {
    /*
     * host -> guest: open a connection. Payload: u16 port, u16 family (4
     * or 6), 16 bytes of address (network order).
     */
    GPM_FWD_CONNECT = 1,
    /* guest -> host: the CONNECT succeeded. No payload. */
    GPM_FWD_CONNECTED = 2,
    /* Either way: bytes of the connection. */
    GPM_FWD_DATA = 3,
    /* Either way: u32 bytes delivered to the far socket since the last. */
    GPM_FWD_ACK = 4,
    /* Either way: no more DATA from the sender (half close). */
    GPM_FWD_SHUT = 5,
    /* Either way: the connection is aborted; payload i32 errno. */
    GPM_FWD_RESET = 6,
    /*
     * host -> guest: listen in the guest (reverse forward); conn is the
     * listener id. Payload: u16 port, u16 family, 16 bytes of address.
     * The guest answers LISTENING with i32 status (0 or -errno).
     */
    GPM_FWD_LISTEN = 7,
    GPM_FWD_LISTENING = 8,
    /* host -> guest: close listener conn. No reply. */
    GPM_FWD_UNLISTEN = 9,
    /*
     * guest -> host: a reverse listener accepted connection conn (guest
     * bit set). Payload: u32 listener id, u16 peer port, u16 family, 16
     * bytes of peer address. The host answers CONNECTED or RESET.
     */
    GPM_FWD_ACCEPTED = 10,
    /*
     * host -> guest: watch TCP port u16 (payload: u16 port, u16 family);
     * conn names the watch. The guest sends GONE with the same conn once
     * it saw a listener on the port and then none (the service stopped).
     */
    GPM_FWD_WATCH = 11,
    GPM_FWD_GONE = 12,
    /* host -> guest: reset every connection and exit. No payload. */
    GPM_FWD_QUIT = 13,
};

#endif /* GPM_TOOLS_PROTO_H */
