/*
 * gpm/wire.h - the one frame layout every pandagpm protocol uses.
 *
 * Header-only plain C99 with no allocation and no hypercalls, included by
 * the host core (csrc/core), the guest daemon and the guest plugins
 * (guest/), and exported to Python through pandagpm._gpm (the WIRE_*
 * constants and wire_header(), which pandagpm/wire.py checks itself
 * against). A channel moves bytes; a framed protocol sends a stream of
 * frames over it, each a GPM_WIRE_HDR_SIZE-byte header followed by @len
 * payload bytes. Every integer is little-endian on the wire, whatever the
 * guest's byte order.
 *
 * Header layout:
 *   offset 0  u32 magic   one per protocol (GPM_WIRE_MAGIC_*)
 *   offset 4  u16 version GPM_WIRE_VERSION
 *   offset 6  u16 type    the protocol's frame type
 *   offset 8  u32 seq     request number (replies echo it; 0 if none)
 *   offset 12 u32 len     payload length; each protocol sets its limit
 *
 * The magic names the protocol, so a stream meant for one tool is never
 * taken for another's: "GPMD" the daemon (gpm/daemon_proto.h), "GPMF" the
 * files plugin, "GPMP" the PTY shell plugin.
 *
 * Threads: every function is pure and reentrant.
 */
#ifndef GPM_WIRE_H
#define GPM_WIRE_H

#include <stdint.h>

#define GPM_WIRE_HDR_SIZE     16u
#define GPM_WIRE_VERSION      1u
/* The magics, "GPM?" read as a little-endian u32. */
#define GPM_WIRE_MAGIC_DAEMON 0x444d5047u /* "GPMD" */
#define GPM_WIRE_MAGIC_FILES  0x464d5047u /* "GPMF" */
#define GPM_WIRE_MAGIC_PTY    0x504d5047u /* "GPMP" */

/**
 * struct gpm_wire_hdr - a decoded header, in host byte order.
 */
struct gpm_wire_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    uint32_t seq;
    uint32_t len;
};

static inline uint16_t gpm_wire_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t gpm_wire_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t gpm_wire_get64(const uint8_t *p)
{
    return (uint64_t)gpm_wire_get32(p) |
           ((uint64_t)gpm_wire_get32(p + 4) << 32);
}

static inline void gpm_wire_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void gpm_wire_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void gpm_wire_put64(uint8_t *p, uint64_t v)
{
    gpm_wire_put32(p, (uint32_t)v);
    gpm_wire_put32(p + 4, (uint32_t)(v >> 32));
}

/**
 * gpm_wire_hdr_put() - write a header at @p (GPM_WIRE_HDR_SIZE bytes).
 */
static inline void gpm_wire_hdr_put(uint8_t *p, uint32_t magic, uint16_t type,
                                    uint32_t seq, uint32_t len)
{
    gpm_wire_put32(p, magic);
    gpm_wire_put16(p + 4, GPM_WIRE_VERSION);
    gpm_wire_put16(p + 6, type);
    gpm_wire_put32(p + 8, seq);
    gpm_wire_put32(p + 12, len);
}

/**
 * gpm_wire_hdr_get() - decode the GPM_WIRE_HDR_SIZE bytes at @p into @h.
 * Checks nothing: the caller compares magic, version and len.
 */
static inline void gpm_wire_hdr_get(const uint8_t *p, struct gpm_wire_hdr *h)
{
    h->magic = gpm_wire_get32(p);
    h->version = gpm_wire_get16(p + 4);
    h->type = gpm_wire_get16(p + 6);
    h->seq = gpm_wire_get32(p + 8);
    h->len = gpm_wire_get32(p + 12);
}

#endif /* GPM_WIRE_H */
