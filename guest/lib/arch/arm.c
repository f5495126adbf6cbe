/*
 * arm.c - the hypercall of 32-bit ARM guests (ARMv7, armhf).
 *
 * The stub is PANDA's ARM hypercall instruction, a coprocessor 7 register
 * write, "mcr p7, 0, r0, c0, c0, 0" (0xee000710; PANDA's translate.c
 * turns any MCR/MCRR to coprocessor 7 into its guest-hypercall callback,
 * with the PC already on the next instruction), followed by "bx lr". It
 * is assembled in ARM state (Debian's armhf compiler emits Thumb-2 code
 * otherwise) so that the stub's bytes, its length (4) and the CPU state
 * at the breakpoint are the same for every binary; calls reach it with
 * "blx", which switches state. It lives in its own section ".gpmhc",
 * which the guest Makefile places at GPM_HC_ADDR_ARM (gpm/abi.h).
 *
 * Under PANDA the instruction runs and the callback finds magic, op,
 * channel, arg1 and arg2 in r0-r4 and leaves the result in r0. The
 * stock-QEMU host sets a breakpoint on the stub instead, writes r0 and
 * moves the PC 4 bytes on, so the instruction (an undefined one on a
 * real CPU) never executes there.
 *
 * Registers are 32 bits wide: each 64-bit argument is truncated, and the
 * result is zero-extended (gpm_hc_err() reads it as a 32-bit value).
 */
#include "gpm_guest.h"

#if !defined(__arm__) || defined(__aarch64__)
#error "arch/arm.c built for another architecture"
#endif

/* The stub, in ARM state: exactly 10 07 00 ee (the trap), then "bx lr". */
__asm__(".pushsection .gpmhc,\"ax\",%progbits\n"
        ".arm\n"
        ".globl gpm__hc_stub\n"
        ".type gpm__hc_stub,%function\n"
        "gpm__hc_stub:\n"
        "\tmcr p7, 0, r0, c0, c0, 0\n"
        "\tbx lr\n"
        ".size gpm__hc_stub, .-gpm__hc_stub\n"
        ".popsection\n");

void gpm__hc_stub(void);

uint64_t gpm_hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2)
{
    register uint32_t r0 __asm__("r0") = GPM_HC_MAGIC;
    register uint32_t r1 __asm__("r1") = (uint32_t)op;
    register uint32_t r2 __asm__("r2") = (uint32_t)chan;
    register uint32_t r3 __asm__("r3") = (uint32_t)a1;
    register uint32_t r4 __asm__("r4") = (uint32_t)a2;

    /*
     * The stub is far from the code (a "bl" reaches 32 MiB and would need
     * a linker veneer that clobbers ip), so call it through a register;
     * "blx" also enters ARM state from Thumb code. The call clobbers lr
     * only; the host writes only r0. Buffers passed by pointer are read
     * or written by the host, hence the memory clobber.
     */
    __asm__ volatile("blx %5"
                     : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4)
                     : "r"(gpm__hc_stub)
                     : "lr", "memory");
    return r0;
}
