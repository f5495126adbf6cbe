/*
 * crash.c - a guest plugin that dies of a signal (a fault test).
 *
 * Sends "about to crash" on channel "crash", then writes through a null
 * pointer and dies of SIGSEGV. The daemon reports the wait status in its
 * EXITED frame.
 */
#include <signal.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("crash", GPM_GUEST_VERSION,
                      "Says one thing and dies of SIGSEGV (a test)");

int main(void)
{
    volatile int *volatile null = 0;
    gpm_chan_t chan;

    if (gpm_channel_open("crash", &chan) == 0)
        gpm_write_str(chan, "about to crash");
    *null = 1;
    /* Not reached; in case the page is mapped after all. */
    raise(SIGSEGV);
    return 0;
}
