"""The shared-memory rings (docs/rings.md) against the hypercall path, in
one run on one guest.

The host offers rings; the same guest program (``gpm_bench``) runs once
as is (it attaches a ring to its channel) and once with ``GPM_RINGS=0``
(the guest library then uses READ/WRITE hypercalls), so every ring figure
has its hypercall baseline from the same minute.

* g2h SIZE: ``gpm_bench g2h SIZE TOTAL``; host clock from the guest's
  "begin" message to the callback that completes TOTAL bytes; VM stops
  counted in the same interval (``GdbHost.stats()["stops"]``).
* h2g SIZE: the host queues TOTAL bytes as SIZE-byte messages, then
  ``gpm_bench h2g SIZE TOTAL`` reads them; host clock from "begin" to the
  guest's "done" message; stops counted in between.
* 64-byte messages guest->host: ``g2h 64 TOTAL``, in messages per second.
* Round trip: ``gpm_bench rt N 64``: the guest writes 64 bytes and waits
  for the answer, which the host's callback writes (64 bytes) at once;
  the figure is the median interval between consecutive callbacks on the
  host clock (one whole round trip each).

MB here is 10^6 bytes.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
SCALE = float(os.environ.get("GPM_BENCH_RING_SCALE", "1"))
REPS = int(os.environ.get("GPM_BENCH_RING_REPS", "3"))
RT_N = int(2000 * SCALE) or 100
MSGS_64 = int(100000 * SCALE) or 1000
# Bytes per direction and size: (ring, hypercall); the hypercall path is
# slow at 4 KiB, so it moves less (its rate does not depend on the total).
def _whole(total, size):
    """@total rounded down to whole @size messages (at least one)."""
    return max(size, int(total) // size * size)


TOTALS = {4 * KiB: (_whole(64 * MiB * SCALE, 4 * KiB),
                    _whole(4 * MiB * SCALE, 4 * KiB)),
          1 * MiB: (_whole(64 * MiB * SCALE, MiB),
                    _whole(32 * MiB * SCALE, MiB))}


class Sink:
    """The channel callback: counts, timestamps, answers round trips."""

    def __init__(self, p):
        self.p = p
        self.chan = None
        self.reset(0)

    def reset(self, want, answer=False):
        self.want = want
        self.answer = answer
        self.got = 0
        self.msgs = 0
        self.t_begin = self.t_full = None
        self.stops_begin = self.stops_full = None
        self.times = []
        self.texts = []
        self.done = threading.Event()

    def stops(self):
        return self.p.gdb.stats()["stops"]

    def __call__(self, cid, data):
        t = time.perf_counter()
        if data[:9] == b"GPMBENCH ":
            text = bytes(data).decode()
            self.texts.append((t, text))
            if text == "GPMBENCH begin":
                self.t_begin = t
                self.stops_begin = self.stops()
            else:
                self.stops_full = self.stops_full or self.stops()
                self.done.set()
            return
        if self.answer:
            self.chan.write(b"\x5a" * 64)
            self.times.append(t)
        self.got += len(data)
        self.msgs += 1
        if self.got >= self.want and self.t_full is None:
            self.t_full = t
            self.stops_full = self.stops()


def run_guest(p, args, rings, timeout=900):
    env = "" if rings else "GPM_RINGS=0 "
    out = p.run_serial_cmd(f"{env}{C.GUEST_PATH} {args}; echo rc=$?",
                           timeout=timeout)
    if "rc=0" not in out:
        raise RuntimeError(f"gpm_bench {args} failed: {out!r}")


def g2h(p, sink, size, total, rings):
    sink.reset(total)
    run_guest(p, f"g2h {size} {total}", rings)
    if not sink.done.wait(30) or sink.got != total or sink.t_full is None:
        raise RuntimeError(f"g2h {size}: got {sink.got} of {total} bytes")
    secs = sink.t_full - sink.t_begin
    return total / secs, sink.stops_full - sink.stops_begin, sink.msgs


def h2g(p, sink, size, total, rings):
    sink.reset(0)
    msg = b"\xa5" * size
    for _ in range(total // size):
        sink.chan.write(msg)
    run_guest(p, f"h2g {size} {total}", rings)
    if not sink.done.wait(30) or sink.t_begin is None:
        raise RuntimeError(f"h2g {size}: no result ({sink.texts!r})")
    t_end, text = sink.texts[-1]
    kv = C.parse_kv(text)
    if kv.get("bytes") != total or kv.get("bad"):
        raise RuntimeError(f"h2g {size}: guest reports {text!r}")
    return total / (t_end - sink.t_begin), sink.stops_full - sink.stops_begin


def round_trip(p, sink, n, rings):
    sink.reset(n * 64, answer=True)
    run_guest(p, f"rt {n} 64", rings)
    if not sink.done.wait(30) or len(sink.times) != n:
        raise RuntimeError(f"rt: {len(sink.times)} of {n} round trips")
    gaps = [b - a for a, b in zip(sink.times, sink.times[1:])]
    return C.median(gaps) * 1e6, sink.stops_full - sink.stops_begin


def main():
    C.build_guest_bench()
    res = C.Results("bench_ring", "Shared-memory rings against hypercalls")
    p = C.start_panda()
    if not p.rings:
        raise SystemExit("bench_ring: rings are off (PANDAGPM_RINGS=0)")
    rows = {}

    def add(key, value):
        rows.setdefault(key, []).append(value)

    try:
        res.context["other_qemus"] = C.other_qemus(p.machine.pid)
        C.copy_bench(p)
        sink = Sink(p)
        sink.chan = p.gpm.open_channel("gpm_bench", sink)
        for rep in range(REPS):
            for rings in (True, False):
                tag = "ring" if rings else "hc"
                for size, (t_ring, t_hc) in TOTALS.items():
                    total = t_ring if rings else t_hc
                    C.progress(f"rep {rep + 1}/{REPS} {tag} {size} B x "
                               f"{total // size} each way")
                    add((tag, "g2h", size), g2h(p, sink, size, total, rings))
                    add((tag, "h2g", size), h2g(p, sink, size, total, rings))
                n64 = MSGS_64 if rings else max(1000, MSGS_64 // 50)
                C.progress(f"rep {rep + 1}/{REPS} {tag} 64 B x {n64}, "
                           f"round trips x {RT_N}")
                add((tag, "g2h", 64), g2h(p, sink, 64, 64 * n64, rings))
                add((tag, "rt"), round_trip(p, sink, RT_N if rings else
                                            max(200, RT_N // 10), rings))
        mstats = p.gpm.manager.stats()
    finally:
        C.close_panda(p)

    def med(key, i=0):
        return C.median([x[i] for x in rows[key]])

    def stops(key):
        return sum(x[1] for x in rows[key])

    for d in ("g2h", "h2g"):
        for size, label in ((4 * KiB, "4KiB"), (1 * MiB, "1MiB")):
            ring = med(("ring", d, size)) / 1e6
            hc = med(("hc", d, size)) / 1e6
            res.figure(f"ring_{d}_{label}_MBps", ring, "MB/s",
                       f"hypercall path {hc:.1f} MB/s same run "
                       f"({ring / hc:.1f}x)",
                       f"median of {REPS} x {TOTALS[size][0] / MiB:g} MiB "
                       f"in {label} messages, host clock; VM stops during "
                       f"them: {stops(('ring', d, size))} (hypercall path: "
                       f"{stops(('hc', d, size))})")
    ring_stops = sum(stops(("ring", d, 4 * KiB)) for d in ("g2h", "h2g"))
    res.figure("ring_stops_during_transfer", ring_stops, "stops",
               f"hypercall path {sum(stops(('hc', d, 4 * KiB)) for d in ('g2h', 'h2g'))}"
               " stops for its (smaller) 4 KiB transfers",
               f"VM stops counted between 'begin' and the last byte of all "
               f"{REPS} x 2 directions of 4 KiB ring transfers")
    msgs = med(("ring", "g2h", 64), 0) / 64
    hc_msgs = med(("hc", "g2h", 64), 0) / 64
    res.figure("ring_g2h_64B_msgs_per_s", msgs, "msgs/s",
               f"hypercall path {hc_msgs:.0f} msgs/s same run",
               f"median of {REPS} x {MSGS_64} messages of 64 bytes, one "
               "Python callback each")
    rt = med(("ring", "rt"))
    hc_rt = med(("hc", "rt"))
    res.figure("ring_round_trip_median_us", rt, "us",
               f"hypercall path {hc_rt:.0f} us same run",
               f"median of {REPS} runs' medians of {RT_N} round trips "
               "(64 B each way, the answer written by the Python callback),"
               " host clock")
    res.context["manager_stats"] = {k: v for k, v in mstats.items()
                                    if k.startswith("ring")}
    res.note("Rings: a 4 KiB header and a 256 KiB data area each way per "
             "channel in a 16 MiB region the image reserves; the guest maps "
             "its pair from /dev/mem, the host's ring thread reads and "
             "writes it in QEMU's RAM file while the guest runs, polling "
             "with a backoff. The baseline is the same guest program with "
             "GPM_RINGS=0, one READ/WRITE hypercall (one VM stop) per call.")
    res.save()


if __name__ == "__main__":
    main()
