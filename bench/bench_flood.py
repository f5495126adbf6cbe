"""Host memory while a guest floods a channel nobody reads.

The host process's RSS (VmRSS of this Python process, which holds the
core and the gdbstub host) is sampled every 20 ms before, during and after
each case; QEMU's RSS is sampled too (it includes the guest RAM it
touched, so it is context, not a bound).

Cases (the guest runs ``gpm_bench -c NAME flood 1MiB TOTAL``: raw WRITE
hypercalls of 1 MiB, whatever the host answers, counting the answers):

* ``norecv``: a channel that exists in the core but has no receiver
  (``Manager.allocate_channel(name)`` without a callback). Documented: the
  guest gets EPIPE, nothing is kept.
* ``buffered``: a ``Channel`` opened without a callback, never read.
  Documented: it buffers up to DEFAULT_BUFFER_LIMIT (16 MiB), then drops
  and counts (``ChannelOverflow`` on the next read).
* ``h2g``: the other direction: the host queues 1 MiB messages for a
  channel the guest never reads, until the core refuses (QueueFull).
  Documented: 64 MiB per channel, 256 MiB in all (gpm/manager.h).

The baseline of each figure is the documented bound.
"""

import gc
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

MiB = 1 << 20
TOTAL = int(os.environ.get("GPM_BENCH_FLOOD_MIB", "256")) * MiB
CORE_QUEUE_LIMIT = 64 * MiB  # gpm/manager.h: queue_limit default
CORE_TOTAL_LIMIT = 256 * MiB  # gpm/manager.h: total_queue_limit default


class Sampler:
    """Samples RSS (KiB) of this process and of QEMU in a thread."""

    def __init__(self, qemu_pid):
        self.qemu_pid = qemu_pid
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.02):
            self.samples.append((time.monotonic(), C.rss_kib(),
                                 C.rss_kib(self.qemu_pid)))

    def window(self, t0, t1):
        xs = [s for s in self.samples if t0 <= s[0] <= t1]
        return (max((s[1] for s in xs), default=C.rss_kib()),
                max((s[2] for s in xs), default=0))

    def close(self):
        self.stop.set()
        self.thread.join(2)


def settle():
    gc.collect()
    time.sleep(0.3)
    return C.rss_kib()


def flood(p, name):
    out = p.run_serial_cmd(
        f"{C.GUEST_PATH} -c {name} flood {MiB} {TOTAL}; echo rc=$?",
        timeout=600)
    if "rc=0" not in out or "GPMBENCH flood" not in out:
        raise RuntimeError(f"flood on {name} failed: {out!r}")
    return C.parse_kv(out.split("GPMBENCH flood", 1)[1])


