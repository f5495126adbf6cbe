"""The OSI provider under real PANDA (issue 15 item 4): a C test plugin
(tests/panda/osi_plugin) calls ``get_processes`` and ``get_mappings``
through PANDA's osi plugin, and guest_plugin_manager (``osi_provider=
true``) answers from the procs guest plugin, with no kernel profile
involved in its answer. Checked: the agent's entries equal the guest's
``ps`` for pid, ppid and name; a process's maps equal its
/proc/PID/maps; the container holds OsiProc elements and is freed with
``g_array_free(arr, TRUE)`` through the clear function the provider set
(OSI's container rules themselves, with leak checks under ASan and
valgrind, are tests/c/test_osi_snapshot.c). A second run does the same
with our plugins built with AddressSanitizer and checks that nothing of
ours leaked or misused memory.

Uses the PANDA command line and helpers of tests/test_panda_real_cmdline.py
(linjector, which starts the daemon, needs osi_linux and its profile;
osi_linux answers get_processes too, and the provider appends to its
array). Skips, saying why, without PANDA; ``-m panda_real`` selects it.
"""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_panda_real_cmdline as cmd  # noqa: E402

pytestmark = pytest.mark.panda_real

ROOT = cmd.ROOT
PLUGIN_SRC = ROOT / "tests" / "panda" / "osi_plugin"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Guest plugins, our PANDA plugins in the tree, gpm_osi_test."""
    why = cmd._unavailable()
    if why:
        pytest.skip(why)
    tree = cmd._panda_tree()
    cmd._make(["-C", str(ROOT / "guest")], "make -C guest")
    cmd._make(["-C", str(ROOT), "panda-plugins-check", f"PANDA_PATH={tree}"],
              "make panda-plugins-check")
    scratch = tmp_path_factory.mktemp("gpm_osi_test")
    panda_dir = scratch / "pandadir"
    plugin_dir = panda_dir / cmd.TARGET / "panda" / "plugins"
    plugin_dir.mkdir(parents=True)
    cmd._make(["-C", str(tree / "build" / cmd.TARGET),
               "-f", str(tree / "panda" / "plugins" / "panda.mak"),
               "-f", str(PLUGIN_SRC / "Makefile"),
               "PLUGIN_NAME=gpm_osi_test",
               f"PLUGIN_SRC_ROOT={PLUGIN_SRC.parent}",
               f"PLUGIN_SRC_DIR={PLUGIN_SRC}",
               f"PLUGIN_OBJ_DIR={scratch / 'obj'}",
               f"PLUGIN_TARGET_DIR={plugin_dir}",
               f"BUILD_DIR={tree / 'build'}",
               f"GPM_HEADER_DIR={ROOT / 'csrc' / 'panda'}", "all"],
              "building gpm_osi_test with PANDA's panda.mak")
    return {"tree": tree, "panda_dir": panda_dir}


@pytest.fixture(scope="module")
def guest(built, tmp_path_factory):
    run = tmp_path_factory.mktemp("panda_osi")
    with cmd.booted(built, run, [
        "-panda", (f"guest_plugin_manager:plugin_dir={cmd.GUEST_BUILD},"
                   "osi_provider=true"),
        "-panda", f"gpm_osi_test:out={run / 'results.txt'}",
    ]) as g:
        yield g


def dump_lines(guest, n, key):
    text = guest.results_path.read_text() if guest.results_path.exists() \
        else ""
    prefix = f"dump_{n}_{key}="
    return [ln[len(prefix):] for ln in text.splitlines()
            if ln.startswith(prefix)]


class Dumper:
    """Asks gpm_osi_test for dumps; returns each one's lines."""

    def __init__(self, guest):
        self.guest = guest
        self.n = 0

    def __call__(self, pid):
        self.n += 1
        self.guest.monitor.cmd(f'plugin_cmd "osi_dump {pid}"')
        # The dump runs at the next address-space change: make some.
        cmd.wait_for(lambda: dump_lines(self.guest, self.n, "done") or
                     self.guest.sh("true") and False, cmd.LONG,
                     f"OSI dump {self.n}")
        return {k: dump_lines(self.guest, self.n, k)
                for k in ("proc", "procs", "elem_ok", "maps", "map")}


def guest_ps(guest):
    table = {}
    for line in guest.sh("ps -o pid,ppid,comm").splitlines()[1:]:
        f = line.split(None, 2)
        if len(f) == 3 and f[0].isdigit():
            table[int(f[0])] = (int(f[1]), f[2].strip())
    return table


