"""examples/pypanda_etc_count.py: one import line away from stock QEMU.

The example is written for pypanda. Switching its one import line to
``from pandagpm.host import Panda`` must make it run, unchanged otherwise,
on pandagpm's stock-QEMU host; the e2e test does exactly that and runs it
against the generic x86_64 image.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pandagpm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pypanda_etc_count.py"
PANDA_LINE = ("from pandagpm.pypanda import Panda  # noqa: E402  "
              "(the one line to switch)")
QEMU_LINE = ("from pandagpm.host import Panda  # noqa: E402  "
             "(the one line to switch)")


def switched_source():
    src = EXAMPLE.read_text()
    assert src.count(PANDA_LINE) == 1
    out = src.replace(PANDA_LINE, QEMU_LINE)
    changed = [a for a, b in zip(src.splitlines(), out.splitlines())
               if a != b]
    assert changed == [PANDA_LINE]
    return out


def test_example_switches_with_one_line():
    src = switched_source()
    assert "pandagpm.load_guest_plugin(panda, \"etc_count\"" in src
    assert "Panda(generic=\"x86_64\")" in src
    compile(src, str(EXAMPLE), "exec")


@pytest.mark.e2e
def test_example_on_stock_qemu(tmp_path):
    if not hasattr(pandagpm, "load_guest_plugin"):
        pytest.skip("pandagpm does not export load_guest_plugin yet "
                    "(pandagpm/__init__.py: 'load_guest_plugin': "
                    "'panda_host')")
    script = tmp_path / "etc_count_stock_qemu.py"
    script.write_text(switched_source())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(script)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "entries (the shell says" in r.stdout
