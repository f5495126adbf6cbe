"""The image's kernelinfo group under a real PANDA build (issue 10 item 3).

PANDA loads the ``root`` snapshot that PANDA itself saved
(:func:`pandagpm.pypanda.panda_snapshot`) with ``-os <img.os_string>``,
``osi``, ``osi_linux`` with the image's ``kconf_file``/``kconf_group`` and
PANDA's ``osi_test``, which prints osi_linux's process list and current
process at every address-space change.  The guest's own ``ps`` must show
the same processes, names and parents, and osi_linux must follow the
current process into ``ps``.

Skips, saying why, when PANDA is not provisioned; with
``PANDAGPM_REQUIRE_PANDA=1`` (``make test-panda``) that is a failure.
About 15 s once the snapshot exists.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.panda_real

from pandagpm import image, pypanda  # noqa: E402

try:
    INSTALL = pypanda.find_panda("x86_64")
    _REASON = None
except pypanda.PandaNotFound as err:
    INSTALL = None
    _REASON = str(err)
if _REASON is not None:
    print(f"\ntests/test_kernelinfo_panda_real.py skipped: {_REASON}",
          file=sys.stderr)
    if os.environ.get("PANDAGPM_REQUIRE_PANDA") == "1":
        raise RuntimeError(f"PANDAGPM_REQUIRE_PANDA=1 but {_REASON}")
    pytest.skip(_REASON, allow_module_level=True)

TIMEOUT = 240.0  # PANDA runs the guest under TCG, with osi_test printing


class Socket:
    """A unix socket QEMU listens on, read until a pattern shows up."""

    def __init__(self, path, proc, deadline):
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"PANDA never opened {path}")
            time.sleep(0.1)
        self.s = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.s.settimeout(0.2)
        self.proc = proc
        self.buf = b""

    def send(self, data):
        self.buf = b""
        self.s.sendall(data)

    def until(self, pattern, deadline):
        while not re.search(pattern, self.buf):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; "
                                     f"got {self.buf[-500:]!r}")
            if self.proc.poll() is not None:
                raise AssertionError(f"PANDA exited ({self.proc.returncode})"
                                     f" waiting for {pattern!r}")
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError("PANDA closed the socket")
            self.buf += chunk
        return self.buf.decode(errors="replace")


def osi_test_lists(text):
    """osi_test's process lists: [{pid: (name, ppid)}], in order."""
    lists = []
    for body in re.findall(r"Process list \(\d+ procs\):\n(.*?)\n\n", text,
                           re.S):
        procs = {}
        for line in body.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[-1].isdigit() and \
                    parts[-2].isdigit():
                procs[int(parts[-2])] = (" ".join(parts[:-2]),
                                         int(parts[-1]))
        lists.append(procs)
    return lists


def test_osi_linux_process_list_matches_ps(tmp_path):
    img = image.get_image("x86_64", progress=True)
    snap = pypanda.panda_snapshot("x86_64", install=INSTALL)
    disk = tmp_path / "disk.qcow2"  # PANDA may write to what it loads
    shutil.copyfile(snap, disk)
    ser, mon = str(tmp_path / "serial.sock"), str(tmp_path / "monitor.sock")
    kconf = img.kernelinfo_path
    argv = [str(INSTALL.system_binary("x86_64")), "-L",
            str(INSTALL.bios_dir()), *pypanda.machine_args(img),
            "-m", f"{img.profile['qemu']['ram_size'] >> 20}M",
            "-kernel", str(img.kernel), "-initrd", str(img.initrd),
            "-append", img.profile["qemu"]["append"],
            "-drive", f"if=none,id=gpmsnap,format=qcow2,file={disk}",
            "-loadvm", "root",
            "-serial", f"unix:{ser},server,nowait",
            "-monitor", f"unix:{mon},server,nowait",
            "-os", img.os_string,
            "-panda", "osi",
            "-panda", f"osi_linux:kconf_file={kconf},"
                      f"kconf_group={img.kernelinfo_group}",
            "-panda", "osi_test"]
    if shutil.which("stdbuf"):
        argv = ["stdbuf", "-oL"] + argv
    out_path = tmp_path / "panda.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + TIMEOUT
        s = Socket(ser, proc, deadline)
        m = Socket(mon, proc, deadline)
        m.until(rb"\(qemu\) ", deadline)
        # The markers are computed, so the echoed command line does not
        # match them.
        s.send(b"echo READY-$((6*7))\n")
        s.until(rb"READY-42", deadline)
        s.send(b"ps -o pid,ppid,comm; echo PS-DONE-$((6*7))\n")
        ps = s.until(rb"PS-DONE-42", deadline)
        s.send(b"echo AFTER-$((6*7))\n")
        s.until(rb"AFTER-42", deadline)
        m.send(b"quit\n")
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out_path.read_text(errors="replace")
    assert "Assertion" not in text and "failed to read group" not in text, \
        text[-3000:]

    want = {}
    for line in ps.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            want[int(parts[0])] = (parts[2], int(parts[1]))
    ps_pid = next(pid for pid, (name, _pp) in want.items() if name == "ps")
    lists = osi_test_lists(text)
    assert lists, text[-3000:]
    seen = lists[-1]
    assert len(want) > 20 and len(seen) > 20
    for pid, (name, ppid) in want.items():
        if name.startswith("kworker") or pid == ps_pid:
            continue  # kernel workers come and go; ps may have exited
        assert seen.get(pid) == (name[:15], ppid), \
            f"ps shows {pid} {name} (parent {ppid}), osi_linux {seen.get(pid)}"
    # osi_linux follows the current process into ps, child of the shell.
    shell = want[ps_pid][1]
    current = re.findall(r"Current process: (\S+) PID:(\d+) PPID:(\d+)", text)
    assert ("ps", str(ps_pid), str(shell)) in current, current[-10:]
