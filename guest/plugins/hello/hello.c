/*
 * hello.c - the smallest two-way guest plugin.
 *
 * On the channel "hello" it sends, as separate writes:
 *   1. "hello from the guest!"
 *   2. "today's lucky number is: 3"
 * then waits for a little-endian u32 N from the host and sends
 *   3. "the number you sent the guest was: N"
 * and exits with status 0. The texts carry no NUL and no newline.
 */
#include <stdint.h>
#include <stdio.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("hello", GPM_GUEST_VERSION,
                      "Says hello and echoes a number sent by the host");

int main(void)
{
    unsigned char le[4];
    char msg[64];
    gpm_chan_t chan;
    uint32_t n;

    if (gpm_channel_open("hello", &chan) < 0)
        return 2;
    if (gpm_write_str(chan, "hello from the guest!") < 0 ||
        gpm_write_str(chan, "today's lucky number is: 3") < 0)
        return 1;
    if (gpm_read_exact(chan, le, sizeof(le)) < 0)
        return 1;
    n = (uint32_t)le[0] | ((uint32_t)le[1] << 8) | ((uint32_t)le[2] << 16) |
        ((uint32_t)le[3] << 24);
    snprintf(msg, sizeof(msg), "the number you sent the guest was: %u",
             (unsigned)n);
    if (gpm_write_str(chan, msg) < 0)
        return 1;
    gpm_channel_stop(chan);
    return 0;
}
