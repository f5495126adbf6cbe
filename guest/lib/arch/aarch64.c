/*
 * aarch64.c - the hypercall of AArch64 guests.
 *
 * The stub is PANDA's AArch64 hypercall instruction, "msr S0_0_c5_c0_0,
 * xzr" (0xd500501f: a system-register write with op0 0 and CRn 5, which
 * PANDA's translate-a64.c turns into its guest-hypercall callback with
 * the PC already on the next instruction), followed by "ret". It lives in
 * its own section ".gpmhc", which the guest Makefile places at
 * GPM_HC_ADDR_AARCH64 (gpm/abi.h). Under PANDA the instruction runs and
 * the callback finds magic, op, channel, arg1 and arg2 in x0-x4 and
 * leaves the result in x0. The stock-QEMU host sets a breakpoint on the
 * stub instead, writes x0 and moves the PC 4 bytes on, so the instruction
 * (an undefined one on a real CPU) never executes there.
 */
#include "gpm_guest.h"

#ifndef __aarch64__
#error "arch/aarch64.c built for another architecture"
#endif

/* The stub: exactly 1f 50 00 d5 (the trap), then "ret". */
__asm__(".pushsection .gpmhc,\"ax\",%progbits\n"
        ".globl gpm__hc_stub\n"
        ".type gpm__hc_stub,%function\n"
        "gpm__hc_stub:\n"
        "\t.inst 0xd500501f\n"
        "\tret\n"
        ".size gpm__hc_stub, .-gpm__hc_stub\n"
        ".popsection\n");

void gpm__hc_stub(void);

uint64_t gpm_hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2)
{
    register uint64_t x0 __asm__("x0") = GPM_HC_MAGIC;
    register uint64_t x1 __asm__("x1") = op;
    register uint64_t x2 __asm__("x2") = chan;
    register uint64_t x3 __asm__("x3") = a1;
    register uint64_t x4 __asm__("x4") = a2;

    /*
     * The stub is far from the code (a "bl" reaches 128 MiB and would need
     * a linker veneer that clobbers x16/x17), so call it through a
     * register. The call clobbers x30 only; the host writes only x0.
     * Buffers passed by pointer are read or written by the host, hence
     * the memory clobber.
     */
    __asm__ volatile("blr %5"
                     : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3), "+r"(x4)
                     : "r"(gpm__hc_stub)
                     : "x30", "memory");
    return x0;
}
