"""What an idle injected daemon costs the rest of the guest.

Runs ``ps`` (a short program that walks /proc: much kernel code) in the
guest shell, median of several runs, in three states of the same image:
no daemon (the baseline), the daemon injected and idle with the doorbell
page (it sleeps without hypercalls), and the same without the doorbell
(it polls with READ hypercalls, each one a VM stop). Also counts the VM
stops per second each idle state causes.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

RUNS = int(os.environ.get("GPM_BENCH_IDLE_RUNS", "5"))


def time_ps(p):
    times = []
    for _ in range(RUNS):
        t0 = time.monotonic()
        p.run_serial_cmd("ps >/dev/null", timeout=120)
        times.append(time.monotonic() - t0)
    return C.median(times)


def stops_per_second(p, seconds=3.0):
    s0 = p.gdb.stats()["stops"]
    time.sleep(seconds)
    return (p.gdb.stats()["stops"] - s0) / seconds


def measure(doorbell):
    from pandagpm.host import Panda

    p = Panda(generic="x86_64", verbose=False, doorbell=doorbell)
    try:
        p.start()
        p.revert_sync("root")
        base = time_ps(p) if doorbell else None
        p.ensure_daemon()
        time.sleep(1)
        return base, time_ps(p), stops_per_second(p)
    finally:
        C.close_panda(p)


def main():
    res = C.Results("bench_idle",
                    "What an idle injected daemon costs the guest")
    C.progress("no daemon, then an idle daemon with the doorbell")
    base, with_db, stops_db = measure(doorbell=True)
    C.progress("an idle daemon without the doorbell (polling)")
    _, without_db, stops_poll = measure(doorbell=False)
    res.context["other_qemus"] = C.other_qemus()
    res.figure("idle_daemon_ps_s_doorbell", with_db, "s",
               f"no daemon {base:.3f} s",
               f"median of {RUNS} runs of ps in the guest shell")
    res.figure("idle_daemon_ps_s_polling", without_db, "s",
               f"no daemon {base:.3f} s",
               f"the same with the doorbell withdrawn; median of {RUNS}")
    res.figure("idle_daemon_stops_per_s_doorbell", stops_db, "stops/s",
               f"polling {stops_poll:.1f} stops/s",
               "VM stops per second while the daemon waits")
    res.note("Every VM stop makes QEMU re-translate the guest's code, so "
             "a stop costs the guest far more than its own length; the "
             "doorbell lets waiting guest code sleep without hypercalls "
             "(see csrc/include/gpm/abi.h).")
    res.save()


if __name__ == "__main__":
    main()
