/*
 * i386.c - the hypercall of 32-bit x86 guests.
 *
 * As on x86_64 the trap is PANDA's CPUID hypercall: the stub "cpuid; ret"
 * lives in its own section ".gpmhc", which the guest Makefile places at
 * GPM_HC_ADDR_I386 (gpm/abi.h). Under PANDA the CPUID is caught and the
 * callback finds magic, op, channel, arg1 and arg2 in EAX, EBX, ECX, EDX
 * and EDI and leaves the result in EAX. The stock-QEMU host sets one
 * breakpoint on the stub instead, writes EAX and advances EIP by 2 (the
 * length of CPUID), so the "ret" returns to gpm_hc().
 *
 * Registers are 32 bits wide: each 64-bit argument is truncated, and the
 * result is zero-extended (gpm_hc_err() reads it as a 32-bit value).
 */
#include "gpm_guest.h"

#if !defined(__i386__)
#error "arch/i386.c built for another architecture"
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
    register uint32_t eax __asm__("eax") = GPM_HC_MAGIC;
    register uint32_t ebx __asm__("ebx") = (uint32_t)op;
    register uint32_t ecx __asm__("ecx") = (uint32_t)chan;
    register uint32_t edx __asm__("edx") = (uint32_t)a1;
    register uint32_t edi __asm__("edi") = (uint32_t)a2;

    /*
     * The i386 ABI has no red zone, so the call's return address cannot
     * overwrite locals. A real CPUID (no host) overwrites EAX, EBX, ECX
     * and EDX; the host writes only EAX. Buffers passed by pointer are
     * read or written by the host, hence the memory clobber.
     */
    __asm__ volatile("call gpm__hc_stub"
                     : "+r"(eax), "+r"(ebx), "+r"(ecx), "+r"(edx), "+r"(edi)
                     :
                     : "memory");
    return eax;
}
