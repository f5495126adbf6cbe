#!/usr/bin/env python3
"""The pypanda walkthrough: count the entries of /etc with a guest plugin.

As written this runs under real PANDA through pypanda, on pandagpm's
generic x86_64 image (built from Debian packages) with a ``root``
snapshot that PANDA saved itself: ``make panda`` builds PANDA and
installs pandare. Three ``Panda`` lines are possible; nothing else
changes:

    from pandagpm.pypanda import Panda  # PANDA (pypanda), pandagpm's image
    from pandare import Panda           # PANDA with PANDA's own generic
                                        # image (downloads it on first use)
    from pandagpm.host import Panda     # stock QEMU through its gdbstub

The guest plugin ``etc_count`` sends the number of entries of /etc as a
little-endian u32 on its channel; the script checks it against
``ls -A /etc | wc -l`` run on the serial console.
"""

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))

from pandagpm.pypanda import Panda  # noqa: E402  (the one line to switch)

import pandagpm  # noqa: E402
from pandagpm import channel_recv  # noqa: E402

panda = Panda(generic="x86_64")

counted = threading.Event()
result = {}


@channel_recv
def receive_etc_count(channel_id: int, msg: bytes):
    # Runs on the emulator thread with the guest stopped: be quick.
    result["count"] = int.from_bytes(msg[:4], "little")
    result["channel"] = channel_id
    counted.set()


@panda.queue_blocking
def run_cmd():
    panda.revert_sync("root")
    # linjector starts the guest daemon by hijacking the next process that
    # makes a system call. Right after the revert the guest may be idle
    # (its shell waits on the console), so leave it a process that will
    # make some in a moment. (The walkthrough's `panda.run_serial_cmd("cat")`
    # played this part, but never ended.)
    panda.run_serial_cmd("(sleep 1; ls -A /etc >/dev/null) &")
    # Channels made before a revert belong to the old guest state, so the
    # plugin is loaded after it. The stock-QEMU host starts the daemon
    # before this returns; on PANDA, the injector starts it in the
    # background.
    pandagpm.load_guest_plugin(panda, "etc_count", receive_etc_count)
    expected = int(panda.run_serial_cmd("ls -A /etc | wc -l").split()[-1])
    ok = counted.wait(60)
    if not ok:
        print("etc_count: no answer from the guest within 60 s")
    else:
        print(f"etc_count on channel {result['channel']}: /etc has "
              f"{result['count']} entries (the shell says {expected})")
    result["ok"] = ok and result["count"] == expected
    panda.end_analysis()


panda.run()
sys.exit(0 if result.get("ok") else 1)
