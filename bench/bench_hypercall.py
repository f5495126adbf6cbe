"""Hypercall round trip, against a bare gdbstub stop + continue.

What is measured (one QEMU; GPM_BENCH_HC_ROUNDS rounds, default 3, each
from a fresh revert to root, of N = GPM_BENCH_HC_N calls, default 1000):

1. pandagpm's host serving the guest (``GdbHost`` + the core):
   * ``hcw N``: N one-byte WRITE hypercalls on a channel with a Python
     callback; the callback timestamps each message with the host clock and
     the median gap between two messages is the round trip of one
     hypercall, guest code and Python callback included;
   * ``hc N``: N no-op hypercalls (READ on a channel the host keeps empty,
     no Python involved); host wall time / N, and the guest-clock median.
2. Baseline: pandagpm's host is detached, and a bare client (bench/_rsp.py)
   sets the same breakpoint at the stub (0x10000000) and answers each stop
   with one "c ADDR" packet (continue past the trap: the CPUID's 2 bytes,
   ARM's 4): no register
   reads, no handler. The guest runs ``bare N`` (the same stub call loop).
   The host timestamps each stop reply; the median gap is the bare
   stop + continue round trip, measured the same way as (1).
3. For scale: ``bare N`` with no gdb client at all (the CPUID runs
   natively under TCG; guest clock).
"""

import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from _rsp import RawGdb  # noqa: E402

N = int(os.environ.get("GPM_BENCH_HC_N", "1000"))
ROUNDS = int(os.environ.get("GPM_BENCH_HC_ROUNDS", "3"))
INFO = C.arch_info()
HC_ADDR = INFO["hc_addr"]
HC_LEN = len(INFO["hc_insn"])
BP_KIND = INFO["bp_kind"]


def run_guest(p, args, timeout=600):
    out = p.run_serial_cmd(f"{C.GUEST_PATH} {args}; echo rc=$?",
                           timeout=timeout)
    if "rc=0" not in out:
        raise RuntimeError(f"gpm_bench {args} failed: {out!r}")
    return out


def stats_delta(a, b):
    return {k: b[k] - a[k] for k in a if isinstance(a[k], int)
            and not isinstance(a[k], bool)}


def measure_pandagpm(p):
    """One round of hcw N and hc N with pandagpm's host attached."""
    msgs = []

    def cb(cid, data):
        t = time.perf_counter_ns()
        if data[:9] == b"GPMBENCH ":
            msgs.append((t, bytes(data).decode()))
        else:
            msgs.append((t, None))

    p.gpm.open_channel("gpm_bench", cb)

    # 1-byte WRITEs, timestamped in the Python callback.
    C.progress(f"pandagpm host: {N} one-byte WRITE hypercalls")
    s0 = p.gdb.stats()
    run_guest(p, f"hcw {N}")
    s1 = p.gdb.stats()
    ts = [t for t, text in msgs if text is None]
    end = [text for _, text in msgs if text and text.startswith(
        "GPMBENCH hcw")]
    if len(ts) != N or not end:
        raise RuntimeError(f"hcw: got {len(ts)} of {N} messages")
    out = {
        "hcw_gaps": [(b - a) / 1e3 for a, b in zip(ts, ts[1:])],
        "hcw_stats": stats_delta(s0, s1),
    }

    # No-op READs on the empty channel: no Python on the host side.
    msgs.clear()
    C.progress(f"pandagpm host: {N} no-op READ hypercalls")
    s0 = p.gdb.stats()
    run_guest(p, f"hc {N}")
    s1 = p.gdb.stats()
    begin = [t for t, text in msgs if text == "GPMBENCH begin"]
    end = [(t, text) for t, text in msgs if text and text.startswith(
        "GPMBENCH hc ")]
    if not begin or not end:
        raise RuntimeError(f"hc: messages {msgs!r}")
    g = C.parse_kv(end[0][1])
    if g["errors"]:
        raise RuntimeError(f"hc: {g['errors']} hypercalls failed")
    # begin -> end spans N no-ops plus the final WRITE.
    out["hc_host_us"] = (end[0][0] - begin[0]) / 1e3 / (N + 1)
    out["hc_guest"] = g
    out["hc_stats"] = stats_delta(s0, s1)
    out["regs"] = p.gdb.bench_regs(200)
    return out


