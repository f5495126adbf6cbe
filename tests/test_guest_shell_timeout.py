"""guest_shell's per-command timeout (issue 11), natively against the mock
hypercall of guest/lib/arch/mock.c: no emulator, so the test does not
depend on machine speed beyond generous bounds.

A request with bit 31 of its length set carries a u32 timeout in
milliseconds; without it the default (60 s) applies. A command whose time
is up is killed with its whole process group: the reply says 128 + 9 with
flag bit 2, and keeps what the command printed before.
"""

import os
import shutil
import struct
import subprocess
import time

import pytest

from test_guest_build import MOCK, MockHost, assert_clean_build, run_make

TIMED = 0x80000000
FLAG_TIMED_OUT = 4


@pytest.fixture(scope="module")
def mock_shell():
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    assert_clean_build(run_make("mock"))
    return MOCK / "guest_shell"


def timed_request(cmd, timeout_ms):
    return struct.pack("<II", len(cmd) | TIMED, timeout_ms) + cmd


def replies(data):
    out = []
    while data:
        status, out_len, err_len, flags = struct.unpack_from("<iIII", data)
        body = data[16:16 + out_len + err_len]
        out.append((status, body[:out_len], body[out_len:], flags))
        data = data[16 + out_len + err_len:]
    return out


def test_timeout_kills_the_process_group(mock_shell, tmp_path):
    h = MockHost(tmp_path)
    pidfile = tmp_path / "bg.pid"
    h.send("guest_shell", b"".join([
        # A command that never ends, with a child in its group.
        timed_request(f"echo started; sleep 1000 & echo $! > {pidfile}; "
                      "wait".encode(), 300),
        # Timeout 0: none; a quick command still answers normally.
        timed_request(b"echo quick", 0),
        struct.pack("<I", 0),
    ]))
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path))
    t0 = time.monotonic()
    proc = subprocess.run([str(mock_shell)], env=env, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0
    got = replies(h.received("guest_shell"))
    assert got[0][0] == 128 + 9 and got[0][1] == b"started\n"
    assert got[0][3] & FLAG_TIMED_OUT
    assert got[1] == (0, b"quick\n", b"", 0)
    assert len(got) == 2
    # The background sleep was in the group: it is gone too.
    bg = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(bg, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{bg}/stat") as f:
            if f.read().split(") ")[-1].startswith("Z"):
                break
        time.sleep(0.05)
    else:
        pytest.fail(f"the command's child {bg} survived the timeout")
    # Far below the 1000 s the command wanted (the bound is not tight).
    assert elapsed < 30


def test_untimed_request_keeps_the_old_format(mock_shell, tmp_path):
    h = MockHost(tmp_path)
    h.send("guest_shell", struct.pack("<I", 9) + b"echo 1; 2" +
           struct.pack("<I", 0))
    env = dict(os.environ, GPM_MOCK_DIR=str(tmp_path))
    proc = subprocess.run([str(mock_shell)], env=env, timeout=60)
    assert proc.returncode == 0
    status, out, _err, flags = replies(h.received("guest_shell"))[0]
    assert out == b"1\n" and status == 127 and flags == 0
