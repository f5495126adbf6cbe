"""Test-only: guests under real PANDA, without injection.

Shared by the per-target PANDA suites (tests/test_panda_real_arm.py,
tests/test_panda_real_i386.py, tests/test_panda_real_mips.py).

tests/panda/bare/hc_bare, a bare-metal program calling the guest
library's real gpm_hc() and stub, boots on QEMU's ARM ``virt`` machine or
MIPS ``malta`` board (``-kernel``, no image) and prints each raw result
on its UART: every result is the magic without plugins; with
guest_plugin_manager they are its answers.

On pandagpm's generic images the cross-built guest daemon is appended
to the image's initramfs as a second cpio archive and started from the
root shell, and gpm_test_host (tests/panda/host_plugin), built out of the
PANDA tree for the target with PANDA's panda.mak, loads etc_count and
hello through guest_plugin_manager's C API. Also the
``pandagpm.pypanda.Panda(generic=arch, osi=False)`` factory check, run in
a child (one Panda per process).

Every wait is bounded; a missing PANDA target, cross compiler or image
skips with the reason.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BARE = ROOT / "tests" / "panda" / "bare"
MAGIC = 0x1337C0D3
RUN_TIMEOUT = 120.0
HOST_PLUGIN_SRC = ROOT / "tests" / "panda" / "host_plugin"
PROMPT = re.compile(rb"root@pandagpm:[^#\n]*# ")
BOOT_TIMEOUT = 600.0
HELLO_NUMBER = 0x2A17F00D


def panda_install(arch):
    """The PANDA build of @arch with our plugin (a PandaInstall), or skip."""
    from pandagpm.pypanda import PandaNotFound, find_panda
    try:
        inst = find_panda(arch)
    except PandaNotFound as err:
        pytest.skip(str(err))
    if not (inst.plugin_dir(arch) / "panda_guest_plugin_manager.so").is_file():
        pytest.skip(f"{inst.tree} has no panda_guest_plugin_manager.so for "
                    f"{arch} (make panda builds it)")
    return inst


#: hc_bare's board per arch: machine, CPU, guest compiler, word size.
BOARDS = {
    "aarch64": ("virt", "cortex-a57", "aarch64-linux-gnu-gcc", 64),
    "arm": ("virt", "cortex-a15", "arm-linux-gnueabihf-gcc", 32),
    "mipsel": ("malta", "24Kf", "mipsel-linux-gnu-gcc", 32),
    "mips": ("malta", "24Kf", "mips-linux-gnu-gcc", 32),
    "mips64el": ("malta", "5KEf", "mips64el-linux-gnuabi64-gcc", 64),
    "mips64": ("malta", "5KEf", "mips64-linux-gnuabi64-gcc", 64),
}


def build_bare(arch):
    """tests/panda/bare/hc_bare for @arch (no warnings), or skip."""
    cc = BOARDS[arch][2]
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not found (scripts/install-system-deps.sh)")
    r = subprocess.run(["make", "-C", str(BARE), f"ARCH={arch}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning:" not in r.stdout + r.stderr
    return BARE / "build" / arch / "hc_bare"


def run_bare(inst, arch, program, panda_args=(), panda_dir=None):
    """Boots @program under PANDA until it prints DONE; returns
    (results {name: value}, PANDA's whole output). @panda_dir: PANDA_DIR
    (where extra plugins are), default the build's."""
    machine, cpu = BOARDS[arch][:2]
    argv = [str(inst.system_binary(arch)), "-L", str(inst.bios_dir()),
            "-machine", machine, "-cpu", cpu, "-m", "128M",
            "-nodefaults", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-kernel", str(program), *panda_args]
    env = dict(os.environ, PANDA_DIR=f"{panda_dir or inst.build}/")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    out = b""
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while b"DONE" not in out:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no DONE from {argv[0]} in "
                                   f"{RUN_TIMEOUT} s: {out[-2000:]!r}")
            chunk = proc.stdout.read()
            if chunk:
                out += chunk
            elif proc.poll() is not None:
                raise RuntimeError(f"PANDA exited with {proc.returncode}: "
                                   f"{out[-2000:]!r}")
            else:
                time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    text = out.decode(errors="replace")
    results = {m.group(1): int(m.group(2), 16) for m in
               re.finditer(r"^(\w+)=([0-9a-f]{16})\r?$", text, re.M)}
    return results, text


def check_untouched(results, text):
    """Without plugins the trap changes nothing and execution goes on."""
    assert "START" in text
    assert len(results) == 6, text
    assert set(results.values()) == {MAGIC}, text


def check_answers(results, text, arch):
    """guest_plugin_manager's answers, each the guest word's value."""
    assert len(results) == 6, text
    mask = (1 << BOARDS[arch][3]) - 1

    def err(code):
        return code & mask

    daemon = results["get_daemon"]
    assert 1 <= daemon < 1 << 31, text
    assert results["get_unknown"] == err(-1), text
    assert 1 <= results["get_manager"] < 1 << 31, text
    assert results["get_manager"] != daemon
    assert results["start_daemon"] == 0, text
    assert results["write_unknown"] == err(-9), text
    assert results["op_99"] == err(-38), text


def x86_64_build():
    """guest/build/x86_64 (built if missing), or skip."""
    x86 = ROOT / "guest" / "build" / "x86_64"
    if not (x86 / "etc_count").is_file():
        if shutil.which("musl-gcc") is None:
            pytest.skip("no x86_64 guest build and no musl-gcc")
        make(["-C", str(ROOT / "guest")], "x86_64 guest build")
    return x86


def bare_refusal(inst, arch, program, tmp_path):
    """hc_bare under PANDA with gpm_test_host asking for x86_64's etc_count
    and hello; returns (results, the refusal lines)."""
    x86 = x86_64_build()
    panda_dir = build_host_plugin(inst.tree, arch, tmp_path)
    results = tmp_path / "results.txt"
    _, text = run_bare(inst, arch, program, [
        "-panda", f"guest_plugin_manager:no_inject=true,plugin_dir={x86}",
        "-panda", f"gpm_test_host:out={results}"], panda_dir=panda_dir)
    return read_results(results), [
        ln for ln in text.splitlines() if "add_guest_plugin(etc_count)" in ln]


def cached_image(arch):
    """The newest cached generic image of @arch, or skip."""
    from pandagpm import image
    try:
        have = image.cached_images(arch)
    except Exception as err:  # an image module without this arch
        pytest.skip(f"no {arch} image support: {err}")
    if not have:
        pytest.skip(f"no cached {arch} generic image (make image ARCH={arch})")
    return have[0]


def cpio_newc(entries):
    """A newc cpio archive of (path, mode, data) entries, with TRAILER!!!."""
    out = b""
    for ino, (name, mode, data) in enumerate(
            list(entries) + [("TRAILER!!!", 0, b"")], start=1):
        nm = name.encode() + b"\0"
        hdr = (b"070701" + b"".join(b"%08x" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nm), 0)))
        out += hdr + nm
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def make(args, what):
    r = subprocess.run(["make", *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"{what}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"


class Console:
    """The guest's serial console on a unix socket."""

    def __init__(self, path, proc):
        deadline = time.monotonic() + 60
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(str(path))
                break
            except OSError:
                self.s.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PANDA did not open its serial socket")
                time.sleep(0.1)
        self.proc = proc
        self.buf = b""

    def expect(self, rx, timeout, nudge=False):
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while True:
            m = rx.search(self.buf)
            if m:
                got, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {rx.pattern!r}: {self.buf[-500:]!r}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"PANDA exited: {self.buf[-500:]!r}")
            if nudge and time.monotonic() - last > 5:
                self.s.sendall(b"\n")
                last = time.monotonic()
            self.s.settimeout(1.0)
            try:
                chunk = self.s.recv(65536)
            except OSError:
                continue
            self.buf += chunk


def build_host_plugin(tree, arch, tmp_path):
    """gpm_test_host for @arch's target, out of the PANDA tree @tree (with
    build/ inside), objects under @tmp_path; returns the PANDA_DIR under
    which PANDA finds it."""
    target = f"{arch}-softmmu"
    panda_dir = tmp_path / "pandadir"
    plugin_dir = panda_dir / target / "panda" / "plugins"
    plugin_dir.mkdir(parents=True)
    make(["-C", str(tree / "build" / target),
          "-f", str(tree / "panda" / "plugins" / "panda.mak"),
          "-f", str(HOST_PLUGIN_SRC / "Makefile"),
          "PLUGIN_NAME=gpm_test_host",
          f"PLUGIN_SRC_ROOT={HOST_PLUGIN_SRC.parent}",
          f"PLUGIN_SRC_DIR={HOST_PLUGIN_SRC}",
          f"PLUGIN_OBJ_DIR={tmp_path / 'obj'}",
          f"PLUGIN_TARGET_DIR={plugin_dir}",
          f"BUILD_DIR={tree / 'build'}",
          f"GPM_HEADER_DIR={ROOT / 'csrc' / 'panda'}", "all"],
         "building gpm_test_host")
    assert (plugin_dir / "panda_gpm_test_host.so").is_file()
    return panda_dir


def read_results(path):
    text = path.read_text() if path.exists() else ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def guest_build(arch):
    """The guest daemon and plugins cross-built for @arch; their folder."""
    make(["-C", str(ROOT / "guest"), f"GUEST_ARCH={arch}"], "guest build")
    return ROOT / "guest" / "build" / arch


def image_argv(panda, arch, img, initrd, extra):
    """panda-system-<arch> on @img with @initrd and @extra arguments."""
    from pandagpm.pypanda import machine_args
    prof = img.profile["qemu"]
    return [str(panda.system_binary(arch)), "-L", str(panda.bios_dir()),
            *machine_args(img), "-m", f"{prof['ram_size'] >> 20}M",
            "-kernel", str(img.kernel), "-initrd", str(initrd),
            "-append", prof["append"], *extra]


def refusal_lines(panda, arch, img, tmp_path, plugin_dir):
    """Starts PANDA on @img with guest_plugin_manager searching
    @plugin_dir and gpm_test_host asking for etc_count and hello (at its
    init, before the guest boots); returns (results, lines of PANDA's
    output about add_guest_plugin(etc_count))."""
    panda_dir = build_host_plugin(panda.tree, arch, tmp_path)
    results = tmp_path / "results.txt"
    argv = image_argv(panda, arch, img, img.initrd, [
        "-monitor", "none", "-serial", "none",
        "-panda", f"guest_plugin_manager:no_inject=true,"
                  f"plugin_dir={plugin_dir}",
        "-panda", f"gpm_test_host:out={results}"])
    env = dict(os.environ, PANDA_DIR=f"{panda_dir}/")
    log = tmp_path / "panda.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while "hello_chan" not in read_results(results):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    return read_results(results), [
        ln for ln in text.splitlines() if "add_guest_plugin(etc_count)" in ln]


