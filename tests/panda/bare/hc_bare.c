/*
 * hc_bare.c - a bare-metal program that issues pandagpm hypercalls through
 * the guest library's own gpm_hc() (guest/lib/arch/<arch>.c), for PANDA's
 * ARM targets without a Linux image (tests/test_panda_real_arm.py) and,
 * the very same binary, stock QEMU with a gdbstub breakpoint on the stub
 * (tests/test_guest_cross.py).
 *
 * Built static and freestanding for QEMU's ARM "virt" machine (RAM at
 * 0x40000000, a PL011 UART at 0x09000000) or its MIPS "malta" board (in
 * kseg0, the ISA COM1 16550 at physical 0x180003f8), loaded with -kernel,
 * it runs with the MMU off or unmapped (virtual = physical, plus
 * 0x80000000 in kseg0), so the host's reads of the channel names it
 * passes are plain memory reads. Each result is printed
 * on the UART as "NAME=HEX" (the raw return register, zero-extended), then
 * "DONE". Under PANDA without guest_plugin_manager every result is the
 * magic (the trap leaves the registers alone); with it, or on stock QEMU
 * with guest/tests/qemu_user_host.py's QemuSystemHost, the host's answers.
 */
#include <stddef.h>
#include <stdint.h>

#include "gpm_guest.h"

#if defined(__mips__)
/* Its data register through kseg1 (uncached), sign-extended on n64. */
#define UART_PUT(c)                                                            \
    (*(volatile uint8_t *)(intptr_t)(int32_t)0xb80003f8u = (uint8_t)(c))
#else
#define UART_PUT(c) (*(volatile uint32_t *)0x09000000u = (uint32_t)(c))
#endif

static void put_str(const char *s)
{
    while (*s)
        UART_PUT((unsigned char)*s++);
}

static void put_result(const char *name, uint64_t v)
{
    char hex[17];
    int i;

    for (i = 15; i >= 0; i--) {
        hex[i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    }
    hex[16] = '\0';
    put_str(name);
    put_str("=");
    put_str(hex);
    put_str("\n");
}

static const char daemon_name[] = "guest_daemon";
static const char unknown_name[] = "no-such-channel";

void gpm_bare_main(void);

void gpm_bare_main(void)
{
    uint64_t daemon;

    put_str("START\n");
    daemon = gpm_hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)daemon_name,
                    sizeof(daemon_name) - 1);
    put_result("get_daemon", daemon);
    put_result("get_unknown",
               gpm_hc(GPM_HC_OP_GET_CHANNEL, 0, (uintptr_t)unknown_name,
                      sizeof(unknown_name) - 1));
    put_result("get_manager", gpm_hc(GPM_HC_OP_GET_MANAGER, 0, 0, 0));
    put_result("start_daemon", gpm_hc(GPM_HC_OP_START, daemon, 0, 0));
    put_result("write_unknown",
               gpm_hc(GPM_HC_OP_WRITE, 0x7fffffffu, (uintptr_t)daemon_name, 4));
    put_result("op_99", gpm_hc(99, 0, 0, 0));
    put_str("DONE\n");
}
