"""docs/processes-network.md and examples/httpd_forward.py run as written.

The Python blocks of docs/processes-network.md form one script (the first starts a
Panda, the last closes it); it runs against the generic x86_64 image
under stock QEMU. So does the example of the original's scenario.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "processes-network.md"
EXAMPLE = ROOT / "examples" / "httpd_forward.py"


def doc_script():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 4
    return "\n".join(blocks)


def test_doc_blocks_compile():
    compile(doc_script(), str(DOC), "exec")
    compile(EXAMPLE.read_text(), str(EXAMPLE), "exec")


def _run(path, tmp_path):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs qemu-system-x86_64")
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "guest")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(path)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.e2e
def test_doc_script_runs(tmp_path):
    script = tmp_path / "tools_doc.py"
    script.write_text(doc_script())
    (tmp_path / "marker.txt").write_text("served from the host\n")
    out = _run(script, tmp_path)
    assert "b'hi\\n'" in out
    assert "marker.txt" in out  # the host directory listing, via the guest
    assert re.search(r"^\s*1\s+0\s+root\s", out, re.M), out


@pytest.mark.e2e
def test_httpd_example_runs(tmp_path):
    out = _run(EXAMPLE, tmp_path)
    assert "-> 'hello from the guest web server'" in out
    assert re.search(r"\[::\]:80\s.*LISTEN\s+\d+/httpd", out), out
