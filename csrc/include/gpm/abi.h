/*
 * gpm/abi.h - the hypercall ABI shared by the host and the guest.
 *
 * This header is plain C99 with no dependencies so that the guest library,
 * the guest daemon and the host core all compile the same definitions.
 *
 * A hypercall is a CPUID (x86), or the arch's own trap, with GPM_HC_MAGIC in
 * the first hypercall register. The five registers carry, in order: magic,
 * op, channel id, arg1, arg2. The host writes the result into the return
 * register (see gpm/arch.h for the registers of each architecture).
 *
 * Results are unsigned register values. A result in the range
 * [-4095, -1], read as a signed value of the guest's word size, is an error
 * code from the GPM_HC_E* list below; anything else is a success value.
 */
#ifndef GPM_ABI_H
#define GPM_ABI_H

#include <stdint.h>

/* The value in the first hypercall register that marks a hypercall. */
#define GPM_HC_MAGIC 0x1337c0d3u

/*
 * Every guest binary places its hypercall stub (the arch's trap
 * instruction followed by a return) at a fixed virtual address, in a
 * section of its own named ".gpmhc", so the stock-QEMU host catches all of
 * them with one breakpoint and never lets the trap execute. PANDA traps
 * the instruction itself (CPUID on x86, a coprocessor 7 write on ARM,
 * "msr S0_0_c5_c0_0, xzr" on AArch64, a conditional move to $zero on
 * MIPS) and ignores the address.
 *
 * This is the only place the addresses are written down: guest/Makefile
 * reads GPM_HC_ADDR_<ARCH> (GUEST_ARCH in upper case) from this header to
 * place the section, and the hosts' per-arch tables use the same macros.
 * A new architecture adds its line here. Each value must be a plain
 * hexadecimal constant with an optional "u" suffix, page-aligned, below
 * the arch's user-space limit and away from where its linker puts text,
 * data and the heap of a static non-PIE executable.
 */
#define GPM_HC_ADDR_X86_64   0x10000000u
#define GPM_HC_ADDR_I386     0x10000000u
#define GPM_HC_ADDR_AARCH64  0x10000000u
#define GPM_HC_ADDR_ARM      0x10000000u
/*
 * MIPS: a static non-PIE executable's text starts at 0x400000 (both
 * ABIs), its data and heap follow; 0x10000000 is free for both too.
 */
#define GPM_HC_ADDR_MIPSEL   0x10000000u
#define GPM_HC_ADDR_MIPS64EL 0x10000000u
/* Big-endian MIPS: the same layout (no Debian port; docs/arch.md). */
#define GPM_HC_ADDR_MIPS     0x10000000u
#define GPM_HC_ADDR_MIPS64   0x10000000u
#define GPM_HC_SECTION       ".gpmhc"

/* The name the x86 hosts used before there was more than one arch. */
#define GPM_HC_X86_ADDR GPM_HC_ADDR_X86_64

/* Hypercall operations (the second register). */
enum gpm_hc_op {
    GPM_HC_OP_START = 1,       /* chan: the guest starts using chan. -> 0 */
    GPM_HC_OP_STOP = 2,        /* chan: the guest stops using chan. -> 0 */
    GPM_HC_OP_READ = 3,        /* chan, buf, maxlen -> bytes copied, 0 = none */
    GPM_HC_OP_WRITE = 4,       /* chan, buf, len -> bytes taken */
    GPM_HC_OP_ERROR = 5,       /* chan, msg, len: report an error. -> 0 */
    GPM_HC_OP_GET_MANAGER = 6, /* -> id of a new anonymous channel */
    GPM_HC_OP_GET_CHANNEL = 7, /* name, len -> id, or GPM_HC_NOT_FOUND */
    GPM_HC_OP_GET_DOORBELL = 8, /* -> guest-physical address of the
                                 * doorbell page, or GPM_HC_ENOSYS */
    GPM_HC_OP_RING_ATTACH = 9,  /* chan -> guest-physical address of the
                                 * channel's ring pair (gpm/ring_abi.h),
                                 * GPM_HC_ENOSYS without rings, GPM_HC_ENOSPC
                                 * when none is free, GPM_HC_EPIPE without a
                                 * receiver: the guest then uses READ and
                                 * WRITE */
};

/*
 * The doorbell page (an extension over the original ABI): one 4 KiB page
 * of guest-physical memory that the guest kernel never uses (the generic
 * image reserves it with memmap=). Slot (id % GPM_DOORBELL_SLOTS), a
 * little-endian u64, counts the messages the host has queued on channel
 * id. A guest that found a READ empty reads its slot, and issues the next
 * READ only once the slot changed: waiting costs it no hypercall, which
 * matters because every hypercall stops the whole VM. Several channels
 * may share a slot; a change then only causes an empty READ. Hosts
 * without a doorbell answer GPM_HC_ENOSYS and the guest polls.
 */
#define GPM_DOORBELL_SLOTS 512u
#define GPM_DOORBELL_SIZE  4096u

/*
 * Error results. The values are the negated Linux errno values, so a guest
 * program can hand them to strerror() after negating them.
 *
 * GPM_HC_NOT_FOUND is what GET_CHANNEL returns for an unknown name; it is
 * -1 for compatibility with the original guest channel library.
 */
#define GPM_HC_NOT_FOUND (-1)
#define GPM_HC_EBADF     (-9)  /* unknown or closed channel id */
#define GPM_HC_EACCES    (-13) /* the channel belongs to another process */
#define GPM_HC_EAGAIN                                                          \
    (-11)                         /* buffer page not writable or not resident: \
                                   * write-touch every page of it and retry */
#define GPM_HC_EFAULT       (-14) /* pointer not mapped (or range wraps) */
#define GPM_HC_EINVAL       (-22) /* bad argument, e.g. zero-length name */
#define GPM_HC_ENOSPC       (-28) /* channel table full */
#define GPM_HC_EPIPE        (-32) /* the host has no receiver on this channel */
#define GPM_HC_ENAMETOOLONG (-36) /* channel name longer than the limit */
#define GPM_HC_ENOSYS       (-38) /* unknown op */
#define GPM_HC_EBUSY        (-16) /* the host cannot take more now: retry */
#define GPM_HC_EPROTO       (-71) /* the guest broke its ring's rules */

/*
 * Limits the host applies to every hypercall. A READ or WRITE longer than
 * GPM_HC_MAX_TRANSFER moves at most that many bytes and reports the count,
 * so the guest loops; lengths are never an error by themselves.
 */
#define GPM_HC_MAX_TRANSFER  (1u << 20)
#define GPM_HC_MAX_NAME      255u
#define GPM_HC_MAX_ERROR_MSG 4096u

#endif /* GPM_ABI_H */
