"""pypanda end to end under real PANDA: pandagpm's image, PANDA's own
snapshot, the C hypercall path and the extension's C injector.

Needs PANDA built by ``make panda`` (or ``PANDA_PATH``); without it the
tests skip and say why, unless ``PANDAGPM_REQUIRE_PANDA`` is set (CI and
``make test-panda``), where they fail. PANDA allows one ``Panda`` per
process, so every scenario runs in its own process
(tests/panda/pypanda_scenarios.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "panda" / "pypanda_scenarios.py"
EXAMPLE = ROOT / "examples" / "pypanda_etc_count.py"

pytestmark = [pytest.mark.panda_real, pytest.mark.e2e]


@pytest.fixture(scope="module")
def panda_install():
    from pandagpm.pypanda import PandaNotFound, find_panda
    try:
        inst = find_panda("x86_64")
        import pandare  # noqa: F401
    except (PandaNotFound, ImportError) as err:
        if os.environ.get("PANDAGPM_REQUIRE_PANDA"):
            pytest.fail(f"PANDAGPM_REQUIRE_PANDA is set but: {err}")
        pytest.skip(f"real PANDA is not provisioned (make panda): {err}")
    return inst


def run_scenario(name, *args, timeout=600):
    r = subprocess.run([sys.executable, str(SCENARIOS), name, *args],
                       capture_output=True, text=True, timeout=timeout,
                       cwd=ROOT)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, (f"no RESULT from {name} (rc {r.returncode}):\n"
                   f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    assert "error" not in res, res.get("traceback", res["error"]) + r.stderr[-3000:]
    return res, r


def test_etc_count_matches_shell(panda_install):
    res, _ = run_scenario("etc_count")
    assert res["shell"] > 0
    assert res["count"] == res["shell"], res
    assert res["injection"]["state"] == "done", res["injection"]


def test_hello_both_ways(panda_install):
    res, _ = run_scenario("hello")
    assert res["first_two"] and res["third"], res
    assert res["msgs"] == ["hello from the guest!",
                           "today's lucky number is: 3",
                           "the number you sent the guest was: 31337"]


def test_revert_then_second_load(panda_install):
    res, _ = run_scenario("revert")
    assert res["first"] == res["shell"], res
    assert res["second"] == res["shell"], res


def test_c_paths_serve_everything(panda_install):
    """No Python on the hypercall path, the daemon started by the
    extension's injector (no plugin of ours needed in PANDA)."""
    res, _ = run_scenario("stats")
    assert res["count"] == res["shell"], res
    assert res["fast"] is True
    assert res["injector"] == "extension"
    assert res["hc"]["installed"] is True
    assert res["hc"]["handled"] > 0
    assert res["hc"]["handled"] == res["gpm"]["hypercalls"], res


def test_pypanda_example(panda_install):
    """examples/pypanda_etc_count.py, unchanged, under real PANDA."""
    r = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True,
                       text=True, timeout=600, cwd="/")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "entries (the shell says" in r.stdout


EACCES = -13  # GPM_HC_EACCES


def test_intruder_gets_nothing(panda_install):
    """Channel ownership on the pypanda path: a process that is neither
    the daemon nor hello can neither read nor write their channels, and
    hello's exchange is untouched."""
    res, _ = run_scenario("intruder")
    assert res["ownership"] is True, res
    for target, got in res["snoop"].items():
        for key in ("snoop_start", "snoop_read", "snoop_write",
                    "snoop_stop"):
            assert int(got[key]) == EACCES, (target, key, got)
    assert res["hello"][-1] == "the number you sent the guest was: 7", res
    assert not any("forged" in m for m in res["hello"]), res
    assert res["refused"] >= 8, res
