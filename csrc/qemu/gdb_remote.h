/*
 * gdb_remote.h - a client of the GDB Remote Serial Protocol (internal).
 *
 * Two layers:
 *
 *  - Pure functions with no I/O (the parts a fuzzer drives): the incremental
 *    packet parser gpm__rsp_parse(), payload decoding (escapes and
 *    run-length encoding), framing, hex helpers, stop-reply parsing and the
 *    target-description (target.xml) register numbering.
 *  - gpm__gdb_conn_t: one connection to a gdbstub over a unix socket, in
 *    ack mode, with a timeout on every wait.
 *
 * Nothing here trusts the peer: every buffer is bounded, every length is
 * checked, and malformed input yields GPM_EPROTO rather than a crash.
 *
 * Threads: a gpm__gdb_conn_t belongs to one thread (the host's I/O thread);
 * none of its functions may be called concurrently on one connection. The
 * pure functions are thread-safe on distinct objects.
 */
#ifndef GPM_QEMU_GDB_REMOTE_H
#define GPM_QEMU_GDB_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpm/error.h"

/* Largest raw (still escaped) packet payload the parser accepts. */
#define GPM__RSP_MAX_PACKET (128u * 1024u)

/* What gpm__rsp_parse() found. */
typedef enum gpm__rsp_kind {
    GPM__RSP_NONE = 0,     /* all input consumed, no complete item */
    GPM__RSP_PACKET,       /* a packet with a valid checksum */
    GPM__RSP_BAD_CHECKSUM, /* a complete packet whose checksum is wrong */
    GPM__RSP_TOO_LONG,     /* a packet longer than the buffer, dropped */
    GPM__RSP_ACK,          /* '+' */
    GPM__RSP_NAK,          /* '-' */
    GPM__RSP_NOTIFICATION, /* a '%' notification packet (valid checksum) */
} gpm__rsp_kind_t;

/* Where a parser is in the byte stream (gpm__rsp_parser_t.state). */
enum gpm__rsp_state {
    GPM__RSP_IDLE = 0, /* between packets */
    GPM__RSP_DATA,     /* inside $...# */
    GPM__RSP_CSUM1,    /* at the first checksum digit */
    GPM__RSP_CSUM2,    /* at the second */
};

/* Parser state; initialise with gpm__rsp_parser_init(). */
typedef struct gpm__rsp_parser {
    int state;
    bool notification;
    bool overflow;
    uint8_t sum;
    uint8_t csum_hi;
    uint8_t *buf;
    size_t cap;
    size_t len; /* raw payload bytes of the last item */
} gpm__rsp_parser_t;

/**
 * gpm__rsp_parser_init() - reset @p to read packets into @buf.
 * @buf: caller-owned storage of @cap bytes; must outlive @p.
 */
void gpm__rsp_parser_init(gpm__rsp_parser_t *p, uint8_t *buf, size_t cap);

/**
 * gpm__rsp_parse() - feed bytes to the parser, stopping at the first item.
 * @in, @n: bytes received from the peer (any split, any content).
 * @kind:   receives what was found, GPM__RSP_NONE if nothing complete.
 *
 * Returns the number of bytes of @in consumed (all of them when @kind is
 * GPM__RSP_NONE). For GPM__RSP_PACKET and GPM__RSP_NOTIFICATION the raw
 * payload (escapes and run-length encoding not yet undone) is in
 * p->buf[0..p->len) until the next call. Bytes outside a packet other than
 * '+' and '-' are skipped; a '$' inside a packet starts a new packet.
 * Pure: no I/O, no allocation.
 */
size_t gpm__rsp_parse(gpm__rsp_parser_t *p, const uint8_t *in, size_t n,
                      gpm__rsp_kind_t *kind);

/**
 * gpm__rsp_decode() - undo '}' escapes and '*' run-length encoding.
 * @in, @n:   a raw payload.
 * @out, @cap: caller's buffer. @out_len: receives the decoded length.
 *
 * Returns 0, GPM_EPROTO (a dangling escape, a repeat with nothing to
 * repeat or an invalid count) or GPM_EMSGSIZE (@cap too small). @out may
 * not overlap @in.
 */
int gpm__rsp_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                    size_t *out_len);

/**
 * gpm__rsp_frame() - build "$payload#cs", escaping '$', '#', '}' and '*'.
 * @out, @cap: caller's buffer.
 *
 * Returns the framed length, or 0 if @cap is too small.
 */
size_t gpm__rsp_frame(const uint8_t *payload, size_t n, uint8_t *out,
                      size_t cap);

/**
 * gpm__hex_decode() - parse @n hex digits (n even) into @n/2 bytes.
 * Returns 0 or GPM_EPROTO.
 */
int gpm__hex_decode(const char *hex, size_t n, uint8_t *out);

/* Writes 2*@n lower-case hex digits (no NUL) to @out. */
void gpm__hex_encode(const uint8_t *in, size_t n, char *out);

/**
 * gpm__hex_u64() - parse up to 16 hex digits of a big-endian number.
 * Returns 0 or GPM_EPROTO (no digits, a non-digit, or too many).
 */
int gpm__hex_u64(const char *s, size_t n, uint64_t *out);

/* A parsed stop reply. */
typedef struct gpm__rsp_stop {
    char kind;       /* 'T' or 'S' (stopped), 'W' (exited), 'X' (killed) */
    unsigned signal; /* signal for T/S/X, exit status for W */
    bool has_thread; /* a "thread:" field was present */
    char thread[32]; /* its value, NUL-terminated, possibly truncated */
} gpm__rsp_stop_t;

