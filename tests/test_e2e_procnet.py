"""End-to-end tests of the process, socket and forwarding tools (issue 15)
against the real x86_64 guest under stock QEMU.

One ``Panda`` per module, reverted to ``root`` before each test. The guest
plugins come from ``make -C guest``; the guest's own busybox (``ps``,
``cat /proc/PID/maps``, ``httpd``) is the reference.
"""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

_MISSING = [t for t in ("musl-gcc", "qemu-system-x86_64")
            if shutil.which(t) is None]
if _MISSING:
    pytest.skip(f"needs {' and '.join(_MISSING)}", allow_module_level=True)

from pandagpm.errors import NotFound  # noqa: E402
from pandagpm.tools import ports, procs  # noqa: E402
from tools_session import (built, panda, run_command, session,  # noqa
                           wait_for)

pytestmark = pytest.mark.e2e

SHORT = 30.0
LONG = 120.0


def sh(session, cmd, timeout=SHORT):
    return session.panda.run_serial_cmd(cmd, timeout=timeout)


def guest_ps(session):
    """{pid: (ppid, comm)} from the guest's own busybox ps."""
    out = sh(session, "ps -o pid,ppid,comm")
    table = {}
    for line in out.splitlines()[1:]:
        f = line.split(None, 2)
        if len(f) == 3 and f[0].isdigit():
            table[int(f[0])] = (int(f[1]), f[2].strip())
    assert table, out
    return table


def same_name(ours, theirs):
    """Names equal, up to busybox's column cut (15 characters) and the
    work item a kworker's name shows at the moment (it changes)."""
    if ours.startswith("kworker/"):
        ours, theirs = ours.split("-")[0], theirs.split("-")[0]
    return ours == theirs or (len(theirs) >= 15 and ours.startswith(theirs))


def test_process_list_matches_guest_ps(session):
    """pid, ppid and name of every process equal busybox ps's; the only
    differences are the processes that started or ended between the
    snapshots (ps itself)."""
    ours1 = {p.pid: p for p in procs.list_processes(session)}
    theirs = guest_ps(session)
    ours2 = {p.pid: p for p in procs.list_processes(session)}
    assert 1 in ours1 and ours1[1].ppid == 0
    stable = {pid for pid in ours1 if pid in ours2}
    for pid in stable:
        assert pid in theirs, (pid, ours1[pid])
        assert theirs[pid][0] == ours1[pid].ppid, pid
        assert same_name(ours1[pid].name, theirs[pid][1]), \
            (ours1[pid], theirs[pid])
    extra = set(theirs) - set(ours1) - set(ours2)
    assert all(theirs[pid][1] == "ps" for pid in extra), \
        {pid: theirs[pid] for pid in extra}
    # The plugin sees itself (run from a memfd, its comm is the fd number).
    me = [p for p in ours1.values() if p.cmdline[:1] == ("procs",)]
    assert len(me) == 1 and me[0].uid == 0 and me[0].state == "R", me
    assert ours1[me[0].ppid].cmdline[0] == "guest_daemon"


def test_memory_maps_match_proc(session):
    """The maps of a running process equal its /proc/PID/maps."""
    pid = int(sh(session, "sleep 600 >/dev/null 2>&1 & echo $!").split()[-1])
    ref = sh(session, f"cat /proc/{pid}/maps").splitlines()
    maps = procs.memory_maps(session, pid)
    assert len(maps) == len(ref) > 3
    for m, line in zip(maps, ref):
        f = line.split(None, 5)
        start, end = (int(x, 16) for x in f[0].split("-"))
        assert (m.start, m.end, m.perms, m.offset, m.inode) == \
            (start, end, f[1], int(f[2], 16), int(f[4])), line
        assert m.path == (f[5].strip() if len(f) > 5 else ""), line
    assert any(m.path == "[stack]" for m in maps)
    sh(session, f"kill {pid}; wait {pid}")
    with pytest.raises(NotFound):
        procs.memory_maps(session, pid)


def start_httpd(session, port, root="/tmp/www"):
    """busybox httpd in the foreground of a background job; its pid."""
    sh(session, f"mkdir -p {root} && echo hello > {root}/index.html")
    out = sh(session, f"httpd -f -p {port} -h {root} >/dev/null 2>&1 & "
             "echo $!")
    return int(out.split()[-1])


def test_sockets_show_httpd_with_its_pid(session):
    pid = start_httpd(session, 8080)

    def listener():
        return [s for s in ports.list_sockets(session)
                if s.proto.startswith("tcp") and s.local_port == 8080
                and s.state == "LISTEN"]

    found = wait_for(listener, SHORT, "httpd listening on 8080")
    assert found[0].pid == pid and found[0].program == "httpd", found
    status, out = run_command(ports, session, ["ports", "-l"])
    assert status == 0
    line = next(ln for ln in out.splitlines() if ":8080" in ln)
    assert f"{pid}/httpd" in line and "LISTEN" in line, out
    # A connected pair appears too: both ends, each with its program.
    sh(session, "(sleep 20 | nc 127.0.0.1 8080 >/dev/null 2>&1 &)")

    def pair():
        est = [s for s in ports.list_sockets(session)
               if s.state == "ESTABLISHED"
               and 8080 in (s.local_port, s.remote_port)]
        progs = {(s.local_port == 8080, s.program) for s in est}
        return est if {(True, "httpd"), (False, "nc")} <= progs else None

    est = wait_for(pair, SHORT, "both ends of the connection")
    client = next(s for s in est if s.program == "nc")
    server = next(s for s in est if s.program == "httpd")
    assert client.remote_port == 8080 and server.remote_port == \
        client.local_port
    assert client.local_addr == "127.0.0.1"


def test_ps_command_table(session):
    status, out = run_command(procs, session, ["ps"])
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["PID", "PPID", "USER", "STAT"]
    assert "NAME" in lines[0]
    rows = {int(ln.split()[0]): ln.split() for ln in lines[1:]}
    assert rows[1][1] == "0" and rows[1][2] == "root"
    status, out = run_command(procs, session, ["ps", "--maps", "1"])
    assert status == 0
    ref = sh(session, "cat /proc/1/maps").splitlines()
    assert [ln.split()[0] for ln in out.splitlines()] == \
        [ln.split()[0] for ln in ref]
