"""linjector and the load path on the real guest (issue 5's acceptance).

One machine for the module; every test starts from the ``root`` snapshot,
so each one injects a fresh daemon.
"""

import queue
import shutil
import time

import pytest

from pandagpm import channel_recv

pytestmark = pytest.mark.e2e

import archs  # noqa: E402  (tests/archs.py)


@pytest.fixture(scope="module", params=archs.arch_params())
def arch(request):
    archs.require(request.param)
    archs.guest_build(request.param)
    return request.param


@pytest.fixture(scope="module")
def panda(arch):
    from pandagpm.host import Panda

    p = Panda(generic=arch, verbose=True)
    p.start()
    yield p
    p.close()


def daemon_count(panda):
    """How many guest daemons run in the guest (by their argv)."""
    out = panda.run_serial_cmd("ps | grep -c '[g]uest_daemon'")
    return int(out.strip())


def load_etc_count(panda):
    got = queue.Queue()

    @channel_recv
    def on_count(channel_id: int, msg: bytes):
        got.put(msg)

    panda.load_guest_plugin("etc_count", on_count)
    msg = got.get(timeout=60)
    assert len(msg) == 4
    return int.from_bytes(msg, "little")


def test_etc_count_matches_the_shell(panda):
    panda.revert_sync("root")
    count = load_etc_count(panda)
    shell = int(panda.run_serial_cmd("ls -A /etc | wc -l").strip())
    assert count == shell
    # Make the comparison mean something: add an entry and count again.
    panda.run_serial_cmd("touch /etc/pandagpm-extra")
    panda.gpm.close_channel(panda.get_channel_from_name("etc_count"))
    assert load_etc_count(panda) == shell + 1


def sigblk(panda, pid):
    """The blocked-signal mask of a guest process, from /proc."""
    return panda.run_serial_cmd(f"grep SigBlk /proc/{pid}/status").split()[1]


def test_inject_while_the_shell_is_idle(panda):
    panda.revert_sync("root")
    shell_pid = panda.run_serial_cmd("echo $$").strip()
    shell_mask = sigblk(panda, shell_pid)
    pid = panda.ensure_daemon(timeout=30)
    assert pid > 1
    res = panda.last_injection
    assert res["state"] == "done"
    assert res["child"] == pid
    # The hijacked shell was restored: it still answers, as itself.
    assert panda.run_serial_cmd("echo still here") == "still here"
    assert panda.run_serial_cmd("echo $$").strip() == str(res["tgid"])
    assert daemon_count(panda) == 1
    # Signals were blocked only while injecting: the shell has its mask
    # back, and the daemon does not run with every signal blocked.
    assert sigblk(panda, shell_pid) == shell_mask
    assert sigblk(panda, pid) != "fffffffffffffeff"
    assert int(sigblk(panda, pid), 16) == int(shell_mask, 16)


def test_inject_while_a_busy_loop_runs(panda):
    panda.revert_sync("root")
    panda.run_serial_cmd("(while :; do :; done) & echo $! > /tmp/busy")
    try:
        assert panda.ensure_daemon(timeout=30) > 1
        assert load_etc_count(panda) > 0
        assert panda.run_serial_cmd("echo ok") == "ok"
        # The loop kept running through the injection.
        busy = panda.run_serial_cmd("cat /tmp/busy").strip()
        assert panda.run_serial_cmd(f"kill -0 {busy} && echo alive") == "alive"
    finally:
        panda.run_serial_cmd("kill $(cat /tmp/busy)")


def test_second_load_does_not_inject_again(panda):
    panda.revert_sync("root")
    load_etc_count(panda)
    first = panda.last_injection
    said = queue.Queue()

    @channel_recv
    def on_hello(channel_id: int, msg: str):
        said.put(msg)

    chan = panda.load_guest_plugin("hello", on_hello)
    assert panda.last_injection is first
    assert said.get(timeout=60) == "hello from the guest!"
    assert said.get(timeout=60) == "today's lucky number is: 3"
    chan.write((77).to_bytes(4, "little"))
    assert said.get(timeout=60) == "the number you sent the guest was: 77"
    assert daemon_count(panda) == 1


def test_require_root_with_only_non_root_processes(panda):
    from pandagpm import Timeout

    panda.revert_sync("root")
    # A non-root process that makes system calls all the time; the root
    # shell stays idle in read() and nothing presses Enter.
    panda.run_serial_cmd(
        "su user -c 'while :; do usleep 20000; done' >/dev/null 2>&1 &"
        " echo $! > /tmp/loop")
    # The root shell makes a few calls after a command (prompt, terminal
    # set-up) before it blocks in read(); let it get there. On a slow
    # machine it may still be on its way and get injected: then the
    # daemon is killed and the wait starts over, so the outcome does not
    # depend on the machine's speed.
    try:
        for attempt in range(4):
            time.sleep(2 + 3 * attempt)
            try:
                pid = panda.ensure_daemon(timeout=4, nudge=False)
            except Timeout as exc:
                err = exc
                break
            panda.run_serial_cmd(f"kill -9 {pid}")
            panda._injected = False
        else:
            pytest.fail("the root shell never went idle")
        msg = str(err)
        assert "root process" in msg
        assert "4 s" in msg
        seen = panda.last_injection["stops"]
        assert seen > 0, "the non-root loop made no system call"
        assert panda.last_injection["state"] == "waiting"
        assert daemon_count(panda) == 0
        assert panda.run_serial_cmd("echo ok") == "ok"
        assert panda.run_serial_cmd("id -u user") == "1000"
    finally:
        panda.run_serial_cmd("kill $(cat /tmp/loop)")


