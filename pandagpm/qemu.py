"""Run stock QEMU as pandagpm's real host.

:class:`QemuMachine` starts ``qemu-system-*`` from a generic image (see
:mod:`pandagpm.image`), restores the image's ``root`` snapshot, and gives
the host four doors into the guest:

* the **serial console** (a unix socket, driven by this module:
  :meth:`QemuMachine.run_serial_cmd`, :meth:`QemuMachine.copy_to_guest`);
* the **monitor** (QMP on a unix socket; :meth:`QemuMachine.monitor` runs
  HMP commands through ``human-monitor-command``, :meth:`QemuMachine.qmp`
  runs QMP commands);
* the **gdbstub** on a unix socket, :attr:`QemuMachine.gdb_socket_path`,
  for the C gdb client (connecting to it pauses the VM);
* **guest RAM** in a shared file, :attr:`QemuMachine.ram_path` of
  :attr:`QemuMachine.ram_size` bytes; guest physical address ``p`` is at
  file offset ``p - ram_base``, where :attr:`QemuMachine.ram_base` is 0
  on x86_64 (all 512 MiB lie below the PCI hole) and 0x40000000 on the
  ARM ``virt`` board.  :meth:`QemuMachine.read_phys` reads it from
  Python.

QEMU never outlives its owner: the child gets ``PR_SET_PDEATHSIG`` =
SIGKILL (from a long-lived spawner thread, because the death signal is tied
to the thread that forked), every machine has a ``weakref.finalize`` that
kills QEMU at garbage collection and at interpreter exit, and run
directories left by killed owners are swept when the next machine starts.
"""

from __future__ import annotations

import base64
import gzip
import concurrent.futures
import ctypes
import hashlib
import itertools
import mmap
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Callable, Sequence

from ._qemu_io import (  # noqa: F401  (_QMP, _Serial, _quote: for tests)
    QemuError, QemuGone, QemuStartError, SerialTimeout, GuestCommandError,
    _QMP, _Serial, _quote,
)

__all__ = [
    "QemuMachine", "QemuError", "QemuGone", "QemuStartError", "SerialTimeout",
    "GuestCommandError", "RUN_DIR_PREFIX", "build_command",
]

#: Every run directory's name starts with this (``pgrep -f`` finds ours).
RUN_DIR_PREFIX = "pandagpm-run-"

_PR_SET_PDEATHSIG = 1
_OWNER_FILE = "owner.pid"

# The errors are this module's API; they live in _qemu_io with the console.
for _cls in (QemuError, QemuGone, QemuStartError, SerialTimeout,
             GuestCommandError):
    _cls.__module__ = __name__
del _cls


def build_command(profile: dict, image_dir: str, *, ram_path: str,
                  disk_path: str, serial_path: str, qmp_path: str,
                  gdb_path: str, loadvm: str | None,
                  extra_args: Sequence[str] = ()) -> list[str]:
    """Return the full QEMU argv for an image profile and run paths.

    ``profile["qemu"]["machine_args"]`` holds the options that must be
    identical between the boot that saved the snapshot and every load;
    this function only adds the per-run paths around them.
    """
    q = profile["qemu"]
    ram_size = int(q["ram_size"])
    argv = [q["binary"]]
    argv += q["machine_args"]
    argv += [
        "-kernel", os.path.join(image_dir, q["kernel"]),
        "-initrd", os.path.join(image_dir, q["initrd"]),
        "-append", q["append"],
        "-object", (f"memory-backend-file,id=mem,size={ram_size},"
                    f"mem-path={ram_path},share=on"),
        "-machine", "memory-backend=mem",
        "-drive", f"file={disk_path},if=none,id=snapdisk,format=qcow2",
        "-chardev", f"socket,id=ser0,path={serial_path},server=on,wait=off",
        "-serial", "chardev:ser0",
        "-chardev", f"socket,id=qmp0,path={qmp_path},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
        "-chardev", f"socket,id=gdb0,path={gdb_path},server=on,wait=off",
        "-gdb", "chardev:gdb0",
    ]
    if loadvm:
        argv += ["-loadvm", loadvm]
    argv += list(extra_args)
    return argv


