/*
 * x86_64.c - the hypercall of x86_64 guests.
 *
 * The CPUID instruction lives in its own section ".gpmhc", which the
 * guest Makefile places at GPM_HC_ADDR_X86_64 (gpm/abi.h). The stock-QEMU
 * host sets one breakpoint there; when it hits, the host writes the result
 * into RAX and advances RIP by 2 (the length of CPUID), so the following
 * "ret" returns to gpm_hc(). Under PANDA the CPUID itself is caught and
 * the address does not matter.
 */
#include "gpm_guest.h"

#ifndef __x86_64__
#error "arch/x86_64.c built for another architecture"
#endif

/* The stub: exactly "cpuid; ret" (0f a2 c3) at the start of .gpmhc. */
__asm__(".pushsection .gpmhc,\"ax\",@progbits\n"
        ".globl gpm__hc_stub\n"
        ".type gpm__hc_stub,@function\n"
        "gpm__hc_stub:\n"
        "\tcpuid\n"
        "\tret\n"
        ".size gpm__hc_stub, .-gpm__hc_stub\n"
        ".popsection\n");

uint64_t gpm_hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2)
{
    register uint64_t rax __asm__("rax") = GPM_HC_MAGIC;
    register uint64_t rbx __asm__("rbx") = op;
    register uint64_t rcx __asm__("rcx") = chan;
    register uint64_t rdx __asm__("rdx") = a1;
    register uint64_t rdi __asm__("rdi") = a2;

    /*
     * The call pushes a return address, so step over the 128-byte red
     * zone first: the compiler may keep locals there. A real CPUID (no
     * host) overwrites RAX, RBX, RCX and RDX; the host writes only RAX.
     * Buffers passed by pointer are read or written by the host, hence
     * the memory clobber.
     */
    __asm__ volatile("lea -128(%%rsp), %%rsp\n\t"
                     "call gpm__hc_stub\n\t"
                     "lea 128(%%rsp), %%rsp"
                     : "+r"(rax), "+r"(rbx), "+r"(rcx), "+r"(rdx), "+r"(rdi)
                     :
                     : "memory");
    return rax;
}
