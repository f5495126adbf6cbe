"""docs/panda.md's shell blocks, run exactly as written under real PANDA.

Every ```sh block of the page is run from the checkout's root with bash
(``set -e``). The one that starts ``panda-system-x86_64`` runs until the
guest daemon is ready, then is stopped. Skips (saying why) without PANDA
unless PANDAGPM_REQUIRE_PANDA is set.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "panda.md"

pytestmark = [pytest.mark.panda_real, pytest.mark.e2e]


def sh_blocks():
    return re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_the_page_has_its_blocks():
    blocks = sh_blocks()
    assert len(blocks) >= 5
    assert any("panda-system" in b or "PANDA_BIN" in b for b in blocks)


@pytest.fixture(scope="module")
def panda_ready():
    from pandagpm.pypanda import PandaNotFound, find_panda
    try:
        find_panda("x86_64")
        import pandare  # noqa: F401
    except (PandaNotFound, ImportError) as err:
        if os.environ.get("PANDAGPM_REQUIRE_PANDA"):
            pytest.fail(f"PANDAGPM_REQUIRE_PANDA is set but: {err}")
        pytest.skip(f"real PANDA is not provisioned (make panda): {err}")
    if not (ROOT.parent / "shared" / "panda").is_dir():
        pytest.skip("no ../shared/panda beside the checkout for the page's "
                    "make panda PANDA_SRC=... line")


def _run_long(block, ready, timeout=600):
    """Runs @block until @ready appears in its output, then stops it."""
    log = ROOT / "build" / "docs-panda-run.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        p = subprocess.Popen(["bash", "-ec", block], cwd=ROOT, stdout=out,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL,
                             start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                text = log.read_text(errors="replace")
                if ready in text:
                    return text
                if p.poll() is not None:
                    break
                time.sleep(0.5)
            pytest.fail(f"no {ready!r} (rc {p.poll()}):\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


@pytest.mark.parametrize("index", range(len(sh_blocks())))
def test_block_runs(panda_ready, index):
    block = sh_blocks()[index]
    if "PANDA_BIN" in block:
        text = _run_long(block, "guest daemon ready")
        assert "guest_plugin_manager: guest daemon ready (pid" in text
        return
    r = subprocess.run(["bash", "-ec", block], cwd=ROOT, capture_output=True,
                       text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (block, r.stdout[-3000:], r.stderr[-3000:])
    if "pypanda info" in block:
        assert "PANDA tree:" in r.stdout and "-os:" in r.stdout
    if "etc_count" in block:
        assert "entries (the shell says" in r.stdout
    if "--kernelinfo" in block:
        assert "task.per_cpu_offsets_addr" in r.stdout or "[" in r.stdout
