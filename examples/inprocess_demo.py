#!/usr/bin/env python3
"""IN-PROCESS demo of pandagpm channels: no emulator, no real guest.

A fake CPU written in Python (pandagpm.testing.FakeCPU) plays the guest: it
puts the hypercall registers in place and the host feeds them through the
real C dispatcher with GuestPluginManager.dispatch(), exactly as the QEMU
and PANDA hosts do when a real guest executes its hypercall instruction.

  1. the "guest" looks its channel up by name and WRITEs a line; the line
     arrives in a @channel_recv callback on the host, decoded as str;
  2. the host writes to the channel; the "guest" READs it in two pieces,
     showing that a short read keeps the rest of the message queued;
  3. the "guest" READs into a page it has never written (read-only to the
     host): the host refuses with EAGAIN and keeps the message queued.

The real demo, with a guest plugin running under QEMU, is `make demo`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))

import pandagpm  # noqa: E402
from pandagpm.testing import PAGE_SIZE, FakeGuest  # noqa: E402


@pandagpm.channel_recv
def on_message(channel_id: int, msg: str):
    print(f"host <- guest on channel {channel_id}: {msg!r}")


def main():
    gpm = pandagpm.GuestPluginManager(arch="x86_64")
    chan = gpm.open_channel("demo", callback=on_message)
    guest = FakeGuest(gpm)  # an in-process stand-in for a guest program

    cid = guest.get_channel("demo")
    print(f"guest looked up 'demo': channel {cid}")
    guest.start(cid)
    guest.write(cid, "hello from the (fake) guest".encode())

    chan.write(b"hello from the host")
    print(f"guest -> read(5):   {guest.read(cid, 5)!r}")
    print(f"guest -> read(100): {guest.read(cid, 100)!r}")

    chan.write(b"queued")
    page = guest.buf + 16 * PAGE_SIZE
    guest.cpu.protect(page, PAGE_SIZE, writable=False)
    result = guest.call(pandagpm._gpm.HC_OP_READ, cid, page, 100)
    print(f"guest READ into a read-only page -> {result} (EAGAIN), "
          f"still queued: {chan.pending}")
    print(f"guest -> read(100) from a good buffer: {guest.read(cid, 100)!r}")
    print("stats:", gpm.stats())


if __name__ == "__main__":
    main()