def entryloop_rounds(panda, out):
    """The last ``rounds=`` and ``bad=`` entryloop wrote to ``out``."""
    lines = [ln for ln in panda.run_serial_cmd(f"cat {out}").splitlines()
             if ln.startswith("entryloop rounds=")]
    if not lines:
        return 0, 0
    f = dict(kv.split("=") for kv in lines[-1].split()[1:])
    return int(f["rounds"]), int(f["bad"])


def inject_into_entryloop(panda, arch, how):
    """Starts guest/testprogs/entryloop ``how`` (int80 or sysenter) in the
    background, injects with proc_name ``entryloop`` and checks that the
    loop went on with every register it checks intact; returns the
    injection's result and the loop's pid."""
    exe, out = "/tmp/entryloop", f"/tmp/entryloop-{how}.out"
    panda.machine.copy_to_guest(
        str(archs.guest_build(arch) / "testprogs" / "entryloop"), exe)
    panda.run_serial_cmd(f"{exe} {how} > {out} 2>&1 & echo $! > /tmp/loop")
    loop = int(panda.run_serial_cmd("cat /tmp/loop").strip())
    try:
        deadline = time.monotonic() + 30
        while entryloop_rounds(panda, out)[0] < 50:
            assert time.monotonic() < deadline, \
                panda.run_serial_cmd(f"cat {out}")
            time.sleep(0.5)
        pid = panda.ensure_daemon(timeout=30, proc_name="entryloop",
                                  nudge=False)
        res = panda.last_injection
        assert res["state"] == "done" and res["tgid"] == loop
        assert res["child"] == pid
        assert load_etc_count(panda) > 0
        # The loop goes on, and no check of its registers failed.
        before = entryloop_rounds(panda, out)[0]
        deadline = time.monotonic() + 30
        while entryloop_rounds(panda, out)[0] <= before:
            assert time.monotonic() < deadline, "entryloop stopped"
            time.sleep(0.5)
        assert entryloop_rounds(panda, out)[1] == 0
        maps = panda.run_serial_cmd(f"cat /proc/{loop}/maps")
        return res, maps
    finally:
        panda.run_serial_cmd(f"kill {loop}")


def test_i386_a_process_entering_by_int80_is_hijacked(panda, arch):
    """A process whose calls all use int $0x80 is hijacked at
    entry_INT80_32 although it has a vDSO, and comes back exactly."""
    if arch != "i386":
        pytest.skip("i386's two syscall entries")
    panda.revert_sync("root")
    res, maps = inject_into_entryloop(panda, arch, "int80")
    assert res["entry"] == "entry_INT80_32", res
    assert res["bounces"] == 0, res
    assert "[vdso]" in maps


def test_i386_a_process_entering_by_sysenter_is_hijacked(panda, arch):
    """A process whose calls all go through the vDSO's __kernel_vsyscall
    (sysenter) is hijacked: the host bounced its call into
    entry_INT80_32, and it comes back exactly (its esp too)."""
    if arch != "i386":
        pytest.skip("i386's two syscall entries")
    panda.revert_sync("root")
    res, maps = inject_into_entryloop(panda, arch, "sysenter")
    assert res["entry"] == "entry_SYSENTER_32", res
    assert res["bounces"] >= 1, res
    assert "[vdso]" in maps
    assert panda.image.profile["kernel"]["user_syscall_entry"] == "sysenter"


def test_i386_the_shell_enters_by_sysenter(panda, arch):
    """busybox's shell (glibc) enters by sysenter, and so the idle
    shell's injection (the other tests') is the sysenter path."""
    if arch != "i386":
        pytest.skip("i386's two syscall entries")
    panda.revert_sync("root")
    shell = panda.run_serial_cmd("echo $$").strip()
    pid = panda.ensure_daemon(timeout=30)
    res = panda.last_injection
    assert res["tgid"] == int(shell) and res["child"] == pid
    assert res["entry"] == "entry_SYSENTER_32", res
    assert "[vdso]" in panda.run_serial_cmd(f"cat /proc/{shell}/maps")


def test_the_demo(tmp_path, arch):
    """``make demo``'s script (``make demo ARCH=...``): its count equals
    the shell's, same session."""
    import os
    import re
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "examples/demo.py", "--arch",
                           arch], cwd=root,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    count = re.search(r"^Guest /etc file count: (\d+)$", out, re.M)
    shell = re.search(r"ls -A /etc \| wc -l = (\d+)$", out, re.M)
    assert count and shell, out
    assert int(count.group(1)) == int(shell.group(1))
    assert "guest -> host: today's lucky number is: 3" in out
    assert "guest -> host: the number you sent the guest was: 31337" in out