def measure_bare(p):
    """The bare client's loop; pandagpm's host must be detached."""
    raw = RawGdb(p.machine.gdb_socket_path)  # connecting pauses the VM
    stops = []
    out = {}
    try:
        raw.command("?")
        if raw.command(f"Z0,{HC_ADDR:x},{BP_KIND:x}") != b"OK":
            raise RuntimeError("the gdbstub refused the breakpoint")

        def guest():
            try:
                out["text"] = run_guest(p, f"bare {N}")
            except Exception as err:  # reported below
                out["error"] = err

        t = threading.Thread(target=guest, daemon=True)
        t.start()
        cont = f"c{HC_ADDR + HC_LEN:x}"
        raw.send("c")
        while len(stops) < N:
            reply = raw.recv(timeout=60)
            stops.append(time.perf_counter_ns())
            if not reply.startswith((b"T05", b"S05")):
                raise RuntimeError(f"unexpected stop reply {reply!r}")
            raw.send(cont)
        t.join(120)
        raw.interrupt()
        raw.recv(timeout=10)
        raw.command(f"z0,{HC_ADDR:x},{BP_KIND:x}")
        raw.command("D")
    finally:
        raw.close()
    if "error" in out:
        raise out["error"]
    g = C.parse_kv(out["text"].split("GPMBENCH bare", 1)[1])
    return {
        "gaps": [(b - a) / 1e3 for a, b in zip(stops, stops[1:])],
        "guest_p50": g["p50_ns"] / 1e3,
    }


def per(d, num, den):
    return d[num] / 1e3 / max(1, d[den])