def linux_exchange(panda, arch, img, tmp_path):
    """Boots @img under PANDA with the daemon in its initramfs, starts it
    from the root shell and lets gpm_test_host load etc_count and hello.
    Returns (results, the guest's own `ls -A /etc | wc -l`)."""
    build = guest_build(arch)
    panda_dir = build_host_plugin(panda.tree, arch, tmp_path)
    # The image's initramfs with the daemon appended (a second cpio). The
    # kernel looks for the next archive at a 4-byte boundary, skipping
    # zeros.
    initrd = tmp_path / "initrd.img"
    base = Path(img.initrd).read_bytes()
    base += b"\0" * (-len(base) % 512)
    initrd.write_bytes(base + cpio_newc([
        ("gpm", 0o040755, b""),
        ("gpm/guest_daemon", 0o100755, (build / "guest_daemon").read_bytes()),
    ]))
    results = tmp_path / "results.txt"
    ser = tmp_path / "ser.sock"
    argv = image_argv(panda, arch, img, initrd, [
        "-serial", f"unix:{ser},server,nowait", "-monitor", "none",
        "-panda", f"guest_plugin_manager:no_inject=true,plugin_dir={build}",
        "-panda", f"gpm_test_host:out={results},number={HELLO_NUMBER}"])
    env = dict(os.environ, PANDA_DIR=f"{panda_dir}/")
    log = open(tmp_path / "panda.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        con = Console(ser, proc)
        con.expect(PROMPT, BOOT_TIMEOUT, nudge=True)
        # Matched in the output only (the echoed command has no digits
        # after the '='), whatever earlier prompts are still buffered.
        con.s.sendall(b"echo ETC_COUNT=$(ls -A /etc | wc -l)\n")
        want = int(con.expect(re.compile(rb"ETC_COUNT=(\d+)\r?\n"), 120)
                   .rsplit(b"=", 1)[1])
        con.s.sendall(b"/gpm/guest_daemon\n")

        def done():
            got = read_results(results)
            return "hello_3" in got and "etc_count" in got

        deadline = time.monotonic() + 300
        while not done():
            text = (tmp_path / "panda.log").read_text(errors="replace")
            assert proc.poll() is None, text
            # Both plugins ended without their results: fail now.
            assert not ("etc_count exited" in text and "hello exited" in text
                        and not done()), text[-2000:]
            assert time.monotonic() < deadline, read_results(results)
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
    return read_results(results), want


def check_exchange(got, want):
    assert got["etc_count"] == str(want)
    assert got["hello_1"] == "hello from the guest!"
    assert got["hello_2"] == "today's lucky number is: 3"
    assert got["hello_3"] == f"the number you sent the guest was: {HELLO_NUMBER}"


PYPANDA_SCRIPT = r"""
import json, sys
from pandagpm.pypanda import Panda
panda = Panda(generic=sys.argv[1], osi=False, progress=False)
out = {}
@panda.queue_blocking
def run():
    panda.revert_sync("root")
    # A prompt the snapshot left unread would shift every answer by one:
    # read prompts until the marker's own output (not its echo) shows.
    panda.serial_console.sendline(b"echo $((40+2))GPM")
    for _ in range(3):
        if "42GPM" in panda.serial_console.expect(timeout=60):
            break
    out["uname"] = panda.run_serial_cmd("uname -m").strip()
    out["etc"] = panda.run_serial_cmd("ls -A /etc | wc -l").strip()
    panda.end_analysis()
panda.run()
print("RESULT=" + json.dumps(out), flush=True)
"""


def pypanda_factory(arch):
    """Runs PYPANDA_SCRIPT for @arch in a child; returns its results."""
    r = subprocess.run([sys.executable, "-c", PYPANDA_SCRIPT, arch],
                       capture_output=True, text=True, timeout=600,
                       cwd=str(ROOT))
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT=")]
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(line[0][len("RESULT="):])
