/*
 * hc_bare.c - a bare-metal program that issues pandagpm hypercalls through
 * the guest library's own gpm_hc() (guest/lib/arch/<arch>.c), for PANDA's
 * ARM targets without a Linux image (tests/test_panda_real_arm.py) and,
 * the very same binary, stock QEMU with a gdbstub breakpoint on the stub
 * (tests/test_guest_cross.py).
 *
 * Built static and freestanding for QEMU's "virt" machine (RAM at
 * 0x40000000, a PL011 UART at 0x09000000), loaded with -kernel, it runs
 * with the MMU off (virtual = physical), so the host's reads of the
 * channel names it passes are plain memory reads. Each result is printed
 * on the UART as "NAME=HEX" (the raw return register, zero-extended), then
 * "DONE". Under PANDA without guest_plugin_manager every result is the
 * magic (the trap leaves the registers alone); with it, or on stock QEMU
 * with guest/tests/qemu_user_host.py's QemuSystemHost, the host's answers.
 */
#include <stddef.h>
#include <stdint.h>

#include "gpm_guest.h"

#define UART_DR ((volatile uint32_t *)0x09000000u)

static void put_str(const char *s)
{
    while (*s)
        *UART_DR = (uint32_t)(unsigned char)*s++;
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