# --------------------------------------------------------------------------
# Spawning with a parent-death signal.
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _make_preexec(parent_pid: int) -> Callable[[], None]:
    prctl = _libc.prctl

    def preexec() -> None:
        # Runs in the child between fork and exec: ask the kernel to kill
        # us when the spawning thread dies, and close the race where the
        # parent died before the request took effect.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(127)

    return preexec


class _Spawner:
    """A daemon thread that forks every QEMU.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child
    exits, not the process.  Forking from one thread that lives as long as
    the interpreter makes the signal mean "the Python process died", even
    when machines are started from short-lived worker threads.
    """

    _lock = threading.Lock()
    _instance: "_Spawner | None" = None

    def __init__(self) -> None:
        self._queue: "queue.Queue[tuple]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="pandagpm-qemu-spawner")
        self._thread.start()

    @classmethod
    def get(cls) -> "_Spawner":
        with cls._lock:
            if cls._instance is None or not cls._instance._thread.is_alive():
                cls._instance = _Spawner()
            return cls._instance

    def _run(self) -> None:
        while True:
            fut, args, kwargs = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(subprocess.Popen(
                    *args, preexec_fn=_make_preexec(os.getpid()), **kwargs))
            except BaseException as err:  # handed to the waiting caller
                fut.set_exception(err)

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((fut, args, kwargs))
        return fut.result()


# --------------------------------------------------------------------------
# Cleanup shared by stop(), the finalizer and the stale-run sweep.
# --------------------------------------------------------------------------

def _kill_and_clean(proc: subprocess.Popen | None, paths: list[str]) -> None:
    """Kill QEMU if it still runs and remove the run files (idempotent)."""
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            except OSError:
                pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_runs(base: str) -> None:
    """Remove run directories whose owning process no longer exists.

    A SIGKILLed owner cannot clean up; its QEMU died with it (death
    signal) but the run directory, with its guest RAM file, stays.
    """
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(RUN_DIR_PREFIX):
            continue
        path = os.path.join(base, name)
        try:
            with open(os.path.join(path, _OWNER_FILE)) as f:
                owner = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not _pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)


def _default_run_base() -> str:
    # Guest RAM lives in the run directory; tmpfs keeps it off the disk.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def _progress(msg: str) -> None:
    print(f"[qemu] {msg}", file=sys.stderr, flush=True)


