/*
 * mips_hc.h - the hypercall of MIPS guests, shared by the little-endian
 * o32 (mipsel.c) and n64 (mips64el.c) builds: both ABIs pass the same
 * registers and differ only in their width (a C "unsigned long").
 *
 * The stub is PANDA's MIPS hypercall instruction, a conditional move to
 * $zero: "movz $zero, $zero, $zero" (0x0000000a; PANDA's translate.c,
 * gen_cond_move(), turns any MOVN/MOVZ whose destination is register 0
 * into its guest-hypercall callback, and it is a no-op on a real CPU and
 * on stock QEMU), followed by "jr $ra" and its delay slot. It lives in
 * its own section ".gpmhc", which the guest Makefile places at
 * GPM_HC_ADDR_<ARCH> (gpm/abi.h). Under PANDA the instruction runs and
 * the callback finds magic, op, channel, arg1 and arg2 in v0 ($2) and
 * a0-a3 ($4-$7) and leaves the result in v0. The stock-QEMU host sets a
 * breakpoint on the stub instead, writes v0 and moves the PC 4 bytes on
 * (the instruction is not in a delay slot), so it never executes there;
 * without a host it executes as a no-op and v0 keeps the magic.
 *
 * Include once, from the arch's file, after gpm_guest.h.
 */
#ifndef GPM_GUEST_MIPS_HC_H
#define GPM_GUEST_MIPS_HC_H

/* The stub: exactly 0a 00 00 00 (little-endian), then jr $ra; nop. */
__asm__(".pushsection .gpmhc,\"ax\",@progbits\n"
        ".set push\n"
        ".set noreorder\n"
        ".globl gpm__hc_stub\n"
        ".type gpm__hc_stub,@function\n"
        "gpm__hc_stub:\n"
        "\tmovz $0, $0, $0\n"
        "\tjr $31\n"
        "\tnop\n"
        ".size gpm__hc_stub, .-gpm__hc_stub\n"
        ".set pop\n"
        ".popsection\n");

void gpm__hc_stub(void);

uint64_t gpm_hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2)
{
    register unsigned long v0 __asm__("$2") = GPM_HC_MAGIC;
    register unsigned long a0r __asm__("$4") = (unsigned long)op;
    register unsigned long a1r __asm__("$5") = (unsigned long)chan;
    register unsigned long a2r __asm__("$6") = (unsigned long)a1;
    register unsigned long a3r __asm__("$7") = (unsigned long)a2;

    /*
     * A call through a register: the stub is far from the code (a "jal"
     * reaches its own 256 MiB region only). The call clobbers $ra only;
     * the host writes only v0. Buffers passed by pointer are read or
     * written by the host, hence the memory clobber.
     */
    __asm__ volatile("jalr %5"
                     : "+r"(v0), "+r"(a0r), "+r"(a1r), "+r"(a2r), "+r"(a3r)
                     : "r"(gpm__hc_stub)
                     : "$31", "memory");
    return v0;
}

#endif /* GPM_GUEST_MIPS_HC_H */
