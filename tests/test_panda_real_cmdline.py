"""End-to-end tests of the C PANDA plugins under a real PANDA build, on a
``panda-system-x86_64`` command line booting pandagpm's generic x86_64
image (issue 10, acceptance items a, c, e, f and g; channel ownership of
issue 11 under PANDA; savevm/loadvm; linjector's retries with
``proc_name=*``; the one-line failures without ``-os`` or with a wrong
kernelinfo group; load, serve and unload with both plugins built with
AddressSanitizer).

One PANDA process serves the module, started as a user would::

    panda-system-x86_64 -machine q35 -cpu qemu64 -smp 1 -nodefaults \\
        -display none -net none -no-reboot -m 512M \\
        -kernel vmlinuz -initrd initrd.img -append '<profile append>' \\
        -os <image os string> \\
        -panda-arg osi_linux:kconf_file=<kernelinfo.conf> \\
        -panda-arg osi_linux:kconf_group=<group> \\
        -panda guest_plugin_manager:plugin_dir=guest/build/x86_64 \\
        -panda gpm_test_host:out=<results>,hostile=true,number=<N> \\
        -chardev socket,... -serial chardev:ser0 -monitor unix:...

``gpm_test_host`` (tests/panda/host_plugin) is a small C host plugin
built here with PANDA's own plugin rules, outside the PANDA tree (PANDA
finds it through ``PANDA_DIR``). It calls the API by name and through
``dlsym`` under the original names, loads ``etc_count`` and ``hello``,
and writes what it sees to a results file this test reads. The serial
console (a unix socket) is the guest's root shell; the HMP monitor (a
unix socket) takes ``plugin_cmd``, ``list_plugins`` and ``unload_plugin``.
Tests run in file order and share the guest.

Skips, saying why, when PANDA is not provisioned (``PANDA_PATH`` or the
``.panda-path`` file that ``make panda`` writes); with
``PANDAGPM_REQUIRE_PANDA=1`` (``make test-panda``) that is a failure
instead. Select with ``-m panda_real``. Every wait polls for its
condition with a generous bound: PANDA runs the guest under TCG only.
Run time: about 2.5 minutes on 2 cores (four PANDA boots, one of them
under ASan's slow unwinder, and two PANDA starts that stop at plugin
loading).
"""

import base64
import contextlib
import gzip
import hashlib
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import panda_guest  # tests/panda_guest.py

ROOT = Path(__file__).resolve().parents[1]
GUEST_BUILD = ROOT / "guest" / "build" / "x86_64"
TARGET = "x86_64-softmmu"

pytestmark = pytest.mark.panda_real

# Bounds on waits; the conditions are polled, so a fast machine is fast.
BOOT = 300.0
LONG = 180.0
SHORT = 60.0

# What gpm_test_host sends hello and asks hostile to flood with.
HELLO_NUMBER = 0x2A17F00D
FLOOD_MSGS = 2000
FLOOD_SIZE = 2048
# The probes gpm_test_host queues on "hostile" (see its hostile_setup()).
PROBE1 = b"PROBE1-" + b"a" * 57
PROBE2 = b"PROBE2-" + b"b" * 93
ENOSYS = -38


def _panda_tree():
    p = os.environ.get("PANDA_PATH")
    if not p and (ROOT / ".panda-path").is_file():
        p = (ROOT / ".panda-path").read_text().strip()
    return Path(p) if p else None


