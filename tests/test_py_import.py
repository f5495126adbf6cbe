"""The package surface: cheap import, lazy names, guest binary paths."""

import os
import subprocess
import sys

import pandagpm
from pandagpm import _paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_is_lazy():
    loaded = run(
        "import sys, pandagpm\n"
        "print(sorted(m for m in sys.modules if m.startswith('pandagpm')))"
    )
    assert loaded == "['pandagpm']"


def test_public_names_resolve():
    for name in pandagpm.__all__:
        assert getattr(pandagpm, name) is not None
    assert "GuestPluginManager" in dir(pandagpm)
    assert pandagpm.errors.GpmError is pandagpm.GpmError
    assert pandagpm.__version__


def test_unknown_attribute():
    try:
        pandagpm.no_such_thing
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_guest_bin_dirs_for_a_checkout():
    dirs = _paths.guest_bin_dirs()
    assert os.path.join(ROOT, "guest", "build") in dirs


def test_guest_dirs_registered_once():
    out = run(
        "import pandagpm, pandagpm._paths as p, pandagpm._gpm as g\n"
        "calls = []\n"
        "g.add_plugin_dir = calls.append\n"
        "pandagpm.GuestPluginManager(); pandagpm.GuestPluginManager()\n"
        "pandagpm.list_plugins()\n"
        "print(calls == p.guest_bin_dirs() and p._registered)"
    )
    assert out == "True"


def test_inprocess_demo_runs():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "inprocess_demo.py")],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hello from the (fake) guest" in out.stdout
    assert "(EAGAIN)" in out.stdout