class QemuMachine:
    """One QEMU process running a pandagpm generic image.

    ``image`` is an arch name (``"x86_64"``, built or reused through
    :func:`pandagpm.image.get_image`) or an :class:`pandagpm.image.ImageInfo`.
    ``snapshot`` is restored at start (``None`` boots the kernel afresh,
    which is what the image builder does).  ``disk`` chooses between
    ``"copy"`` (default: the image's qcow2 is copied into the run
    directory, so machines never modify the cache and can run side by
    side) and ``"inplace"`` (the image builder's mode).

    Attributes, valid after :meth:`start`:

    * ``run_dir`` -- per-run directory (removed by :meth:`stop`);
    * ``gdb_socket_path`` -- unix socket of QEMU's gdbstub;
    * ``serial_socket_path``, ``qmp_socket_path`` -- console and monitor
      sockets (owned by this object; do not connect to them);
    * ``ram_path``, ``ram_size`` -- the guest RAM file and its size;
    * ``ram_base`` -- the guest-physical address of the file's offset 0
      (the image profile's ``qemu.ram_base``, 0 when absent);
    * ``pid`` -- QEMU's process id; ``argv`` -- its command line;
    * ``profile`` -- the image profile (kernel symbols and offsets).

    Use it as a context manager, or call :meth:`stop`.
    """

    _ids = itertools.count(1)

    def __init__(self, image: Any = "x86_64", *, snapshot: str | None = "root",
                 disk: str = "copy", run_base: str | None = None,
                 extra_args: Sequence[str] = (), start_timeout: float = 60,
                 verbose: bool = False):
        if disk not in ("copy", "inplace"):
            raise ValueError("disk must be 'copy' or 'inplace'")
        if isinstance(image, str):
            from . import image as _image
            image = _image.get_image(image)
        self.image = image
        self.profile: dict = image.profile
        self.snapshot = snapshot
        self._disk_mode = disk
        self._run_base = run_base or _default_run_base()
        self._extra_args = tuple(extra_args)
        self._start_timeout = start_timeout
        self._verbose = verbose
        self._proc: subprocess.Popen | None = None
        self._serial: _Serial | None = None
        self._qmp: _QMP | None = None
        self._ram_map: mmap.mmap | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.RLock()
        # One console conversation at a time.
        self._console_lock = threading.RLock()
        self.run_dir: str | None = None
        self.gdb_socket_path = self.serial_socket_path = ""
        self.qmp_socket_path = self.ram_path = self.disk_path = ""
        self.ram_size = int(self.profile["qemu"]["ram_size"])
        self.ram_base = int(self.profile["qemu"].get("ram_base", 0))
        self.argv: list[str] = []

    # -- life cycle --------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the QEMU process exists."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "QemuMachine":
        """Start QEMU, connect to the console and monitor, and (when a
        snapshot was restored) wait until the guest shell answers.

        Raises :exc:`QemuStartError` with QEMU's stderr if QEMU fails.
        """
        with self._lock:
            if self._proc is not None:
                raise QemuError("this machine was already started")
            _sweep_stale_runs(self._run_base)
            self.run_dir = tempfile.mkdtemp(
                prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-{next(self._ids)}-",
                dir=self._run_base)
            with open(os.path.join(self.run_dir, _OWNER_FILE), "w") as f:
                f.write(f"{os.getpid()}\n")
            self.gdb_socket_path = os.path.join(self.run_dir, "gdb.sock")
            self.serial_socket_path = os.path.join(self.run_dir, "serial.sock")
            self.qmp_socket_path = os.path.join(self.run_dir, "qmp.sock")
            self.ram_path = os.path.join(self.run_dir, "ram")
            image_dir = str(self.image.path)
            src_disk = os.path.join(image_dir, self.profile["qemu"]["disk"])
            if self._disk_mode == "copy":
                self.disk_path = os.path.join(self.run_dir, "disk.qcow2")
                try:
                    shutil.copyfile(src_disk, self.disk_path)
                except OSError as e:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                    raise QemuStartError(
                        f"cannot copy the image disk {src_disk}: {e}") from e
            else:
                self.disk_path = src_disk
            self.argv = build_command(
                self.profile, image_dir, ram_path=self.ram_path,
                disk_path=self.disk_path,
                serial_path=self.serial_socket_path,
                qmp_path=self.qmp_socket_path, gdb_path=self.gdb_socket_path,
                loadvm=self.snapshot, extra_args=self._extra_args)
            stderr_path = os.path.join(self.run_dir, "qemu.stderr")
            self._stderr_path = stderr_path
            t0 = time.monotonic()
            with open(stderr_path, "wb") as err:
                try:
                    self._proc = _Spawner.get().popen(
                        self.argv, stdin=subprocess.DEVNULL,
                        stdout=err, stderr=err, cwd=self.run_dir,
                        start_new_session=True, close_fds=True)
                except OSError as e:
                    self._cleanup()
                    raise QemuStartError(
                        f"cannot run {self.argv[0]}: {e}") from e
            self._finalizer = weakref.finalize(
                self, _kill_and_clean, self._proc, [self.run_dir])
            try:
                self._connect(t0)
                if self.snapshot:
                    self.wait_for_shell(timeout=self._start_timeout)
            except SerialTimeout as err:
                text = self._stderr_text()
                self._cleanup()
                raise QemuStartError(
                    f"the guest shell did not answer after start: {err}; "
                    f"console: {err.output[-1000:]!r}; QEMU stderr: "
                    f"{text}") from err
            except BaseException:
                self._cleanup()
                raise
            if self._verbose:
                _progress(f"started pid {self.pid} in "
                          f"{time.monotonic() - t0:.2f} s ({self.run_dir})")
            return self

    def _connect(self, t0: float) -> None:
        deadline = t0 + self._start_timeout
        socks: dict[str, socket.socket] = {}
        for name, path in (("serial", self.serial_socket_path),
                           ("qmp", self.qmp_socket_path)):
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise QemuStartError(
                        f"QEMU exited with status {self._proc.returncode} at "
                        f"start.\ncommand: {' '.join(self.argv)}\n"
                        f"stderr:\n{self._stderr_text()}")
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    socks[name] = s
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    s.close()
                if time.monotonic() > deadline:
                    raise QemuStartError(
                        f"QEMU did not open its {name} socket within "
                        f"{self._start_timeout} s.\nstderr:\n"
                        f"{self._stderr_text()}")
                time.sleep(0.01)
        self._serial = _Serial(socks["serial"],
                               os.path.join(self.run_dir or ".", "serial.log"))
        try:
            self._qmp = _QMP(socks["qmp"])
        except QemuError as err:
            raise QemuStartError(f"{err}\nstderr:\n{self._stderr_text()}")

    def _stderr_text(self) -> str:
        try:
            with open(self._stderr_path, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def stop(self, timeout: float = 5) -> None:
        """Quit QEMU (``quit`` on the monitor, then SIGTERM, then SIGKILL)
        and remove the run directory.  Safe to call more than once."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                if self._qmp is not None:
                    try:
                        self._qmp.execute("quit")
                    except QemuError:
                        pass
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=timeout)
            self._cleanup()

    def _cleanup(self) -> None:
        if self._ram_map is not None:
            self._ram_map.close()
            self._ram_map = None
        if self._serial is not None:
            self._serial.close()
            self._serial = None
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        else:
            _kill_and_clean(self._proc,
                            [self.run_dir] if self.run_dir else [])

    def __enter__(self) -> "QemuMachine":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return (f"<QemuMachine arch={self.profile.get('arch')} pid={self.pid}"
                f" {state} run_dir={self.run_dir!r}>")

    def _require(self) -> None:
        if not self.is_running() or self._serial is None:
            raise QemuGone("the machine is not running"
                            + (f"; QEMU stderr: {self._stderr_text()}"
                               if self._proc is not None else ""))

    # -- monitor -----------------------------------------------------------

    def qmp(self, cmd: str, **arguments: Any) -> Any:
        """Run a QMP command and return its ``return`` value."""
        self._require()
        assert self._qmp is not None
        return self._qmp.execute(cmd, **arguments)

    def monitor(self, cmd: str) -> str:
        """Run an HMP command (e.g. ``"info status"``) and return its text.

        HMP commands that fail usually print the error instead of failing;
        the text is returned as QEMU printed it (``\\r\\n`` turned to
        ``\\n``).
        """
        out = self.qmp("human-monitor-command", **{"command-line": cmd})
        return (out or "").replace("\r\n", "\n")

    def savevm(self, name: str = "root") -> None:
        """Save a snapshot; raises :exc:`QemuError` if QEMU reports one."""
        out = self.monitor(f"savevm {name}")
        if out.strip():
            raise QemuError(f"savevm {name} failed: {out.strip()}")

    def revert(self, snapshot: str = "root", timeout: float = 30,
               wait: bool = True) -> float:
        """Restore ``snapshot`` (HMP ``loadvm``) and wait for the shell.

        Returns the seconds it took (until the shell answered, with
        ``wait``).  ``loadvm`` keeps the run state: a running VM runs on
        from the snapshot, a paused one stays paused.  A VM can be paused
        by the monitor or by a gdb client (connecting to the gdbstub
        pauses it, and QEMU reports both as ``paused``), and only its
        owner may resume it; so with ``wait=True`` a paused VM raises
        :exc:`QemuError` instead of being resumed behind a debugger's
        back.  Use ``wait=False``, resume, then :meth:`wait_for_shell`.
        """
        self._require()
        t0 = time.monotonic()
        out = self.monitor(f"loadvm {snapshot}")
        if out.strip():
            raise QemuError(f"loadvm {snapshot} failed: {out.strip()}")
        # Output queued before the load belongs to the old timeline.
        assert self._serial is not None
        self._serial.discard()
        if not wait:
            return time.monotonic() - t0
        status = self.qmp("query-status")
        if not status.get("running"):
            raise QemuError(
                f"snapshot {snapshot!r} was loaded but the VM is "
                f"{status.get('status')} (paused by the monitor or a gdb "
                "client), so the shell cannot answer; resume it and call "
                "wait_for_shell(), or pass wait=False")
        self.wait_for_shell(timeout=timeout)
        return time.monotonic() - t0

    # -- serial console ----------------------------------------------------

    def send_serial(self, data: bytes) -> None:
        """Types ``data`` on the serial console (e.g. ``b"\\n"``)."""
        self._require()
        assert self._serial is not None
        self._serial.write(data)

    def wait_for_output(self, pattern: bytes, timeout: float = 30) -> bytes:
        """Wait until the console prints ``pattern`` (a regular
        expression); return the text up to its end, which is consumed.

        Typing nothing meanwhile matters on ARM's PL011 UART: input that
        fills its FIFO before the kernel's driver starts is never read,
        and the console then takes no input at all (QEMU raises the
        receive interrupt only when a byte arrives).
        """
        self._require()
        assert self._serial is not None
        m = self._serial.wait_for(re.compile(pattern), timeout,
                                  self.is_running)
        return m.group(0)

    def wait_for_shell(self, timeout: float = 30) -> float:
        """Wait until the guest shell runs commands; return the seconds."""
        self._require()
        t0 = time.monotonic()
        deadline = t0 + timeout
        attempt = 1.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SerialTimeout(
                    f"the guest shell did not answer within {timeout} s",
                    self._serial.tail() if self._serial else "")
            try:
                self.run_serial_cmd_status("true", timeout=min(attempt, left))
                return time.monotonic() - t0
            except SerialTimeout:
                # Keep probing once a second: a late answer to an earlier
                # probe is ignored, and a short period keeps the measured
                # boot time close to the real one.
                continue

    def run_serial_cmd_status(self, cmd: str,
                              timeout: float = 30) -> tuple[int, str]:
        """Run ``cmd`` in the guest's root shell; return (status, output).

        The output is what the command printed (stdout and stderr, which
        share the console) with ``\\r\\n`` turned into ``\\n`` and one
        trailing newline removed.  On timeout the command is interrupted
        (Ctrl-C) and :exc:`SerialTimeout` is raised.
        """
        with self._console_lock:
            self._require()
            serial = self._serial
            assert serial is not None
            nonce = secrets.token_hex(6)
            # The markers are printed with printf so that the echoed command
            # line never contains them literally; eval keeps any command
            # (comments, '&', several lines) inside one shell command.
            line = (f"\x15printf 'GPM%s\\n' B{nonce}; eval {_quote(cmd)}; "
                    f"printf 'GPM%s:%s\\n' E{nonce} $?\n")
            pattern = re.compile(
                rb"GPMB" + nonce.encode() + rb"\r?\n(.*?)GPME" + nonce.encode()
                + rb":(\d+)\r?\n", re.S)
            serial.write(line.encode())
            try:
                m = serial.wait_for(pattern, timeout, self.is_running)
            except SerialTimeout:
                serial.write(b"\x03")
                raise
            out = m.group(1).decode("utf-8", "replace").replace("\r\n", "\n")
            if out.endswith("\n"):
                out = out[:-1]
            return int(m.group(2)), out

    def run_serial_cmd(self, cmd: str, timeout: float = 30,
                       check: bool = False) -> str:
        """Run ``cmd`` in the guest's root shell and return its output.

        With ``check=True`` a non-zero exit status raises
        :exc:`GuestCommandError`.
        """
        status, out = self.run_serial_cmd_status(cmd, timeout)
        if check and status != 0:
            raise GuestCommandError(cmd, status, out)
        return out

    def copy_to_guest(self, local_path: str | os.PathLike, guest_path: str,
                      mode: int | None = None, timeout: float = 300) -> None:
        """Copy a host file into the guest through the serial console.

        The file is sent base64-encoded (and gzipped when that makes it
        smaller) to ``base64 -d`` in the guest with the console's echo
        turned off, then checked by its MD5 sum.
        ``mode`` (default: the local file's permission bits) is applied
        with chmod.  Slow (tens of KiB/s): meant for small test programs.
        """
        with self._console_lock:
            self._require()
            serial = self._serial
            assert serial is not None
            with open(local_path, "rb") as f:
                data = f.read()
            if mode is None:
                mode = os.stat(local_path).st_mode & 0o7777
            nonce = secrets.token_hex(6)
            q = _quote(guest_path)
            # The console is the bottleneck: send the data gzipped when
            # that saves at least a tenth (executables usually halve).
            payload = gzip.compress(data, 6, mtime=0)
            if len(payload) < len(data) * 0.9:
                sink = f"base64 -d | gunzip > {q}"
            else:
                payload, sink = data, f"base64 -d > {q}"
            serial.write((
                f"\x15printf 'GPM%s\\n' B{nonce}; stty -echo; {sink}; "
                f"st=$?; stty echo; printf 'GPM%s:%s\\n' E{nonce} $st\n"
            ).encode())
            serial.wait_for(re.compile(rb"GPMB" + nonce.encode() + rb"\r?\n"),
                            timeout, self.is_running)
            # Give stty a moment to switch the echo off before data arrives
            # (echoed data is harmless, only slower).
            time.sleep(0.05)
            encoded = base64.encodebytes(payload)  # 76-character lines
            deadline = time.monotonic() + timeout
            step = 76 * 64
            for i in range(0, len(encoded), step):
                serial.write(encoded[i:i + step])
                if time.monotonic() > deadline:
                    serial.write(b"\x04\x03")
                    raise SerialTimeout(f"copy to {guest_path} timed out")
            # Ctrl-D at the start of a line ends base64's input.
            serial.write(b"\x04")
            m = serial.wait_for(
                re.compile(rb"GPME" + nonce.encode() + rb":(\d+)\r?\n"),
                max(deadline - time.monotonic(), 5), self.is_running)
            if int(m.group(1)) != 0:
                raise QemuError(f"writing {guest_path} failed "
                                f"(status {m.group(1).decode()})")
            want = hashlib.md5(data).hexdigest()
            got = self.run_serial_cmd(f"md5sum {q}", timeout=60).split()
            if not got or got[0] != want:
                raise QemuError(f"copy to {guest_path} is corrupt: md5 "
                                f"{got!r} in the guest, {want} on the host")
            self.run_serial_cmd(f"chmod {mode:o} {q}", check=True)

    # -- guest RAM ---------------------------------------------------------

    def read_phys(self, addr: int, size: int) -> bytes:
        """Read guest physical memory from the shared RAM file.

        ``addr`` is a guest-physical address; RAM spans ``ram_base`` to
        ``ram_base + ram_size``.
        """
        self._require()
        off = addr - self.ram_base
        if off < 0 or size < 0 or off + size > self.ram_size:
            raise ValueError(f"physical range {addr:#x}+{size:#x} is outside "
                             f"guest RAM ({self.ram_base:#x}+"
                             f"{self.ram_size:#x})")
        if self._ram_map is None:
            with open(self.ram_path, "rb") as f:
                self._ram_map = mmap.mmap(f.fileno(), self.ram_size,
                                          prot=mmap.PROT_READ)
        return self._ram_map[off:off + size]
