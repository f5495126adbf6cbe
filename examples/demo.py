"""The pandagpm demo (``make demo``, ``make demo ARCH=aarch64``).

Boots a generic image (x86_64 unless ``--arch`` or ``$ARCH`` says
aarch64, arm, i386, mipsel or mips64el) from its ``root`` snapshot under
stock QEMU, injects the guest daemon with linjector (no cooperation from the guest), loads the
``etc_count`` guest plugin and prints what it counted, then loads
``hello`` and shows its conversation with the host.
"""

import argparse
import os
import queue
import sys
import time

from pandagpm import channel_recv
from pandagpm.host import Panda

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--arch", default=os.environ.get("ARCH") or "x86_64",
                    help="guest architecture: x86_64 (default), aarch64, "
                    "arm, i386, mipsel or mips64el")
args = parser.parse_args()
print(f"pandagpm demo on a generic {args.arch} guest")
panda = Panda(generic=args.arch)


def get(q, what, timeout=60):
    """The next message from a callback, or a clear failure."""
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        sys.exit(f"demo: no {what} from the guest within {timeout} s")


@panda.queue_blocking
def demo():
    panda.revert_sync("root")

    # Callbacks run while the guest is stopped: hand messages to this
    # thread instead of waiting in them.
    counts = queue.Queue()

    @channel_recv
    def receive_etc_count(channel_id: int, msg: bytes):
        counts.put(int.from_bytes(msg[:4], "little"))

    t0 = time.monotonic()
    panda.load_guest_plugin("etc_count", receive_etc_count)
    count = get(counts, "etc_count result")
    print(f"Guest /etc file count: {count}")
    print(f"  (first message {time.monotonic() - t0:.2f} s after "
          "load_guest_plugin, daemon injection included)")
    shell = panda.run_serial_cmd("ls -A /etc | wc -l").strip()
    print(f"  the guest shell says: ls -A /etc | wc -l = {shell}")

    said = queue.Queue()

    @channel_recv
    def receive_hello(channel_id: int, msg: str):
        said.put(msg)

    print("Loading the hello plugin:")
    chan = panda.load_guest_plugin("hello", receive_hello)
    print(f"  guest -> host: {get(said, 'greeting')}")
    print(f"  guest -> host: {get(said, 'lucky number')}")
    number = 31337
    chan.write(number.to_bytes(4, "little"))
    print(f"  host -> guest: {number} (a little-endian u32)")
    print(f"  guest -> host: {get(said, 'answer')}")
    panda.end_analysis()


panda.run(timeout=600)
