/*
 * gpm/ring_abi.h - the layout of the shared-memory channel rings, shared by
 * the host and the guest library (plain C99, no dependencies).
 *
 * A ring pair moves one channel's bytes in both directions without a
 * hypercall, so without stopping the VM. Both live in guest-physical memory
 * the guest kernel never uses (the generic images reserve a region with
 * memmap= or mem=, like the doorbell page); the host reaches it through
 * QEMU's RAM file, the guest maps it from /dev/mem. One hypercall,
 * GPM_HC_OP_RING_ATTACH, gives a channel its pair; every later byte moves
 * through memory. See docs/rings.md for the design and why reserved memory
 * rather than pinned user pages.
 *
 * A pair is GPM_RING_SLOT_SIZE bytes: a 4 KiB header, then the
 * guest -> host data area, then the host -> guest data area, each
 * GPM_RING_DATA_SIZE bytes (a power of two). Every field is a 32-bit
 * little-endian word at a fixed offset, each index on its own 64-byte line.
 * Indices are free-running byte counters (positions are index modulo the
 * data size), advanced by whole records, so they are always multiples of 8.
 *
 * A record is an 8-byte header word pair, then its payload padded to a
 * multiple of 8. The payload may wrap around the end of the data area; the
 * header never does (all sizes are multiples of 8). The first header word
 * holds the payload length (low 24 bits, at most GPM_RING_MAX_FRAG) and
 * GPM_RING_MORE when the next record continues the same message; the second
 * word is zero. A message (one guest WRITE of at most GPM_HC_MAX_TRANSFER
 * bytes, or one host message) is one or more records.
 *
 * The guest writes GPM_RING_OFF_READY when it first reads through the
 * ring; until then host bytes stay queued for READ hypercalls. Host
 * records count as delivered only once the guest's tail passes them.
 *
 * Each index has exactly one writer: the producer of a direction writes its
 * head, the consumer its tail. The producer writes payload and header,
 * then (release) the head; the consumer reads the head, then (acquire) the
 * record, then (release) the tail. The host keeps its own copy of the
 * indices it writes and never trusts the guest's view of them; every value
 * it reads (the guest's head and tail, record headers) is checked against
 * the ring's bounds, and a ring that breaks a rule is shut: its status
 * word turns negative and only that channel gets the error.
 */
#ifndef GPM_RING_ABI_H
#define GPM_RING_ABI_H

#define GPM_RING_MAGIC     0x474e5247u /* "GRNG" read as little-endian */
#define GPM_RING_VERSION   1u
#define GPM_RING_HDR_SIZE  4096u
#define GPM_RING_DATA_SIZE (256u << 10)
#define GPM_RING_SLOT_SIZE (GPM_RING_HDR_SIZE + 2u * GPM_RING_DATA_SIZE)
/* The largest record payload; larger messages are split into records. */
#define GPM_RING_MAX_FRAG  (64u << 10)
#define GPM_RING_REC_HDR   8u

/* Record header bits (first word). */
#define GPM_RING_LEN_MASK 0x00ffffffu
#define GPM_RING_MORE     0x80000000u

/* Byte offsets of the header words. */
#define GPM_RING_OFF_MAGIC    0u   /* host: GPM_RING_MAGIC once ready */
#define GPM_RING_OFF_VERSION  4u   /* host: GPM_RING_VERSION */
#define GPM_RING_OFF_CHANNEL  8u   /* host: the channel id */
#define GPM_RING_OFF_DATASIZE 12u  /* host: GPM_RING_DATA_SIZE */
#define GPM_RING_OFF_MAXFRAG  16u  /* host: GPM_RING_MAX_FRAG */
#define GPM_RING_OFF_G2H_HEAD 64u  /* guest writes */
#define GPM_RING_OFF_G2H_TAIL 128u /* host writes */
#define GPM_RING_OFF_H2G_HEAD 192u /* host writes */
#define GPM_RING_OFF_H2G_TAIL 256u /* guest writes */
/*
 * Host writes: 0 while the ring serves, else a negative GPM_HC_E* value:
 * GPM_HC_EPIPE while the channel has no receiver (transient), GPM_HC_EPROTO
 * once the guest broke the ring, GPM_HC_EBADF once the channel is gone.
 */
#define GPM_RING_OFF_STATUS   320u
/*
 * Guest writes GPM_RING_MAGIC once it has mapped and checked the pair;
 * until then the host moves no host -> guest bytes into it (they stay
 * queued for READ), so a guest that could not map it loses nothing.
 */
#define GPM_RING_OFF_READY    384u
/*
 * Guest writes, just before STOP: how many bytes of the host record at
 * its tail it has already read (0..its length), so the host does not send
 * them again to the channel's next reader.
 */
#define GPM_RING_OFF_H2G_PART 448u
#define GPM_RING_OFF_G2H_DATA GPM_RING_HDR_SIZE
#define GPM_RING_OFF_H2G_DATA (GPM_RING_HDR_SIZE + GPM_RING_DATA_SIZE)

/* A record's size in the ring for a payload of @len bytes. */
#define GPM_RING_REC_SPACE(len) (GPM_RING_REC_HDR + (((len) + 7u) & ~7u))

#endif /* GPM_RING_ABI_H */
