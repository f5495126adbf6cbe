"""Run shell commands in the guest through the guest_shell plugin.

guest_shell reads one command per message (a little-endian u32 length,
then the command) and answers with one message: i32 status, u32 stdout
length, u32 stderr length, u32 flags, then the two outputs. See
guest/plugins/guest_shell/.

    python examples/guest_shell.py 'uname -a' 'ls /proc | wc -l'
"""

import queue
import struct
import sys

from pandagpm import channel_recv
from pandagpm.host import Panda

commands = sys.argv[1:] or ["uname -a", "id", "ls -A /etc", "exit 3"]
panda = Panda(generic="x86_64")


def run(chan, replies, cmd, timeout=60):
    """Sends ``cmd``; returns (status, stdout, stderr)."""
    data = cmd.encode()
    chan.write(struct.pack("<I", len(data)) + data)
    reply = replies.get(timeout=timeout)
    status, out_len, err_len, _flags = struct.unpack_from("<iIII", reply)
    out = reply[16:16 + out_len].decode(errors="replace")
    err = reply[16 + out_len:16 + out_len + err_len].decode(errors="replace")
    return status, out, err


@panda.queue_blocking
def shell():
    panda.revert_sync("root")
    replies = queue.Queue()
    pending = bytearray()

    @channel_recv
    def on_reply(channel_id: int, msg: bytes):
        # A reply may arrive in several pieces; reassemble by its header.
        pending.extend(msg)
        while len(pending) >= 16:
            _, out_len, err_len, _ = struct.unpack_from("<iIII", pending)
            size = 16 + out_len + err_len
            if len(pending) < size:
                break
            replies.put(bytes(pending[:size]))
            del pending[:size]

    chan = panda.load_guest_plugin("guest_shell", on_reply)
    for cmd in commands:
        status, out, err = run(chan, replies, cmd)
        print(f"$ {cmd}    (exit status {status})")
        if out:
            print(out, end="" if out.endswith("\n") else "\n")
        if err:
            print(f"[stderr] {err}", end="" if err.endswith("\n") else "\n")
    chan.write(struct.pack("<I", 0))  # an empty command ends guest_shell
    panda.end_analysis()


panda.run(timeout=300)
