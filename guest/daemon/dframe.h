/*
 * dframe.h - frames of the daemon protocol (gpm/daemon_proto.h), guest side.
 *
 * Pure code with no hypercalls, so the unit tests build it natively. The
 * parser is "pull" style: the caller asks where the next bytes go
 * (gpm_dparser_buf()), reads at most that many bytes from the channel
 * straight into that buffer, and commits them (gpm_dparser_commit()).
 * Payloads are read directly into their final heap buffer, and a read never
 * goes past the end of the current frame.
 */
#ifndef GPM_GUEST_DFRAME_H
#define GPM_GUEST_DFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "gpm/daemon_proto.h"

/* Longest plugin name in a LOAD, without the NUL. */
#define GPM_DLOAD_NAME_MAX 255

/* What gpm_dparser_commit() reports. */
enum gpm_dp_event {
    GPM_DP_MORE = 0,        /* nothing complete yet */
    GPM_DP_FRAME = 1,       /* a frame is complete: see struct gpm_dframe */
    GPM_DP_BAD_MAGIC = 2,   /* garbage before a frame; resynchronising */
    GPM_DP_BAD_VERSION = 3, /* unknown version; its payload is skipped */
    GPM_DP_TOO_LONG = 4,    /* length over the limit; resynchronising */
    GPM_DP_NOMEM = 5,       /* no memory for the payload; it is skipped */
};

/**
 * struct gpm_dframe - a decoded frame.
 * @hdr:     the header, converted to host byte order.
 * @payload: @hdr.len bytes from malloc() (NULL when @hdr.len is 0); the
 *           receiver of a GPM_DP_FRAME event owns it and must free() it.
 */
struct gpm_dframe {
    struct gpm_dframe_hdr hdr;
    uint8_t *payload;
};

enum gpm_dp_state { GPM_DP_HDR, GPM_DP_PAYLOAD, GPM_DP_SKIP };

/**
 * struct gpm_dparser - parser state; caller-allocated.
 * @max_payload: largest accepted payload; gpm_dparser_init() sets
 *               GPM_DFRAME_MAX_PAYLOAD, tests may lower it.
 * Other fields are private.
 */
struct gpm_dparser {
    enum gpm_dp_state state;
    uint8_t hdr_buf[GPM_DFRAME_HDR_SIZE];
    size_t have;
    size_t skip_left;
    struct gpm_dframe cur;
    int resyncing;
    uint32_t max_payload;
    uint8_t scratch[4096];
};

/**
 * gpm_dparser_init() - reset a parser to "expecting a header".
 * @p: the parser.
 */
void gpm_dparser_init(struct gpm_dparser *p);

/**
 * gpm_dparser_free() - release a partly read payload.
 * @p: the parser; it may be initialised again afterwards.
 */
void gpm_dparser_free(struct gpm_dparser *p);

/**
 * gpm_dparser_buf() - where the next bytes of the stream go.
 * @p:    the parser.
 * @room: receives how many bytes may be written there (always >= 1).
 *
 * Returns a pointer into the parser or into the payload buffer; it stays
 * valid until the next gpm_dparser_commit().
 */
void *gpm_dparser_buf(struct gpm_dparser *p, size_t *room);

/**
 * gpm_dparser_commit() - account for bytes written at gpm_dparser_buf().
 * @p:   the parser.
 * @n:   bytes written, at most the room given.
 * @out: on GPM_DP_FRAME receives the frame (the caller owns its payload);
 *       on GPM_DP_BAD_VERSION and GPM_DP_NOMEM receives the header (for
 *       its seq) with a NULL payload. Untouched otherwise.
 *
 * Returns an enum gpm_dp_event. GPM_DP_BAD_MAGIC is reported once per run
 * of garbage, not per byte.
 */
int gpm_dparser_commit(struct gpm_dparser *p, size_t n, struct gpm_dframe *out);

/**
 * gpm_dframe_encode() - build one frame.
 * @out:  destination, at least GPM_DFRAME_HDR_SIZE + the payload length.
 * @cap:  room in @out.
 * @type: enum gpm_dframe_type.
 * @seq:  sequence number to echo.
 * @parts, @lens, @nparts: the payload as consecutive pieces.
 *
 * Returns the frame length, or 0 if it does not fit in @cap or the
 * payload exceeds GPM_DFRAME_MAX_PAYLOAD.
 */
size_t gpm_dframe_encode(uint8_t *out, size_t cap, uint16_t type, uint32_t seq,
                         const void *const *parts, const size_t *lens,
                         size_t nparts);

/**
 * struct gpm_dload - a parsed LOAD payload; every pointer points into the
 * payload it was parsed from and lives as long as that buffer.
 * @name: plugin name, NUL-terminated copy.
 * @argc: number of arguments (not counting argv[0]).
 * @argv: the arguments, each NUL-terminated inside the payload.
 * @elf, @elf_len: the executable.
 */
struct gpm_dload {
    char name[GPM_DLOAD_NAME_MAX + 1];
    uint16_t argc;
    const char *argv[GPM_DFRAME_MAX_ARGS];
    const uint8_t *elf;
    uint32_t elf_len;
};

/**
 * gpm_dload_parse() - check and split a LOAD payload.
 * @payload, @len: the payload.
 * @out:   receives the parts.
 * @why:   on failure receives a static message saying what is wrong.
 *
 * The name must be 1..255 bytes without NUL or '/', argc at most
 * GPM_DFRAME_MAX_ARGS, every argument NUL-terminated, and the lengths must
 * add up to @len exactly. Returns 0 or -EPROTO (-E2BIG for too many args).
 */
int gpm_dload_parse(const uint8_t *payload, size_t len, struct gpm_dload *out,
                    const char **why);

/* Little-endian helpers. */
uint16_t gpm_get_le16(const uint8_t *p);
uint32_t gpm_get_le32(const uint8_t *p);
void gpm_put_le16(uint8_t *p, uint16_t v);
void gpm_put_le32(uint8_t *p, uint32_t v);

#endif /* GPM_GUEST_DFRAME_H */