def check_osi(guest):
    """The provider's answers against the guest's own ps and maps."""
    assert guest.wait_result("osi_test_loaded") == "1"
    cmd.wait_for(lambda: cmd.daemon_ready(guest), cmd.LONG,
                 "linjector to start the guest daemon")
    cmd.wait_for(lambda: "procs started" in guest.log() or
                 guest.sh("true") and False, cmd.LONG,
                 "the procs guest plugin")
    pid = int(guest.sh("sleep 3600 >/dev/null 2>&1 & echo $!").split()[-1])
    dump = Dumper(guest)

    def has_sleep():
        d = dump(pid)
        return d if any(p.split(",")[0] == str(pid) for p in d["proc"]) \
            else None

    d = cmd.wait_for(has_sleep, cmd.LONG, "the sleep in OSI's list")
    assert d["elem_ok"] == ["1"]
    ours = {}
    for line in d["proc"]:
        p, pp, name = line.split(",", 2)
        ours[int(p)] = (int(pp), name)
    assert int(d["procs"][0]) == len(ours) > 5
    assert ours[pid][1] == "sleep"
    theirs = guest_ps(guest)
    for p in (1, pid):
        assert theirs[p][0] == ours[p][0], p
    stable = [p for p in ours if p in theirs]
    assert len(stable) >= len(ours) - 3
    for p in stable:
        assert theirs[p][0] == ours[p][0], (p, theirs[p], ours[p])
        if not ours[p][1].startswith("kworker/"):
            assert ours[p][1].startswith(theirs[p][1]) or \
                theirs[p][1].startswith(ours[p][1]), (p, theirs[p], ours[p])

    # The maps were asked for at the first dump; later ones have them.
    d = cmd.wait_for(lambda: (lambda x: x if int(x["maps"][0]) > 0
                              else None)(dump(pid)),
                     cmd.LONG, "the maps of the sleep")
    ref = []
    for line in guest.sh(f"cat /proc/{pid}/maps").splitlines():
        f = line.split(None, 5)
        start, end = (int(x, 16) for x in f[0].split("-"))
        ref.append(f"{start:x},{end - start:x},"
                   f"{f[5].strip() if len(f) > 5 else ''}")
    assert d["map"] == ref
    guest.sh(f"kill {pid}")


def test_osi_processes_and_maps_from_the_agent(guest):
    check_osi(guest)


@pytest.mark.skipif(not os.path.isabs(cmd._LIBASAN),
                    reason="no libasan.so for the C compiler")
def test_osi_provider_under_asan(built, tmp_path):
    """guest_plugin_manager and linjector built with -fsanitize=address
    (PANDA is not), libasan preloaded: the same checks, then every plugin
    unloaded and PANDA quit. No memory error, and no leak allocated by our
    code: the names and paths the provider g_strdup()s into the arrays
    are freed by the test plugin's g_array_free(arr, TRUE) only through
    the clear function the provider set."""
    tree = built["tree"]
    pdir = tmp_path / "pandadir"
    plugins = pdir / cmd.TARGET / "panda" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(built["panda_dir"] / cmd.TARGET / "panda" / "plugins"
                / "panda_gpm_osi_test.so", plugins)
    for p in ("guest_plugin_manager", "linjector"):
        cmd._make(["-C", str(tree / "build" / cmd.TARGET),
                   "-f", str(tree / "panda" / "plugins" / "panda.mak"),
                   "-f", str(tree / "panda" / "plugins" / p / "Makefile"),
                   f"PLUGIN_SRC_ROOT={tree / 'panda' / 'plugins'}",
                   f"BUILD_DIR={tree / 'build'}", f"PLUGIN_NAME={p}",
                   f"PLUGIN_OBJ_DIR={tmp_path / 'obj' / p}",
                   f"PLUGIN_TARGET_DIR={plugins}",
                   "GPM_EXTRA_CFLAGS=-fsanitize=address "
                   "-fno-omit-frame-pointer", "all"],
                  f"building panda_{p}.so with ASan")
    shim = tmp_path / "noclose.so"
    (tmp_path / "noclose.c").write_text(
        "int dlclose(void *h) { (void)h; return 0; }\n")
    cmd._run_ok(["cc", "-shared", "-fPIC", "-o", str(shim),
                 str(tmp_path / "noclose.c")], "building the dlclose shim")
    report = tmp_path / "asan"
    env = {"PANDA_DIR": str(pdir),
           "LD_PRELOAD": f"{cmd._LIBASAN} {shim}",
           "ASAN_OPTIONS": ("detect_leaks=1:halt_on_error=0:"
                            "fast_unwind_on_malloc=0:malloc_context_size=40:"
                            f"log_path={report}")}
    with cmd.booted({"tree": tree, "panda_dir": pdir}, tmp_path, [
        "-panda", (f"guest_plugin_manager:plugin_dir={cmd.GUEST_BUILD},"
                   "osi_provider=true"),
        "-panda", f"gpm_osi_test:out={tmp_path / 'results.txt'}",
    ], env) as g:
        check_osi(g)
        for name in ("gpm_osi_test", "guest_plugin_manager", "linjector"):
            cmd._unload(g, name)
        assert g.sh("echo still here", timeout=cmd.LONG) == "still here"
        g.monitor.sock.sendall(b"quit\n")
        g.proc.wait(timeout=cmd.LONG)
    text = "".join(f.read_text(errors="replace")
                   for f in tmp_path.glob("asan.*"))
    errors = [ln for ln in text.splitlines()
              if "ERROR: AddressSanitizer" in ln
              and "detected memory leaks" not in ln]
    assert not errors, text[:6000]
    leaks = [b for b in re.split(r"\n(?=Direct leak|Indirect leak)", text)
             if b.startswith(("Direct leak", "Indirect leak"))
             and cmd._allocated_by_us(b)]
    assert not leaks, "\n\n".join(leaks)[:6000]
