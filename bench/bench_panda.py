"""Hypercall round trip under real PANDA, against a bare PANDA callback.

One PANDA process (pypanda, pandagpm's x86_64 image from PANDA's own
``root`` snapshot), GPM_BENCH_PANDA_ROUNDS rounds (default 3) of
N = GPM_BENCH_HC_N calls (default 1000) each way, alternating:

1. pandagpm: the extension's C hypercall handler (the pypanda hot path,
   ``PandaHost``) registered as PANDA's guest_hypercall callback; the
   guest runs ``gpm_bench bare N`` (N READ hypercalls of channel 0, each
   through the core's whole dispatch: register reads, op and channel
   checks, the error result written back);
2. baseline: the same guest loop with only a bare C callback registered
   (it sees the magic value, writes 0 to RAX and returns), so the figure
   is PANDA's own cost of one hypercall.

Under PANDA the hypercall runs inside the CPUID instruction's helper, so
the guest's clock sees the whole round trip; figures are the guest-clock
median per call. Needs ``make panda``; without PANDA it says so and exits
0 without writing figures.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

N = int(os.environ.get("GPM_BENCH_HC_N", "1000"))
ROUNDS = int(os.environ.get("GPM_BENCH_PANDA_ROUNDS", "3"))

DRIVER = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import pandagpm
from pandagpm import _gpm
from pandagpm.pypanda import Panda, copy_to_guest

bench_path, n, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
panda = Panda(generic="x86_64", osi=False)
out = {"pandagpm": [], "bare": []}

def run(cmd):
    return panda.run_serial_cmd(cmd, timeout=120)

def bench():
    r = run(f"/tmp/gpm_bench bare {n}; echo rc=$?")
    line = [l for l in r.splitlines() if l.startswith("GPMBENCH bare")][0]
    return dict(kv.split("=") for kv in line.split()[2:])

@panda.queue_blocking
def drive():
    try:
        panda.revert_sync("root")
        copy_to_guest(panda, bench_path, "/tmp/gpm_bench")
        host = pandagpm.panda_host.attach(panda, inject="none")
        out["fast"] = host.fast
        ffi = panda.ffi
        bare = ffi.cast("bool(*)(CPUState *)", _gpm.panda_bare_hc_install(
            ffi.offsetof("CPUState", "env_ptr"),
            ffi.offsetof("CPUX86State", "regs", 0)))
        for _ in range(rounds):
            out["pandagpm"].append(bench())
            panda.delete_callback(pandagpm.panda_host.CALLBACK_NAME)
            panda.register_callback(panda.callback.guest_hypercall, bare,
                                    "pandagpm_bench_bare")
            out["bare"].append(bench())
            panda.delete_callback("pandagpm_bench_bare")
            panda.register_callback(panda.callback.guest_hypercall,
                                    host._hc_fn, pandagpm.panda_host.CALLBACK_NAME)
        out["stats"] = {k: v for k, v in host.gpm.stats().items()
                        if isinstance(v, int)}
    except Exception as err:
        import traceback
        out["error"] = traceback.format_exc()
    finally:
        panda.end_analysis()

panda.run()
print("RESULT " + json.dumps(out), flush=True)
'''


def main():
    res = C.Results("bench_panda", "Hypercall round trip under real PANDA")
    try:
        from pandagpm.pypanda import PandaNotFound, find_panda
        find_panda("x86_64")
        import pandare  # noqa: F401
    except (ImportError, PandaNotFound) as err:
        C.progress(f"skipped: no PANDA ({err}); run make panda first")
        return 0
    bench = C.build_guest_bench()
    tmp = os.path.join(C.ROOT, "build", "bench_panda")
    os.makedirs(tmp, exist_ok=True)
    driver = os.path.join(tmp, "driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    C.progress(f"PANDA: {ROUNDS} rounds x {N} hypercalls, pandagpm vs bare")
    r = subprocess.run([sys.executable, driver, C.ROOT, bench, str(N),
                        str(ROUNDS)], capture_output=True, text=True,
                       timeout=1800)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the PANDA driver printed no result:\n"
                           f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    out = json.loads(lines[-1][7:])
    if "error" in out:
        raise RuntimeError(out["error"])
    gpm = [int(x["p50_ns"]) / 1000 for x in out["pandagpm"]]
    bare = [int(x["p50_ns"]) / 1000 for x in out["bare"]]
    res.context.update({"n": N, "rounds": ROUNDS, "c_hot_path": out["fast"]})
    res.figure("panda_hypercall_round_trip_median_us", C.median(gpm), "us",
               f"bare PANDA hypercall callback {C.median(bare):.2f} us",
               f"guest clock, medians of {ROUNDS} x {N}: pandagpm "
               f"{', '.join(f'{x:.2f}' for x in gpm)}; bare "
               f"{', '.join(f'{x:.2f}' for x in bare)}")
    res.figure("panda_bare_hypercall_median_us", C.median(bare), "us",
               "the same guest loop, same run",
               "PANDA's own cost: CPUID helper + one C callback")
    res.note("Under PANDA a hypercall is a call inside the CPUID helper, "
             "not a VM stop, so it costs microseconds where the gdbstub "
             "host's stop costs hundreds.")
    res.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