def main():
    C.build_guest_bench()
    res = C.Results("bench_hypercall",
                    "Hypercall round trip vs. bare gdbstub stop + continue")
    rounds = []
    # The hypercall path itself: no rings (bench_ring compares both).
    p = C.start_panda(rings=False)
    try:
        res.context["other_qemus"] = C.other_qemus(p.machine.pid)
        for r in range(ROUNDS):
            C.progress(f"round {r + 1} of {ROUNDS}")
            if r:
                C.progress("revert to root to attach pandagpm's host again")
                p.revert_sync("root")
            C.copy_bench(p)
            one = measure_pandagpm(p)
            C.progress("detaching pandagpm's host; bare gdbstub client, "
                       f"{N} stop + continue")
            p.gdb.close()
            one["bare"] = measure_bare(p)
            rounds.append(one)
        native = None
        if C.ARCH in ("x86_64", "i386"):
            # Only x86's trap (CPUID) runs without a host: ARM's traps are
            # undefined instructions outside PANDA.
            C.progress(f"no gdb client: {N} native CPUID stub calls")
            native = C.parse_kv(run_guest(p, f"bare {N}").split(
                "GPMBENCH bare", 1)[1])
    finally:
        C.close_panda(p)

    hcw = [g for o in rounds for g in o["hcw_gaps"]]
    bare = [g for o in rounds for g in o["bare"]["gaps"]]
    n_r = f"{ROUNDS} rounds of n={N}"
    hcw_st = {k: sum(o["hcw_stats"][k] for o in rounds)
              for k in rounds[0]["hcw_stats"]}
    hc_st = {k: sum(o["hc_stats"][k] for o in rounds)
             for k in rounds[0]["hc_stats"]}
    hc_host = statistics.fmean(o["hc_host_us"] for o in rounds)
    hc_gp50 = statistics.fmean(o["hc_guest"]["p50_ns"] / 1e3 for o in rounds)
    hc_gmean = statistics.fmean(o["hc_guest"]["total_ns"] / 1e3 / N
                                for o in rounds)
    bare_gp50 = statistics.fmean(o["bare"]["guest_p50"] for o in rounds)
    bare_mean = statistics.fmean(bare)
    g_us = statistics.fmean(o["regs"][0] / 1e3 for o in rounds)
    p5_us = statistics.fmean(o["regs"][1] / 1e3 for o in rounds)
    bmed = C.median(bare)

    def spread(xs):
        return (f"p10 {C.percentile(xs, 0.1):.0f}, p90 "
                f"{C.percentile(xs, 0.9):.0f}, p99 "
                f"{C.percentile(xs, 0.99):.0f}, mean "
                f"{statistics.fmean(xs):.0f} us")

    base = (f"bare gdbstub stop+continue {bmed:.1f} us median, same "
            "breakpoint, host clock")
    res.figure("hypercall_round_trip_median_us", C.median(hcw), "us", base,
               f"1-byte WRITE + Python callback, {n_r}, host clock; "
               + spread(hcw))
    res.figure("hypercall_round_trip_overhead_us", C.median(hcw) - bmed, "us",
               base, "median minus the baseline median; at p10 (less "
               "exposed to scheduling noise): "
               f"{C.percentile(hcw, 0.1) - C.percentile(bare, 0.1):.0f} us")
    res.figure("hypercall_noop_mean_us", hc_host, "us",
               f"bare gdbstub stop+continue {bare_mean:.1f} us mean",
               f"READ on an empty channel, {n_r}, host wall time / n")
    res.figure("hypercall_noop_guest_clock_median_us", hc_gp50, "us",
               f"bare gdbstub {bare_gp50:.1f} us"
               + (f"; native CPUID without gdb {native['p50_ns'] / 1e3:.2f} "
                  "us" if native else "") + " (guest clock)",
               "the guest clock misses the time QEMU holds the VM stopped; "
               f"guest mean {hc_gmean:.0f} us")
    res.figure("bare_gdbstub_stop_continue_median_us", bmed, "us",
               "DESIGN.md section 4: 1100 us per hypercall round trip",
               f"{n_r}; " + spread(bare))
    res.figure("host_time_per_stop_us", per(hcw_st, "stop_ns", "stops"), "us",
               f"handler only {per(hcw_st, 'handler_ns', 'hypercalls'):.1f} "
               f"us (WRITE + Python), "
               f"{per(hc_st, 'handler_ns', 'hypercalls'):.1f} us (no-op)",
               "mean from the stop reply to the continue sent, register "
               "packets included (WRITE); no-op READ: "
               f"{per(hc_st, 'stop_ns', 'stops'):.0f} us")
    res.figure("gdb_g_packet_us", g_us, "us",
               f"five 'p' packets {p5_us:.1f} us",
               "one 'g' request/reply with the CPU stopped (bench_regs)")
    res.note("The round trip is the gap between two consecutive 1-byte "
             "WRITE messages as seen by a Python channel callback on the "
             "host clock: guest loop + QEMU stop + pandagpm's register "
             "packets and dispatcher + Python callback + continue + QEMU "
             "re-translating code (every stop flushes QEMU's translation "
             "cache).")
    res.note("The baseline is the least a gdb client can do at the same "
             "breakpoint: one `c10000002` packet per stop reply (bench/"
             "_rsp.py), pandagpm's host detached, the same guest stub "
             "loop. The difference is what pandagpm adds per hypercall "
             "(reading RIP/CS/`g`, writing RAX, the dispatcher, Python). "
             f"Measured in {ROUNDS} alternating rounds so that drift in "
             "the machine's load hits both alike.")
    res.note("Means are far above medians: more than a tenth of the "
             "round trips take 5-20 ms (see p90/p99). Not analysed further; "
             "likely causes are guest timer work re-translated after each "
             "cache flush and CPU contention with other QEMU processes on "
             "this 2-core machine. The medians are the figures to compare.")
    res.save()


if __name__ == "__main__":
    main()
