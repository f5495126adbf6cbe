#!/usr/bin/env python3
"""End-to-end scenarios under real PANDA through pypanda (pandare).

PANDA allows one ``Panda`` per process, so tests/test_panda_real_pypanda.py
runs each scenario in a process of its own::

    pypanda_scenarios.py SCENARIO [--inject auto|extension|plugin]

Each prints ``RESULT {json}`` as its last line and exits 0 whether or not
the checks held; the test asserts on the JSON. Scenarios:

``etc_count``   etc_count's count against ``ls -A /etc | wc -l``;
``hello``       the hello exchange both ways;
``revert``      a load, ``revert_sync("root")``, then a second load;
``stats``       the C hot path served every hypercall;
``intruder``    another process snoops on the daemon's and hello's
                channels (channel ownership).
"""

import argparse
import json
import os
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", ".."))

import pandagpm  # noqa: E402
from pandagpm import _gpm  # noqa: E402
from pandagpm.pypanda import Panda, copy_to_guest  # noqa: E402

WAIT = 120  # seconds for any one guest answer (TCG on a loaded machine)


def shell_count(panda):
    out = panda.run_serial_cmd("ls -A /etc | wc -l")
    return int(out.split()[-1])


def load_etc_count(panda, inject):
    got = threading.Event()
    box = {}

    @pandagpm.channel_recv
    def on_count(channel_id, msg: bytes):
        box["count"] = int.from_bytes(msg[:4], "little")
        got.set()

    pandagpm.panda_host.attach(panda, inject=inject)
    # A process that will make system calls for the injector to hijack.
    panda.run_serial_cmd("(sleep 1; ls -A /etc >/dev/null) &")
    t0 = time.monotonic()
    pandagpm.load_guest_plugin(panda, "etc_count", on_count)
    ok = got.wait(WAIT)
    return (box.get("count") if ok else None), time.monotonic() - t0


def scenario_etc_count(panda, inject, res):
    panda.revert_sync("root")
    res["shell"] = shell_count(panda)
    res["count"], res["seconds"] = load_etc_count(panda, inject)


def scenario_revert(panda, inject, res):
    panda.revert_sync("root")
    res["shell"] = shell_count(panda)
    res["first"], _ = load_etc_count(panda, inject)
    panda.revert_sync("root")
    res["second"], res["seconds"] = load_etc_count(panda, inject)


def scenario_hello(panda, inject, res):
    msgs = []
    cond = threading.Condition()

    @pandagpm.channel_recv
    def on_hello(channel_id, msg: bytes):
        with cond:
            msgs.append(msg.decode())
            cond.notify_all()

    def wait_n(n):
        with cond:
            return cond.wait_for(lambda: len(msgs) >= n, WAIT)

    panda.revert_sync("root")
    pandagpm.panda_host.attach(panda, inject=inject)
    panda.run_serial_cmd("(sleep 1; ls >/dev/null) &")
    chan = pandagpm.load_guest_plugin(panda, "hello", on_hello)
    res["first_two"] = wait_n(2)
    chan.write(struct.pack("<I", 31337))
    res["third"] = wait_n(3)
    res["msgs"] = list(msgs)


def scenario_stats(panda, inject, res):
    scenario_etc_count(panda, inject, res)
    res["hc"] = _gpm.panda_hc_stats()
    host = pandagpm.panda_host.attach(panda)
    res["fast"] = host.fast
    res["injector"] = host.injector
    res["gpm"] = {k: v for k, v in host.gpm.stats().items()
                  if isinstance(v, (int, float, str))}


def scenario_intruder(panda, inject, res):
    """A process that is neither the daemon nor hello snoops on both."""
    msgs = []

    @pandagpm.channel_recv
    def on_hello(channel_id, msg: bytes):
        msgs.append(msg)

    scenario_etc_count(panda, inject, res)
    host = pandagpm.panda_host.attach(panda)
    res["ownership"] = host.ownership
    chan = pandagpm.load_guest_plugin(panda, "hello", on_hello)
    t0 = time.monotonic()
    while len(msgs) < 2 and time.monotonic() - t0 < WAIT:
        time.sleep(0.1)
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "guest", "build", "x86_64", "testprogs", "intruder")
    copy_to_guest(panda, exe, "/tmp/intruder")
    out = {}
    for target in ("guest_daemon", "hello"):
        text = panda.run_serial_cmd(
            f"CHAN_ID={chan.id} /tmp/intruder snoop {target}")
        out[target] = dict(ln.strip().split("=", 1)
                           for ln in text.splitlines() if "=" in ln)
    res["snoop"] = out
    chan.write(struct.pack("<I", 7))
    t0 = time.monotonic()
    while len(msgs) < 3 and time.monotonic() - t0 < WAIT:
        time.sleep(0.1)
    res["hello"] = [m.decode(errors="replace") for m in msgs]
    res["refused"] = host.gpm.stats().get("refused")


SCENARIOS = {"etc_count": scenario_etc_count, "hello": scenario_hello,
             "revert": scenario_revert, "stats": scenario_stats,
             "intruder": scenario_intruder}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--inject", default="auto",
                    choices=("auto", "extension", "plugin"))
    a = ap.parse_args()
    res = {"scenario": a.scenario}
    panda = Panda(generic="x86_64")

    @panda.queue_blocking
    def drive():
        try:
            SCENARIOS[a.scenario](panda, a.inject, res)
            res["injection"] = _gpm.panda_inj_status()
        except Exception as err:  # reported in the JSON, not raised
            res["error"] = f"{type(err).__name__}: {err}"
            res["traceback"] = traceback.format_exc()
        finally:
            panda.end_analysis()

    panda.run()
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