def _unavailable():
    """Why this suite cannot run here, or None."""
    tree = _panda_tree()
    if tree is None:
        return ("PANDA is not provisioned: set PANDA_PATH or run "
                "`make panda PANDA_SRC=...` (writes .panda-path)")
    binary = tree / "build" / TARGET / "panda-system-x86_64"
    if not binary.is_file():
        return f"{binary} does not exist (PANDA not built for {TARGET})"
    for tool in ("musl-gcc", "make", "cc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (needed to build the guest " \
                   "programs and the test plugin)"
    return None


_REASON = _unavailable()
if _REASON is not None:
    print(f"\ntests/test_panda_real_cmdline.py skipped: {_REASON}",
          file=sys.stderr)
    if os.environ.get("PANDAGPM_REQUIRE_PANDA") == "1":
        raise RuntimeError(f"PANDAGPM_REQUIRE_PANDA=1 but {_REASON}")
    pytest.skip(_REASON, allow_module_level=True)

from pandagpm.image import get_image  # noqa: E402
from pandagpm.qemu import _Serial  # noqa: E402
from waits import wait_for  # noqa: E402  (tests/waits.py)


def parse_results(text):
    """``name=value`` lines as a dict (the last one of a name wins)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_]+)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class Monitor:
    """PANDA's HMP monitor on a unix socket."""

    PROMPT = b"(qemu) "

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.sock.settimeout(1.0)
        self._read_to_prompt(SHORT)

    def _read_to_prompt(self, timeout):
        buf = b""
        deadline = time.monotonic() + timeout
        while not _ANSI.sub(b"", buf).endswith(self.PROMPT):
            if time.monotonic() > deadline:
                raise AssertionError(f"no monitor prompt within {timeout} s;"
                                     f" got {buf[-500:]!r}")
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError(f"monitor closed; got {buf[-500:]!r}")
            buf += data
        return _ANSI.sub(b"", buf).decode("utf-8", "replace")

    def cmd(self, line, timeout=SHORT):
        """Runs one command; returns its output without the echo."""
        self.sock.sendall(line.encode() + b"\n")
        text = self._read_to_prompt(timeout).replace("\r", "")
        text = text[:-len(self.PROMPT)]
        # The first line is the (redrawn) echo of the command.
        return text.split("\n", 1)[1] if "\n" in text else ""

    def plugins(self):
        """{name: index} of the loaded PANDA plugins."""
        out = {}
        for line in self.cmd("list_plugins").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                out[parts[1]] = int(parts[0])
        return out

    def close(self):
        self.sock.close()


class Guest:
    """The module's PANDA process: serial shell, monitor, results."""

    def __init__(self, proc, serial, monitor, results_path, log_path):
        self.proc = proc
        self.serial = serial
        self.monitor = monitor
        self.results_path = results_path
        self.log_path = log_path

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def results(self):
        try:
            return parse_results(self.results_path.read_text())
        except FileNotFoundError:
            return {}

    def wait_result(self, key, timeout=LONG):
        def got():
            if not self.alive():
                raise AssertionError(f"PANDA exited ({self.proc.returncode})"
                                     f"; log:\n{self.log()[-3000:]}")
            return self.results().get(key)
        return wait_for(got, timeout, f"'{key}=' from gpm_test_host")

    def sh_status(self, cmd, timeout=SHORT):
        """Runs ``cmd`` in the guest's root shell: (status, output)."""
        nonce = secrets.token_hex(6)
        line = (f"\x15printf 'GPM%s\\n' B{nonce}; eval {shlex.quote(cmd)}; "
                f"printf 'GPM%s:%s\\n' E{nonce} $?\n")
        pattern = re.compile(rb"GPMB" + nonce.encode() + rb"\r?\n(.*?)GPME"
                             + nonce.encode() + rb":(\d+)\r?\n", re.S)
        self.serial.write(line.encode())
        m = self.serial.wait_for(pattern, timeout, self.alive)
        out = m.group(1).decode("utf-8", "replace").replace("\r\n", "\n")
        return int(m.group(2)), out[:-1] if out.endswith("\n") else out

    def sh(self, cmd, timeout=SHORT):
        return self.sh_status(cmd, timeout)[1]

    def wait_for_shell(self, timeout=BOOT):
        deadline = time.monotonic() + timeout
        attempt = 2.0
        while True:
            try:
                self.sh_status("true", timeout=attempt)
                return
            except Exception:
                if not self.alive() or time.monotonic() > deadline:
                    raise
                attempt = min(attempt * 2, 20.0)

    def copy_in(self, local, guest_path, timeout=LONG):
        """Copies a file into the guest over the console (base64, gzip)."""
        data = Path(local).read_bytes()
        nonce = secrets.token_hex(6)
        q = shlex.quote(guest_path)
        self.serial.write((
            f"\x15printf 'GPM%s\\n' B{nonce}; stty -echo; "
            f"base64 -d | gunzip > {q}; st=$?; stty echo; "
            f"printf 'GPM%s:%s\\n' E{nonce} $st\n").encode())
        self.serial.wait_for(re.compile(rb"GPMB" + nonce.encode()
                                        + rb"\r?\n"), timeout, self.alive)
        time.sleep(0.2)
        encoded = base64.encodebytes(gzip.compress(data, 6, mtime=0))
        for i in range(0, len(encoded), 76 * 32):
            self.serial.write(encoded[i:i + 76 * 32], timeout=timeout)
        self.serial.write(b"\x04")
        m = self.serial.wait_for(re.compile(rb"GPME" + nonce.encode()
                                            + rb":(\d+)\r?\n"),
                                 timeout, self.alive)
        assert m.group(1) == b"0", f"writing {guest_path} failed"
        got = self.sh(f"md5sum {q}").split()
        assert got and got[0] == hashlib.md5(data).hexdigest(), got
        self.sh(f"chmod 755 {q}")


def _run_ok(argv, what):
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, f"{what} failed:\n{r.stdout}\n{r.stderr}"


def _make(args, what):
    r = subprocess.run(["make", "--no-print-directory", "-s", *args],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{what} failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Guest programs, both plugins in the PANDA tree, gpm_test_host."""
    tree = _panda_tree()
    _make(["-C", str(ROOT / "guest")], "make -C guest")
    _make(["-C", str(ROOT / "guest" / "testprogs")],
          "make -C guest/testprogs")
    # Rebuilds panda_guest_plugin_manager.so and panda_linjector.so from
    # this checkout, in the tree where PANDA loads them from.
    _make(["-C", str(ROOT), "panda-plugins-check", f"PANDA_PATH={tree}"],
          "make panda-plugins-check")
    scratch = tmp_path_factory.mktemp("gpm_test_host")
    panda_dir = panda_guest.build_host_plugin(
        tree, TARGET.removesuffix("-softmmu"), scratch)
    for name in ("hello", "etc_count", "guest_daemon"):
        assert (GUEST_BUILD / name).is_file(), name
    return {"tree": tree, "panda_dir": panda_dir}


def panda_command(tree, image, run, extra_panda=()):
    """The panda-system-x86_64 argv for our image (see the module doc)."""
    q = image.profile["qemu"]
    return [
        str(tree / "build" / TARGET / "panda-system-x86_64"),
        "-machine", "q35", "-cpu", "qemu64", "-smp", "1", "-m", "512M",
        "-nodefaults", "-display", "none", "-net", "none", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", q["append"],
        "-chardev", f"socket,id=ser0,path={run / 'serial.sock'},server,nowait",
        "-serial", "chardev:ser0",
        "-monitor", f"unix:{run / 'monitor.sock'},server,nowait",
        "-os", image.os_string,
        "-panda-arg", f"osi_linux:kconf_file={image.kernelinfo_path}",
        "-panda-arg", f"osi_linux:kconf_group={image.kernelinfo_group}",
        *extra_panda,
    ]


def _connect(path, proc, timeout=SHORT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _popen(built, run, argv, env_extra=None):
    env = dict(os.environ, PANDA_DIR=str(built["panda_dir"]))
    env.update(env_extra or {})
    env.pop("EXTRA_GUEST_PLUGINS_PATH", None)  # plugin_dir= is the path
    with open(run / "panda.log", "wb") as logf:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, env=env,
                                cwd=str(run))


@contextlib.contextmanager
def booted(built, run, extra_panda, env_extra=None):
    """PANDA booting the image with ``extra_panda``; a Guest whose shell
    answers."""
    image = get_image("x86_64", progress=False)
    log = run / "panda.log"
    proc = _popen(built, run, panda_command(built["tree"], image, run,
                                            extra_panda), env_extra)
    g = None
    try:
        serial = _Serial(_connect(run / "serial.sock", proc),
                         str(run / "serial.log"))
        mon_sock = run / "monitor.sock"
        wait_for(lambda: mon_sock.exists() or proc.poll() is not None,
                 SHORT, "the monitor socket")
        g = Guest(proc, serial, Monitor(mon_sock), run / "results.txt", log)
        g.wait_for_shell()
        yield g
    except Exception:
        print(f"PANDA log:\n{log.read_text(errors='replace')[-4000:]}",
              file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if g is not None:
            g.serial.close()
            g.monitor.close()


@pytest.fixture(scope="module")
def guest(built, tmp_path_factory):
    run = tmp_path_factory.mktemp("panda_run")
    # A qcow2 drive to hold the snapshot of test_snapshot_load.
    disk = run / "snap.qcow2"
    _run_ok([str(built["tree"] / "build" / "qemu-img"), "create", "-q",
             "-f", "qcow2", str(disk), "64M"], "qemu-img create")
    with booted(built, run, [
        "-drive", f"if=none,id=snap,format=qcow2,file={disk}",
        "-panda", f"guest_plugin_manager:plugin_dir={GUEST_BUILD}",
        "-panda", (f"gpm_test_host:out={run / 'results.txt'},hostile=true,"
                   f"number={HELLO_NUMBER},flood={FLOOD_MSGS},"
                   f"size={FLOOD_SIZE}"),
    ]) as g:
        yield g


# --------------------------------------------------------------------------
# (a) the C host plugin gets etc_count's count, equal to ls -A /etc | wc -l
# --------------------------------------------------------------------------

def daemon_ready(guest):
    """True once the daemon said hello; else makes the shell run a
    command, whose system calls are what linjector hijacks."""
    if "guest daemon ready" in guest.log():
        return True
    guest.sh("true")
    return False


def test_etc_count_equals_ls(guest):
    wait_for(lambda: daemon_ready(guest), LONG,
             "linjector to start the guest daemon")
    count = int(guest.wait_result("etc_count"))
    assert count == int(guest.sh("ls -A /etc | wc -l"))
    res = guest.results()
    assert res["api_same"] == "1", res
    assert int(res["etc_count_chan"]) > 0
    assert res["lookup_hello"] == "1"
    assert res["lookup_unknown"] == "0 error=-2", res  # GPM_ENOENT
    assert int(res["anon_chan"]) > 0
    assert res["anon_write"] == "0"
    log = guest.log()
    assert "linjector: injected through pid" in log, log[-3000:]
    assert "FAILED" not in log


# --------------------------------------------------------------------------
# (c) hello, both ways
# --------------------------------------------------------------------------

def test_hello_both_ways(guest):
    assert guest.wait_result("hello_3") == \
        f"the number you sent the guest was: {HELLO_NUMBER}"
    res = guest.results()
    assert res["hello_1"] == "hello from the guest!"
    assert res["hello_2"] == "today's lucky number is: 3"
    assert res["hello_sent"] == f"{HELLO_NUMBER} error=0"


# --------------------------------------------------------------------------
# (e) plugin_cmd "gpm list", help
# --------------------------------------------------------------------------

def test_monitor_commands(guest):
    def listed():
        out = guest.monitor.cmd('plugin_cmd "gpm list"')
        return out if ("exited, status 0x0" in out
                       and out.count("exited") >= 2) else None
    out = wait_for(listed, LONG, "etc_count and hello to exit")
    assert re.search(r"etc_count\s+channel \d+\s+pid \d+ exited, status "
                     r"0x0", out), out
    assert re.search(r"hello\s+channel \d+\s+pid \d+ exited, status 0x0",
                     out), out
    assert re.search(r"guest_daemon\s+queued 0 msg / 0 bytes, started",
                     out), out
    assert "closed, plugin exited" in out or "not started" not in out, out
    assert re.search(r"\(anonymous\)\s+queued 1 msg / 10 bytes, not "
                     r"started yet", out), out
    assert "hostile" in out

    assert guest.monitor.cmd("plugin_cmd gpm-list") == out

    stats = guest.monitor.cmd('plugin_cmd "gpm stats"')
    m = re.search(r"errors (\d+), doorbell queries (\d+)", stats)
    assert m, stats
    assert m.group(1) == "0", stats  # no guest error in a healthy run
    assert int(m.group(2)) >= 1, stats  # at least the daemon asked

    for cmd in ("plugin_cmd help", 'plugin_cmd "gpm help"'):
        out = guest.monitor.cmd(cmd)
        assert 'plugin_cmd "gpm list"' in out, out
        assert "gpm stats" in out, out
    assert "plugin_cmd" in guest.monitor.cmd("help plugin_cmd")


# --------------------------------------------------------------------------
# (g) the hostile guest program, run from the shell
# --------------------------------------------------------------------------

def _hostile_expectations():
    """What gpm/abi.h documents for each attack (shared with the stock
    QEMU suite); PANDA has no doorbell page, so op 8 is ENOSYS here."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_e2e_guest import DEFAULT_GUEST_QUOTA, HOSTILE_EXPECT
    finally:
        sys.path.pop(0)
    # OSI names the caller of each hypercall, so the per-process quota of
    # anonymous channels holds as on the stock-QEMU host.
    return dict(HOSTILE_EXPECT, op_8=ENOSYS,
                getmgr_count=DEFAULT_GUEST_QUOTA)


def test_hostile_guest(guest):
    expect = _hostile_expectations()
    exe = GUEST_BUILD / "testprogs" / "hostile"
    guest.copy_in(exe, "/tmp/hostile")
    guest.sh("( /tmp/hostile > /tmp/hostile.out 2>&1; "
             "echo exit=$? >> /tmp/hostile.out ) &")
    done = guest.wait_result("flood_done", timeout=LONG * 2)
    assert done == f"{FLOOD_MSGS} bad=0", guest.results()

    def finished():
        r = parse_results(guest.sh("cat /tmp/hostile.out"))
        return r if "exit" in r else None
    res = wait_for(finished, LONG, "hostile to exit")
    assert res["exit"] == "0", res
    wrong = {}
    for name, want in expect.items():
        got = int(res[name]) if name in res else None
        ok = got in want if isinstance(want, set) else got == want
        if not ok:
            wrong[name] = (got, want)
    assert not wrong, f"results that differ from gpm/abi.h: {wrong}"
    assert res["zero_page_after"] == "zero"
    assert res["straddle_after"] == "zero"
    assert res["read_probe1"] == "64" and res["read_probe2"] == "100"
    assert res["read_probe1_data"].encode() == PROBE1
    assert res["read_probe2_data"].encode() == PROBE2
    assert res["getchan_self_matches"] == "1"

    host = guest.results()
    assert host["hostile_pre"] == f"{1 << 20},{1 << 20},4096,12", host
    assert host["hostile_big_ok"] == "1" and host["hostile_zero_ok"] == "1"
    assert host["flood_sent"] == "0"
    # The host survived it, and so did the guest.
    assert guest.alive()
    assert guest.sh("echo ok") == "ok"


# --------------------------------------------------------------------------
# Channel ownership under PANDA: OSI names each hypercall's caller
# --------------------------------------------------------------------------

def test_intruder_cannot_use_the_daemon_channel(guest):
    """A guest process that is not the injected daemon gets EACCES on the
    daemon's channel (guest/testprogs/intruder.c), as on stock QEMU."""
    out = guest.monitor.cmd('plugin_cmd "gpm channels"')
    m = re.search(r"^\s*(\d+)\s+daemon\s+guest_daemon", out, re.M)
    assert m, out
    guest.copy_in(GUEST_BUILD / "testprogs" / "intruder", "/tmp/intruder")
    res = parse_results(guest.sh(f"CHAN_ID={m.group(1)} /tmp/intruder "
                                 "flood 1", timeout=LONG))
    assert res.get("done") == "flood", res
    assert int(res["flood_last"]) == -13, res  # GPM_HC_EACCES
    assert res["flood_taken"] == "0", res
    stats = guest.monitor.cmd('plugin_cmd "gpm stats"')
    assert "hypercalls" in stats, stats
    assert guest.sh("echo ok") == "ok"


# --------------------------------------------------------------------------
# A snapshot load: both plugins start over, a new daemon serves
# --------------------------------------------------------------------------

def test_snapshot_load(guest):
    """savevm/loadvm through the monitor: guest_plugin_manager closes the
    old state's channels, linjector injects a new daemon, and the host
    plugin's on_guest_agent_load PPP callback loads etc_count again."""
    assert guest.results().get("agent_load") == "1"
    assert guest.monitor.cmd("savevm s1", timeout=LONG).strip() == ""
    assert guest.monitor.cmd("loadvm s1", timeout=LONG).strip() == ""
    wait_for(lambda: "snapshot loaded; channels" in guest.log(), SHORT,
             "guest_plugin_manager to start over")

    def second_daemon():
        if guest.log().count("guest daemon ready") >= 2:
            return True
        guest.sh("true")
        return False
    wait_for(second_daemon, LONG, "a new guest daemon")
    assert guest.wait_result("agent_load") == "2"
    count = int(guest.wait_result("etc_count_again"))
    assert count == int(guest.sh("ls -A /etc | wc -l"))
    assert guest.log().count("linjector: injected through pid") == 2
    # The daemon restored with the snapshot was replaced, not joined (it
    # may take a moment to be reaped).
    wait_for(lambda: guest.sh("ps | grep -c '[g]uest_daemon'") == "1",
             SHORT, "a single guest_daemon")


# --------------------------------------------------------------------------
# (f) unload_plugin of both plugins; the guest keeps running
# --------------------------------------------------------------------------

def _unload(guest, name):
    idx = guest.monitor.plugins()[name]
    guest.monitor.cmd(f"unload_plugin {idx}")
    # PANDA unloads at its next safe point, not during the command.
    wait_for(lambda: name not in guest.monitor.plugins(), SHORT,
             f"{name} to be unloaded")


def test_unload_both_plugins(guest):
    loaded = guest.monitor.plugins()
    for name in ("guest_plugin_manager", "linjector", "gpm_test_host",
                 "syscalls2", "osi", "osi_linux"):
        assert name in loaded, loaded
    # The host plugin first: it holds pointers into guest_plugin_manager.
    _unload(guest, "gpm_test_host")
    assert guest.results().get("uninit") == "1"
    _unload(guest, "guest_plugin_manager")
    _unload(guest, "linjector")
    left = guest.monitor.plugins()
    assert "syscalls2" in left and "osi_linux" in left, left
    # The guest keeps running; its shell still answers.
    for _ in range(3):
        assert guest.sh("echo still here", timeout=LONG) == "still here"
    assert guest.sh("ls -A /etc | wc -l", timeout=LONG).strip().isdigit()
    assert guest.alive()
    # And PANDA exits cleanly, unloading what is left.
    guest.monitor.sock.sendall(b"quit\n")
    guest.proc.wait(timeout=SHORT)
    log = guest.log()
    assert guest.proc.returncode == 0, log[-3000:]
    for bad in ("Segmentation fault", "Aborted", "AddressSanitizer",
                "core dumped", "double free", "corrupted"):
        assert bad not in log, log[-3000:]


# --------------------------------------------------------------------------
# linjector on any process (proc_name=*), and failures that do not abort
# --------------------------------------------------------------------------

def test_any_process_with_retries(built, tmp_path):
    """With proc_name=* linjector may pick a process that cannot exec
    the payload (early boot, before /proc); it then tries another one,
    and the daemon starts either way."""
    with booted(built, tmp_path, [
        "-panda", (f"guest_plugin_manager:plugin_dir={GUEST_BUILD},"
                   "proc_name=*"),
    ]) as g:
        wait_for(lambda: daemon_ready(g), LONG, "the guest daemon")
        log = g.log()
        fails = log.count("linjector: injection failed")
        assert log.count("linjector: will try another process") == fails, \
            log[-3000:]
        assert "giving up" not in log
        out = g.monitor.cmd('plugin_cmd "gpm channels"')
        assert re.search(r"guest_daemon\s+queued 0 msg / 0 bytes, started",
                         out), out
        assert g.sh("echo ok") == "ok"


def test_no_os_profile_is_one_clear_line(built, tmp_path):
    """Without -os, syscalls2 cannot load: linjector says so in one line
    before loading it (no assert, no abort inside panda_require)."""
    image = get_image("x86_64", progress=False)
    argv = panda_command(built["tree"], image, tmp_path, [
        "-panda", f"guest_plugin_manager:plugin_dir={GUEST_BUILD}"])
    i = argv.index("-os")
    del argv[i:i + 2]
    proc = _popen(built, tmp_path, argv)
    try:
        proc.wait(timeout=LONG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    log = (tmp_path / "panda.log").read_text(errors="replace")
    assert proc.returncode != 0, log
    lines = [ln for ln in log.splitlines() if ln.startswith("linjector:")]
    assert len(lines) == 1, log
    assert "needs a Linux OS profile" in lines[0]
    assert "-os linux-64-" in lines[0]
    assert "guest_plugin_manager: linjector failed to load" in log
    # syscalls2 was never tried, so neither were its messages.
    assert "No OS profile specified" not in log
    assert "FAILED to load required plugin" not in log


def test_bad_kernelinfo_group_is_one_clear_line(built, tmp_path):
    """An osi_linux group missing from kconf_file: osi_linux fails (it
    lists the groups it has), linjector names the fix, nothing aborts
    inside panda_require."""
    image = get_image("x86_64", progress=False)
    argv = panda_command(built["tree"], image, tmp_path, [
        "-panda", f"guest_plugin_manager:plugin_dir={GUEST_BUILD}"])
    # osi_linux tries to download a missing group and appends it to the
    # file: give it a copy.
    conf = tmp_path / "kernelinfo.conf"
    shutil.copyfile(image.kernelinfo_path, conf)
    i = argv.index(f"osi_linux:kconf_file={image.kernelinfo_path}")
    argv[i] = f"osi_linux:kconf_file={conf}"
    i = argv.index(f"osi_linux:kconf_group={image.kernelinfo_group}")
    argv[i] = "osi_linux:kconf_group=no-such-group:64"
    proc = _popen(built, tmp_path, argv)
    try:
        proc.wait(timeout=LONG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    log = (tmp_path / "panda.log").read_text(errors="replace")
    assert proc.returncode != 0, log
    lines = [ln for ln in log.splitlines() if ln.startswith("linjector:")]
    assert len(lines) == 1, log
    assert "osi_linux" in lines[0] and "kconf_group" in lines[0], lines
    assert "FAILED to load required plugin" not in log


# --------------------------------------------------------------------------
# (f) under AddressSanitizer: uninit frees everything
# --------------------------------------------------------------------------

_LIBASAN = subprocess.run(["cc", "-print-file-name=libasan.so"],
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(not os.path.isabs(_LIBASAN),
                    reason="no libasan.so for the C compiler")
def test_unload_under_asan(built, tmp_path):
    """Both plugins built with -fsanitize=address (PANDA itself is not),
    preloaded libasan; load, serve etc_count, unload all three, quit. The
    report may hold PANDA's own leaks, but nothing of ours, and no memory
    error of any kind. dlclose() is made a no-op so that the report can
    still name our code after the unload (uninit_plugin runs as usual)."""
    tree = built["tree"]
    pdir = tmp_path / "pandadir"
    plugins = pdir / TARGET / "panda" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(built["panda_dir"] / TARGET / "panda" / "plugins"
                / "panda_gpm_test_host.so", plugins)
    for p in ("guest_plugin_manager", "linjector"):
        _make(["-C", str(tree / "build" / TARGET),
               "-f", str(tree / "panda" / "plugins" / "panda.mak"),
               "-f", str(tree / "panda" / "plugins" / p / "Makefile"),
               f"PLUGIN_SRC_ROOT={tree / 'panda' / 'plugins'}",
               f"BUILD_DIR={tree / 'build'}", f"PLUGIN_NAME={p}",
               f"PLUGIN_OBJ_DIR={tmp_path / 'obj' / p}",
               f"PLUGIN_TARGET_DIR={plugins}",
               "GPM_EXTRA_CFLAGS=-fsanitize=address -fno-omit-frame-pointer",
               "all"], f"building panda_{p}.so with ASan")
    shim = tmp_path / "noclose.so"
    (tmp_path / "noclose.c").write_text(
        "int dlclose(void *h) { (void)h; return 0; }\n")
    _run_ok(["cc", "-shared", "-fPIC", "-o", str(shim),
             str(tmp_path / "noclose.c")], "building the dlclose shim")
    report = tmp_path / "asan"
    env = {"PANDA_DIR": str(pdir),
           "LD_PRELOAD": f"{_LIBASAN} {shim}",
           # The slow unwinder gets through glib, which has no frame
           # pointers, so that a leak of ours is named as ours.
           "ASAN_OPTIONS": ("detect_leaks=1:halt_on_error=0:"
                            "fast_unwind_on_malloc=0:malloc_context_size=40:"
                            f"log_path={report}")}
    results = tmp_path / "results.txt"
    with booted(built, tmp_path, [
        "-panda", f"guest_plugin_manager:plugin_dir={GUEST_BUILD}",
        "-panda", f"gpm_test_host:out={results},number={HELLO_NUMBER}",
    ], env) as g:
        wait_for(lambda: daemon_ready(g), LONG, "the guest daemon")
        assert int(g.wait_result("etc_count")) > 0
        g.wait_result("hello_3")
        for name in ("gpm_test_host", "guest_plugin_manager", "linjector"):
            _unload(g, name)
        assert g.sh("echo still here", timeout=LONG) == "still here"
        g.monitor.sock.sendall(b"quit\n")
        g.proc.wait(timeout=LONG)
    text = "".join(f.read_text(errors="replace")
                   for f in tmp_path.glob("asan.*"))
    assert "AddressSanitizer" in text or text == "", text[:3000]
    errors = [ln for ln in text.splitlines()
              if "ERROR: AddressSanitizer" in ln
              and "detected memory leaks" not in ln]
    assert not errors, text[:6000]
    leaks = [b for b in re.split(r"\n(?=Direct leak|Indirect leak)", text)
             if b.startswith(("Direct leak", "Indirect leak"))
             and _allocated_by_us(b)]
    assert not leaks, "\n\n".join(leaks)[:6000]


# Frames of the allocator itself: libasan, glib's allocation functions,
# libc's printf family.
_ALLOCATOR = re.compile(r"libsanitizer|libglib-2\.0|libio/|sysdeps/|"
                        r"stdio-common/|libc\.so")
_OURS = re.compile(r"plugins/(guest_plugin_manager|linjector)/|"
                   r"panda_(guest_plugin_manager|linjector|gpm_test_host)"
                   r"\.so|tests/panda/host_plugin/")


def _allocated_by_us(block):
    """True if the first frame past the allocator is our code. PANDA's
    own leaks (e.g. of panda_get_args()) pass through our init_plugin
    further up; they are PANDA's."""
    for line in block.splitlines():
        m = re.match(r"\s*#\d+ 0x[0-9a-f]+ in (.*)$", line)
        if m and not _ALLOCATOR.search(m.group(1)):
            return bool(_OURS.search(m.group(1)))
    return False
