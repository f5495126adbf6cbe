"""The product walkthrough: count the entries of the guest's /etc.

Runs on pandagpm's stock-QEMU host. The same script runs under PANDA by
changing the first import to ``from pandare import Panda`` (see
pypanda_etc_count.py).
"""

from pandagpm.host import Panda

import pandagpm
from pandagpm import channel_recv

panda = Panda(generic="x86_64")


@channel_recv
def receive_etc_count(channel_id: int, msg: bytes):
    count = int.from_bytes(msg, "little")
    print(f"Guest /etc file count: {count}")
    panda.end_analysis()


@panda.queue_blocking
def run_cmd():
    panda.revert_sync("root")
    pandagpm.load_guest_plugin(panda, "etc_count", receive_etc_count)


panda.run(timeout=300)