def main():
    from pandagpm.channels import DEFAULT_BUFFER_LIMIT
    from pandagpm.errors import QueueFull

    C.build_guest_bench()
    res = C.Results("bench_flood",
                    "Host RSS while a guest floods a channel nobody reads")
    # The hypercall path itself: no rings (bench_ring compares both).
    p = C.start_panda(rings=False)
    sampler = Sampler(p.machine.pid)
    cases = {}
    try:
        res.context["other_qemus"] = C.other_qemus(p.machine.pid)
        C.copy_bench(p)
        mgr = p.manager

        # 1. A channel with no receiver at all.
        before = settle()
        cid = mgr.allocate_channel("flood_norecv")
        C.progress(f"flood {TOTAL // MiB} MiB into a channel with no "
                   "receiver")
        t0 = time.monotonic()
        kv = flood(p, "flood_norecv")
        t1 = time.monotonic()
        during, qemu = sampler.window(t0, t1)
        mgr.close(cid)
        cases["norecv"] = (before, during, settle(), qemu, kv, t1 - t0)

        # 2. A Channel without callback that nobody reads.
        before = settle()
        chan = p.gpm.open_channel("flood_buf")
        C.progress(f"flood {TOTAL // MiB} MiB into a buffered Channel "
                   "nobody reads")
        st0 = mgr.stats()
        t0 = time.monotonic()
        kv = flood(p, "flood_buf")
        t1 = time.monotonic()
        during, qemu = sampler.window(t0, t1)
        st1 = mgr.stats()
        buffered, lost = chan._buf.size, chan._buf.lost
        p.gpm.close_channel(chan.id)
        del chan  # the buffer goes with the last reference
        kv["buffered"], kv["lost"] = buffered, lost
        kv["core_bytes"] = st1["bytes_from_guest"] - st0["bytes_from_guest"]
        cases["buffered"] = (before, during, settle(), qemu, kv, t1 - t0)

        # 3. Host -> guest: queue until the core refuses.
        before = settle()
        chan = p.gpm.open_channel("flood_h2g", lambda cid, data: None)
        C.progress("queue 1 MiB messages host->guest until QueueFull")
        msg = b"\x5a" * MiB
        t0 = time.monotonic()
        n = 0
        refused = None
        while n < 10 * CORE_TOTAL_LIMIT // MiB:
            try:
                chan.write(msg)
                n += 1
            except QueueFull as err:
                refused = err
                break
        queued = mgr.stats()["queued_bytes"]
        time.sleep(0.2)
        t1 = time.monotonic()
        during, qemu = sampler.window(t0, t1)
        p.gpm.close_channel(chan.id)
        del chan, msg
        cases["h2g"] = (before, during, settle(), qemu,
                        {"messages": n, "queued": queued,
                         "refused": type(refused).__name__}, t1 - t0)
    finally:
        sampler.close()
        C.close_panda(p)

    def mib(kib):
        return kib / 1024

    def rss_detail(c):
        return (f"RSS before {mib(c[0]):.1f}, during (max) {mib(c[1]):.1f}, "
                f"after {mib(c[2]):.1f} MiB; QEMU RSS max {mib(c[3]):.0f} "
                "MiB")

    c = cases["norecv"]
    kv = c[4]
    res.figure("flood_norecv_rss_growth_MiB", mib(c[1] - c[0]), "MiB",
               "documented: no queue guest->host, writes to a channel "
               "without receiver get EPIPE (0 MiB kept)",
               f"{kv['calls']} WRITEs of 1 MiB in {c[5]:.1f} s: "
               f"{kv['epipe']} EPIPE, {kv['accepted']} bytes accepted, "
               f"{kv['other']} other errors; " + rss_detail(c))
    c = cases["buffered"]
    kv = c[4]
    res.figure("flood_buffered_rss_growth_MiB", mib(c[1] - c[0]), "MiB",
               f"documented: Channel buffer limit "
               f"{DEFAULT_BUFFER_LIMIT / MiB:g} MiB (plus one write at most), "
               "then the channel pauses and guest writes get EBUSY",
               f"{kv['calls']} WRITEs of 1 MiB in {c[5]:.1f} s: guest saw "
               f"{kv['accepted']} bytes accepted, {kv['epipe']} EPIPE, "
               f"{kv['ebusy']} EBUSY; core passed {kv['core_bytes']} bytes "
               f"on; the Channel buffered {kv['buffered']} and dropped "
               f"{kv['lost']}; " + rss_detail(c))
    c = cases["h2g"]
    kv = c[4]
    res.figure("flood_h2g_rss_growth_MiB", mib(c[1] - c[0]), "MiB",
               f"documented: core queue limit {CORE_QUEUE_LIMIT / MiB:g} MiB "
               f"per channel, {CORE_TOTAL_LIMIT / MiB:g} MiB in all",
               f"{kv['messages']} messages of 1 MiB queued, then "
               f"{kv['refused']}; core reported {kv['queued']} bytes queued; "
               + rss_detail(c))
    res.figure("flood_rss_after_MiB", mib(cases["h2g"][2]), "MiB",
               f"RSS before the first flood {mib(cases['norecv'][0]):.1f} "
               "MiB", "after all three cases and closing their channels")
    res.note("RSS is VmRSS of the Python process running the benchmark "
             "(it holds pandagpm's C core and gdbstub host); 'during' is "
             "the largest 20 ms sample while the case ran. Freed memory "
             "may stay in the allocator, so 'after' can stay above "
             "'before' without a leak.")
    res.save()


if __name__ == "__main__":
    main()
