"""docs/tools.md's blocks, run exactly as written on the real guest.

Every ```sh block runs with ``bash -e`` in an empty directory, with a
``pandagpm`` on PATH that is this checkout's ``python -m pandagpm`` (what
the installed entry point runs); the ```python block runs with the venv's
Python. The mount block skips, saying why, where FUSE cannot be mounted.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tools.md"

pytestmark = pytest.mark.e2e


def blocks(lang):
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(),
                      re.S | re.M)


def test_the_page_has_its_blocks():
    assert len(blocks("sh")) >= 3 and len(blocks("python")) == 1


@pytest.fixture
def shell_env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "pandagpm"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pandagpm '
                       '"$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PANDAGPM_SESSION"}
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(ROOT)
    work = tmp_path / "work"
    work.mkdir()
    return env, work


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_sh_block_runs(shell_env, index):
    block = blocks("sh")[index]
    if "pandagpm mount" in block:
        from pandagpm.tools.mount import fuse_available

        ok, why = fuse_available()
        if not ok:
            print(f"\nmount block skipped: {why}")
            pytest.skip(f"FUSE cannot be mounted here: {why}")
    env, work = shell_env
    r = subprocess.run(["bash", "-ec", block], cwd=work, env=env,
                       capture_output=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-3000:]
    if "exit status $?" in block:
        assert b"exit status 3" in r.stdout
        assert b"to stderr" in r.stderr
    if "cat /tmp/note.txt" in block:
        assert b"hello from the host\n" in r.stdout


def test_python_block_runs(tmp_path):
    r = subprocess.run([sys.executable, "-c", blocks("python")[0]],
                       cwd=tmp_path, capture_output=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-3000:]
    assert b"17 bytes" in r.stdout
    assert b"the guest says: No such file or directory" in r.stdout
