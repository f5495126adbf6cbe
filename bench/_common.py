"""Shared helpers of the bench/bench_*.py scripts.

Each script starts one real guest (``pandagpm.host.Panda``), measures, and
prints one figure per line with its unit and the baseline it is compared
against in the same run. :class:`Results` also stores the figures in
``bench/results.json`` (one entry per figure, replaced on each run) and
regenerates ``bench/RESULTS.md`` from it, with the date and the machine.

Not a benchmark itself: ``make bench`` runs only ``bench/bench_*.py``.
"""

import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: The guest architecture of this run: GPM_BENCH_ARCH (make bench runs
#: each of BENCH_ARCHES). Figures of another arch than x86_64 carry its
#: name as a suffix ("hypercall_round_trip_median_us_aarch64") and its
#: scripts are stored as "<script>@<arch>".
ARCH = os.environ.get("GPM_BENCH_ARCH", "x86_64")
GUEST_BENCH = os.path.join(ROOT, "guest", "build", ARCH, "bench",
                           "gpm_bench")
GUEST_PATH = "/tmp/gpm_bench"
RESULTS_JSON = os.path.join(BENCH_DIR, "results.json")
RESULTS_MD = os.path.join(BENCH_DIR, "RESULTS.md")

_T0 = time.monotonic()


def progress(msg):
    """A progress line on stderr, with the seconds since the script began."""
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr,
          flush=True)


def build_guest_bench():
    """Builds guest/build/<arch>/bench/gpm_bench (make decides if needed)."""
    progress(f"make -C guest/bench GUEST_ARCH={ARCH}")
    subprocess.run(["make", "--no-print-directory", "-s", "-C",
                    os.path.join(ROOT, "guest", "bench"),
                    f"GUEST_ARCH={ARCH}"], check=True)
    return GUEST_BENCH


def arch_info():
    """The core's table row for this run's arch (stub address, trap)."""
    from pandagpm import _gpm

    return _gpm.arch_info(ARCH)


def start_panda(rings=None):
    """A started Panda on the generic image of ARCH, reverted to root.

    ``rings``: the shared-memory rings (docs/rings.md); None follows
    PANDAGPM_RINGS (default on). The scripts that measure the hypercall
    path itself pass False.
    """
    from pandagpm.host import Panda

    progress(f"starting QEMU (generic {ARCH}, snapshot root"
             f"{', rings off' if rings is False else ''})")
    p = Panda(generic=ARCH, verbose=False, rings=rings)
    t0 = time.monotonic()
    p.start()
    progress(f"QEMU up, shell answers after {time.monotonic() - t0:.2f} s")
    return p


def close_panda(p):
    """Panda.close(), reporting rather than raising a failure to quit."""
    try:
        p.close()
    except Exception as err:  # see the report: QMP 'quit' may reset
        progress(f"warning: Panda.close() raised {type(err).__name__}: "
                 f"{err}")
        m = p.machine
        if m is not None:
            try:
                m.stop()
            except Exception:
                pass
            p.machine = None


def copy_bench(p):
    """Copies gpm_bench into the guest (serial console) at GUEST_PATH."""
    t0 = time.monotonic()
    p.machine.copy_to_guest(GUEST_BENCH, GUEST_PATH)
    progress(f"copied gpm_bench ({os.path.getsize(GUEST_BENCH)} bytes) into "
             f"the guest in {time.monotonic() - t0:.2f} s")


