"""Tests of pandagpm.qemu.

The tests marked e2e boot QEMU from the generic x86_64 image's root
snapshot (about a second each).  One machine is shared by the tests that
only run commands; the life-cycle tests start their own.
"""

import gc
import hashlib
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pandagpm import image, qemu
from pandagpm.qemu import QemuMachine

ROOT = Path(__file__).resolve().parents[1]


def qemu_pids(needle):
    """Pids of processes whose command line contains ``needle``."""
    r = subprocess.run(["pgrep", "-f", needle], capture_output=True,
                       text=True)
    return [int(p) for p in r.stdout.split()]


def wait_gone(needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not qemu_pids(needle):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def img():
    return image.get_image("x86_64")


@pytest.fixture(scope="module")
def machine(img):
    m = QemuMachine(img)
    m.start()
    yield m
    m.stop()
    assert wait_gone(m.run_dir)


@pytest.mark.e2e
def test_revert_then_echo(machine):
    seconds = machine.revert("root")
    assert seconds < 10
    assert machine.run_serial_cmd("echo hi") == "hi"


@pytest.mark.e2e
def test_etc_listing_is_a_number(machine):
    n = int(machine.run_serial_cmd("ls -A /etc | wc -l"))
    assert n >= 10


@pytest.mark.e2e
def test_status_and_check(machine):
    assert machine.run_serial_cmd_status("(exit 3)") == (3, "")
    assert machine.run_serial_cmd_status("true") == (0, "")
    with pytest.raises(qemu.GuestCommandError) as info:
        machine.run_serial_cmd("echo oops; false", check=True)
    assert info.value.status == 1 and info.value.output == "oops"


@pytest.mark.e2e
def test_output_shapes(machine):
    # Quotes, comments, stderr, and output without a final newline.
    assert machine.run_serial_cmd("echo 'a b'  \"c\" # no") == "a b c"
    assert machine.run_serial_cmd("printf 'x\\ny'") == "x\ny"
    assert machine.run_serial_cmd("echo err >&2") == "err"
    assert machine.run_serial_cmd("id -u; id -un user") == "0\nuser"
    lines = machine.run_serial_cmd("seq 1 2000").split("\n")
    assert lines == [str(i) for i in range(1, 2001)]


@pytest.mark.e2e
def test_timeout_interrupts_and_recovers(machine):
    t = time.monotonic()
    with pytest.raises(qemu.SerialTimeout):
        machine.run_serial_cmd("sleep 20", timeout=1)
    assert time.monotonic() - t < 3
    assert machine.run_serial_cmd("echo back", timeout=10) == "back"


@pytest.mark.e2e
def test_copy_to_guest_round_trip(machine, tmp_path):
    data = os.urandom(48 * 1024 + 7)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    src.chmod(0o755)
    machine.copy_to_guest(src, "/tmp/blob.bin")
    out = machine.run_serial_cmd("sha256sum /tmp/blob.bin; stat -c %s.%a "
                                 "/tmp/blob.bin", check=True)
    digest, size_mode = out.split("\n")
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()
    assert size_mode == f"{len(data)}.755"
    # A revert puts the guest back: the file is gone.
    machine.revert()
    assert machine.run_serial_cmd_status("test -e /tmp/blob.bin")[0] == 1


@pytest.mark.e2e
def test_monitor(machine):
    assert "running" in machine.monitor("info status")
    assert "root" in machine.monitor("info snapshots")
    assert machine.qmp("query-status")["running"] is True


@pytest.mark.e2e
def test_revert_keeps_a_paused_vm_paused(machine):
    machine.qmp("stop")
    try:
        with pytest.raises(qemu.QemuError, match="paused"):
            machine.revert()
        machine.revert(wait=False)
        assert machine.qmp("query-status")["running"] is False
    finally:
        machine.qmp("cont")
    machine.wait_for_shell()
    assert machine.run_serial_cmd("echo ok") == "ok"


def gdb_packet(sock, payload):
    """Send one GDB remote packet and return the reply's payload."""
    body = payload.encode()
    sock.sendall(b"$%s#%02x" % (body, sum(body) % 256))
    data = b""
    while b"#" not in data.lstrip(b"+") or len(data.split(b"#")[-1]) < 2:
        chunk = sock.recv(4096)
        assert chunk, "the gdbstub closed the connection"
        data += chunk
    sock.sendall(b"+")
    return data.lstrip(b"+").split(b"#")[0].lstrip(b"$").decode()


@pytest.mark.e2e
def test_gdbstub_socket_answers(machine):
    """The gdb socket is QEMU's gdbstub: connecting pauses the VM, a
    detach resumes it."""
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(machine.gdb_socket_path)
        assert gdb_packet(s, "?").startswith("T05")
        assert machine.qmp("query-status")["running"] is False
        assert gdb_packet(s, "D") == "OK"
    deadline = time.monotonic() + 5
    while not machine.qmp("query-status")["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert machine.run_serial_cmd("echo resumed") == "resumed"


@pytest.mark.e2e
def test_exposed_paths(machine):
    assert os.path.getsize(machine.ram_path) == machine.ram_size == 512 << 20
    import stat as st
    assert st.S_ISSOCK(os.stat(machine.gdb_socket_path).st_mode)
    assert machine.gdb_socket_path.startswith(machine.run_dir)
    assert machine.pid in qemu_pids(machine.run_dir)


@pytest.mark.e2e
def test_ram_file_shows_kernel_data(machine, img):
    """Walk the kernel's task list in the shared RAM file and check the
    profile's offsets on live processes: init is pid 1, and a process run
    as `user` has cred.uid 1000."""
    k = img.profile["kernel"]
    off = k["offsets"]["task_struct"]
    page_offset = int(k["page_offset_base"], 16)
    kmap = int(k["start_kernel_map"], 16)

    def phys(virt):
        return virt - kmap if virt >= kmap else virt - page_offset

    def u64(virt):
        return struct.unpack("<Q", machine.read_phys(phys(virt), 8))[0]

    def u32(virt):
        return struct.unpack("<I", machine.read_phys(phys(virt), 4))[0]

    machine.revert()
    machine.run_serial_cmd("su user -c 'exec sleep 100' </dev/null "
                           ">/dev/null 2>&1 &")
    sleeper = int(machine.run_serial_cmd("sleep 0.3; pidof sleep"))
    machine.qmp("stop")
    try:
        tasks = {}
        init_task = img.symbol("init_task")
        t = init_task
        for _ in range(1000):
            comm = machine.read_phys(phys(t + off["comm"]), 16)
            cred = u64(t + off["cred"])
            tasks[u32(t + off["pid"])] = (
                comm.split(b"\0")[0].decode(),
                u32(cred + k["offsets"]["cred"]["uid"]))
            t = u64(t + off["tasks"]) - off["tasks"]
            if t == init_task:
                break
    finally:
        machine.qmp("cont")
    assert tasks[0] == ("swapper/0", 0)
    assert tasks[1] == ("init", 0)
    assert tasks[sleeper] == ("sleep", 1000)


@pytest.mark.e2e
def test_stop_leaves_no_process(img):
    m = QemuMachine(img).start()
    run_dir = m.run_dir
    assert qemu_pids(run_dir)
    m.stop()
    m.stop()  # idempotent
    assert not qemu_pids(run_dir)
    assert not os.path.exists(run_dir)


@pytest.mark.e2e
def test_context_manager_and_finalizer(img):
    with QemuMachine(img) as m:
        run_dir = m.run_dir
        assert m.run_serial_cmd("echo in") == "in"
    assert wait_gone(run_dir, 1)
    m = QemuMachine(img).start()
    run_dir = m.run_dir
    del m
    gc.collect()
    assert wait_gone(run_dir)
    assert not os.path.exists(run_dir)


@pytest.mark.e2e
def test_machine_survives_the_thread_that_started_it(img):
    """PR_SET_PDEATHSIG is per thread; starting from a worker thread that
    ends must not kill QEMU."""
    box = {}
    th = threading.Thread(target=lambda: box.update(m=QemuMachine(img)
                                                   .start()))
    th.start()
    th.join()
    m = box["m"]
    try:
        time.sleep(0.5)
        assert m.is_running()
        assert m.run_serial_cmd("echo alive") == "alive"
    finally:
        m.stop()


@pytest.mark.e2e
def test_killed_parent_leaves_no_qemu(img, tmp_path):
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pandagpm.image import ImageInfo
        from pandagpm.qemu import QemuMachine
        m = QemuMachine(ImageInfo.load({str(img.path)!r})).start()
        print(m.run_dir, m.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    run_dir, pid = r.stdout.split()
    assert wait_gone(run_dir, 5), f"QEMU {pid} outlived its parent"
    # The killed owner could not remove its run directory; the next
    # machine sweeps it.
    assert os.path.isdir(run_dir)
    with QemuMachine(img):
        assert not os.path.exists(run_dir)


@pytest.mark.e2e
def test_start_failure_reports_qemu_stderr(img):
    m = QemuMachine(img, extra_args=["-no-such-option"])
    with pytest.raises(qemu.QemuStartError, match="no-such-option"):
        m.start()
    assert not os.path.exists(m.run_dir)
    assert not m.is_running()


# -- unit tests (no QEMU) ----------------------------------------------------

PROFILE = {"qemu": {"binary": "qemu-system-x86_64",
                    "machine_args": ["-machine", "q35", "-m", "512M"],
                    "append": "console=ttyS0 nokaslr", "ram_size": 512 << 20,
                    "kernel": "vmlinuz", "initrd": "initrd.img",
                    "disk": "disk.qcow2"}}


def test_build_command_keeps_the_machine_args():
    argv = qemu.build_command(
        PROFILE, "/img", ram_path="/r/ram", disk_path="/r/d.qcow2",
        serial_path="/r/s", qmp_path="/r/q", gdb_path="/r/g",
        loadvm="root", extra_args=["-S"])
    assert argv[:5] == ["qemu-system-x86_64", "-machine", "q35", "-m",
                        "512M"]
    assert argv[argv.index("-kernel") + 1] == "/img/vmlinuz"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 nokaslr"
    assert ("memory-backend-file,id=mem,size=536870912,mem-path=/r/ram,"
            "share=on") in argv
    assert "chardev:gdb0" in argv and any("path=/r/g" in a for a in argv)
    assert argv[-3:] == ["-loadvm", "root", "-S"]


def test_sweep_removes_only_dead_owners(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, owner in (("dead", dead.pid), ("alive", os.getpid())):
        d = tmp_path / f"{qemu.RUN_DIR_PREFIX}{name}"
        d.mkdir()
        (d / "owner.pid").write_text(f"{owner}\n")
    other = tmp_path / "unrelated"
    other.mkdir()
    qemu._sweep_stale_runs(str(tmp_path))
    assert not (tmp_path / f"{qemu.RUN_DIR_PREFIX}dead").exists()
    assert (tmp_path / f"{qemu.RUN_DIR_PREFIX}alive").exists()
    assert other.exists()


def test_quote():
    assert qemu._quote("it's") == "'it'\\''s'"