/**
 * gpm__rsp_parse_stop() - parse a decoded stop reply.
 *
 * Returns 0, or GPM_EPROTO if @pkt is not a T, S, W or X reply.
 */
int gpm__rsp_parse_stop(const char *pkt, size_t n, gpm__rsp_stop_t *out);

/* One register of a target description. */
typedef struct gpm__tdesc_reg {
    char name[32];
    unsigned bitsize; /* 8..512, a multiple of 8 */
    unsigned regnum;  /* GDB register number */
    int g_offset;     /* byte offset in a 'g' reply, -1 if not in it */
} gpm__tdesc_reg_t;

#define GPM__TDESC_MAX_REGS 4096u
#define GPM__TDESC_MAX_DOCS 16u

/* The registers of a target, indexed by GDB number. */
typedef struct gpm__tdesc {
    unsigned nregs; /* registers numbered 0..nregs-1 (gaps have bitsize 0) */
    gpm__tdesc_reg_t regs[GPM__TDESC_MAX_REGS];
    char arch[32]; /* the <architecture> element, "" if none */
} gpm__tdesc_t;

/*
 * Fetches document @name ("target.xml", or an xi:include href). On success
 * sets *@out to a malloc'd buffer of *@len bytes that the caller frees.
 * Returns 0 or a negative GPM_E* code.
 */
typedef int (*gpm__tdesc_fetch_fn)(void *opaque, const char *name, char **out,
                                   size_t *len);

/**
 * gpm__tdesc_load() - read a target description and number its registers.
 * @fetch, @opaque: supply "target.xml" and every document it includes.
 * @td: filled on success.
 *
 * Registers are numbered in document order (includes expanded in place),
 * each one after the previous unless it carries a regnum attribute; XML
 * comments are skipped. 'g' offsets are computed for the registers in
 * numbering order, assuming the 'g' reply holds them back to back.
 * Returns 0, GPM_EPROTO (malformed, too many documents or registers), or
 * the fetcher's error.
 */
int gpm__tdesc_load(gpm__tdesc_fetch_fn fetch, void *opaque, gpm__tdesc_t *td);

/**
 * gpm__tdesc_find() - the number of the register called @name, or -1.
 */
int gpm__tdesc_find(const gpm__tdesc_t *td, const char *name);

/* ------------------------------------------------------------------ */
/* A connection. */

typedef struct gpm__gdb_conn {
    int fd;
    size_t packet_size; /* the peer's PacketSize, at least 256 */
    gpm__rsp_parser_t parser;
    uint8_t *rawbuf;     /* parser storage */
    uint8_t inbuf[8192]; /* bytes read but not yet parsed */
    size_t in_pos, in_len;
    uint8_t *outbuf; /* framing buffer */
    size_t outcap;
    uint64_t bytes_sent, bytes_received, packets_sent, retransmits;
} gpm__gdb_conn_t;

/**
 * gpm__gdb_connect() - connect to the gdbstub listening on unix socket
 * @path, retrying until @timeout_ms has passed.
 * @c: caller-allocated; released with gpm__gdb_close().
 *
 * Returns 0, GPM_EINVAL (path too long), GPM_ENOMEM, GPM_ETIMEDOUT or
 * GPM_ECONNRESET (refused until the deadline).
 */
int gpm__gdb_connect(gpm__gdb_conn_t *c, const char *path, int timeout_ms);

/* Closes the socket and frees the buffers. Safe on a zeroed struct. */
void gpm__gdb_close(gpm__gdb_conn_t *c);

/**
 * gpm__gdb_send() - send one packet and wait for its '+'.
 *
 * Retransmits on '-' (at most 3 times). Packets the peer sends meanwhile
 * are a protocol error (the caller only sends while the target is
 * stopped and nothing else is outstanding). Returns 0, GPM_ETIMEDOUT,
 * GPM_ECONNRESET, GPM_EPROTO or GPM_EMSGSIZE.
 */
int gpm__gdb_send(gpm__gdb_conn_t *c, const char *payload, size_t n,
                  int timeout_ms);

/**
 * gpm__gdb_send_raw() - write bytes outside any packet (the 0x03
 * interrupt). Returns 0 or GPM_ECONNRESET.
 */
int gpm__gdb_send_raw(gpm__gdb_conn_t *c, const void *buf, size_t n);

/**
 * gpm__gdb_recv() - wait for the next packet, ack it and decode it.
 * @out, @cap: receives the decoded payload, NUL-terminated (so @cap must
 *             exceed the payload by one). @out_len: its length.
 * @timeout_ms: < 0 waits forever; 0 polls.
 *
 * Bad checksums are answered with '-' and waited out. Returns 0,
 * GPM_ETIMEDOUT, GPM_ECONNRESET, GPM_EPROTO or GPM_EMSGSIZE.
 */
int gpm__gdb_recv(gpm__gdb_conn_t *c, char *out, size_t cap, size_t *out_len,
                  int timeout_ms);

/**
 * gpm__gdb_pending() - whether bytes are already buffered (so poll() on
 * the socket is not a complete readiness test).
 */
bool gpm__gdb_pending(const gpm__gdb_conn_t *c);

/**
 * gpm__gdb_command() - gpm__gdb_send() then gpm__gdb_recv().
 *
 * Returns 0, a transport error, or GPM_EIO if the reply is "Exx".
 */
int gpm__gdb_command(gpm__gdb_conn_t *c, const char *cmd, char *out, size_t cap,
                     size_t *out_len, int timeout_ms);

#endif /* GPM_QEMU_GDB_REMOTE_H */