def parse_kv(text):
    """{'key': int-or-str} from 'GPMBENCH mode k=v k=v ...'."""
    out = {}
    for k, v in re.findall(r"(\w+)=(\S+)", text):
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def percentile(xs, q):
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def rss_kib(pid="self"):
    """VmRSS of a process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmd_first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=10).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    qemu = "qemu-system-x86_64"
    try:
        from pandagpm import image as _image

        qemu = _image.get_image(ARCH, progress=False).profile["qemu"][
            "binary"]
    except Exception:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "host": socket.gethostname(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "qemu": _cmd_first_line([qemu, "--version"]),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in load),
    }


def other_qemus(own_pid=None):
    """How many qemu-system processes run besides ours (noise indicator)."""
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == own_pid:
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().startswith("qemu-system"):
                    n += 1
        except OSError:
            pass
    return n


class Results:
    """The figures of one script; printed now, stored in RESULTS.md."""

    def __init__(self, script, title):
        self.script = script if ARCH == "x86_64" else f"{script}@{ARCH}"
        self.title = title if ARCH == "x86_64" else f"{title} ({ARCH})"
        self.figures = []
        self.notes = []
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.machine = machine_info()
        self.context = {}

    def figure(self, name, value, unit, baseline, detail=""):
        """Prints 'name value unit (baseline: ...)' and records it."""
        if ARCH != "x86_64":
            name = f"{name}_{ARCH}"
        if isinstance(value, float):
            shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        else:
            shown = str(value)
        line = f"{name} {shown} {unit} (baseline: {baseline})"
        if detail:
            line += f" [{detail}]"
        print(line, flush=True)
        self.figures.append({"name": name, "value": value, "shown": shown,
                             "unit": unit, "baseline": baseline,
                             "detail": detail})

    def note(self, text):
        self.notes.append(text)

    def save(self):
        try:
            with open(RESULTS_JSON) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        data.setdefault("scripts", {})[self.script] = {
            "title": self.title,
            "date": self.started.strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(time.monotonic() - _T0, 1),
            "machine": self.machine,
            "context": self.context,
            "figures": self.figures,
            "notes": self.notes,
        }
        tmp = RESULTS_JSON + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, RESULTS_JSON)
        write_markdown(data)
        progress(f"figures written to {os.path.relpath(RESULTS_MD, ROOT)}")


_PREAMBLE = """\
# pandagpm benchmark results

Written by `make bench` (the scripts `bench/bench_*.py`, helpers in
`bench/_common.py`); do not edit by hand. Every figure comes from the
real guest (a generic image, x86_64 unless the section names aarch64 or
arm, stock QEMU under TCG, driven through its gdbstub) in the run dated in its section, and is shown next to the
baseline measured in the same run (or, where stated, the figure from
`../shared/DESIGN.md` section 4; "documented" means the bound stated in
the code's documentation). The machine-readable copy is
`bench/results.json`.

**Noise.** The machine has few cores and other QEMU instances (other
engineers' tests) may run at the same time; each section records the load
average and how many other QEMU processes were running when it started.
Under TCG a busy neighbour directly slows the guest, so compare figures
from the same section, not across runs.

**Clocks.** Host-side figures use the host's monotonic clock. The guest's
clock does not advance while QEMU holds the VM stopped at a breakpoint
(the time from QEMU's stop to the host's continue is invisible to the
guest), so per-call times measured inside the guest are shown only as a
secondary figure, labelled "guest clock".
"""


def write_markdown(data):
    lines = [_PREAMBLE]
    order = ["bench_hypercall", "bench_bulk", "bench_ring", "bench_load",
             "bench_flood",
             "bench_forward"]
    names = sorted(data.get("scripts", {}),
                   key=lambda s: (order.index(s) if s in order else 99, s))
    for name in names:
        s = data["scripts"][name]
        m = s["machine"]
        lines.append(f"## {s['title']} (`bench/{name}.py`)\n")
        lines.append(
            f"Run {s['date']} in {s['seconds']} s on `{m['host']}`: "
            f"nproc {m['nproc']}, {m['cpu']}; {m['qemu']}; host kernel "
            f"{m['kernel']}; Python {m['python']}; load average "
            f"{m['loadavg']}"
            + (f"; other QEMU processes running: "
               f"{s['context'].get('other_qemus')}"
               if "other_qemus" in s.get("context", {}) else "")
            + ".\n")
        lines.append("| figure | value | unit | baseline | details |")
        lines.append("|---|---:|---|---|---|")
        for f in s["figures"]:
            lines.append(f"| `{f['name']}` | {f['shown']} | {f['unit']} | "
                         f"{f['baseline']} | {f.get('detail', '')} |")
        lines.append("")
        for n in s.get("notes", []):
            lines.append(f"- {n}")
        if s.get("notes"):
            lines.append("")
    with open(RESULTS_MD + ".tmp", "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    os.replace(RESULTS_MD + ".tmp", RESULTS_MD)
