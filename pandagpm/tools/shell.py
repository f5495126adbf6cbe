"""Guest commands with streamed I/O, and interactive guest shells on a PTY.

:class:`GuestShell` drives the ``pty_shell`` guest plugin
(guest/plugins/pty_shell, protocol csrc/include/gpm/pty_proto.h)::

    from pandagpm.tools.shell import GuestShell

    sh = GuestShell(panda)
    res = sh.run(["cat", "/etc/hostname"])       # -> ExecResult
    print(res.status, res.stdout)
    sh.exec(["sh", "-c", "cat; echo done >&2"], stdin=b"hi\\n",
            stdout=sys.stdout.buffer.write, timeout=30)
    sh.interactive(0, 1)     # the host terminal becomes the guest's PTY

``exec`` streams stdout and stderr to callbacks as they arrive, feeds
stdin (bytes or a binary file), and returns the exit status (0..255,
128 + signal, ``timed_out`` when the timeout killed it). ``interactive``
puts the host terminal in raw mode: ``^C``, ``^Z`` and job control reach
the guest's PTY line discipline, and window-size changes are sent as they
happen (checked every 0.2 s, so it works attached to a kept session too).
``serve_unix(path)`` offers the same shell on a unix socket, the shape
of the original guest_shell's PTY script.

Threads: one command at a time per GuestShell (a lock); the plugin's
output is read on a helper thread.
"""

import argparse
import fcntl
import os
import select
import socket
import struct
import termios
import threading
import time
import tty
import typing

from .. import _gpm, wire

__all__ = ["GuestShell", "ExecResult"]

PLUGIN = "pty_shell"
MAX_FRAME = _gpm.PTY_MAX_FRAME
#: How often the terminal's size is compared while a shell runs.
WINCH_PERIOD = 0.2
#: Guest -> host bytes buffered before the guest is paused.
RECV_LIMIT = 4 << 20


class ExecResult(typing.NamedTuple):
    """What :meth:`GuestShell.run` returns."""

    status: int
    stdout: bytes
    stderr: bytes
    timed_out: bool


def _winsize(fd):
    try:
        rows, cols, _, _ = struct.unpack(
            "HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return None


class GuestShell:
    """Commands and shells in a running guest (see the module docstring).

    ``host`` has ``load_guest_plugin``; the plugin is loaded on first use
    and again if it was lost.
    """

    def __init__(self, host):
        self.host = host
        self._chan = None
        self._reader = None
        self._seq = 0
        self._lock = threading.Lock()

    def _channel(self):
        if self._chan is None or self._chan.closed:
            chan = self.host.load_guest_plugin(PLUGIN, buffer_limit=RECV_LIMIT)
            chan.set_queue_limit(4 << 20)
            self._chan = chan
            self._reader = wire.FrameReader(chan, wire.MAGIC_PTY, MAX_FRAME)
        return self._chan

    def close(self):
        """Asks the plugin to exit and closes its channel."""
        chan, self._chan = self._chan, None
        if chan is not None and not chan.closed:
            try:
                chan.write(wire.pack(wire.MAGIC_PTY, _gpm.PTY_QUIT))
            except Exception:  # the guest may be gone already
                pass
            chan.close()

    def _send(self, ftype, payload=b"", seq=None):
        self._chan.write_wait(wire.pack(wire.MAGIC_PTY, ftype,
                                        self._seq if seq is None else seq,
                                        payload), timeout=60)

    def _open(self, argv, tty_mode, rows, cols, timeout, env):
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        strings = [os.fsencode(a) for a in argv]
        envs = [os.fsencode(f"{k}={v}") for k, v in (env or {}).items()]
        if any(b"\0" in s for s in strings + envs):
            raise ValueError("arguments must not contain NUL bytes")
        body = struct.pack("<IHHIII", _gpm.PTY_F_TTY if tty_mode else 0,
                           rows, cols, int((timeout or 0) * 1000),
                           len(strings), len(envs))
        body += b"".join(s + b"\0" for s in strings + envs)
        if len(body) >= MAX_FRAME:
            raise ValueError("command line too long")
        self._send(_gpm.PTY_OPEN, body)

    def _pump(self, on_out, on_err, result, wait_timeout):
        """Reads frames until EXIT; fills ``result`` (status, flags)."""
        seq = self._seq
        while True:
            frame = self._reader.read(timeout=wait_timeout)
            if frame is None:
                raise wire.ProtocolError("the pty_shell plugin ended")
            ftype, rseq, payload = frame
            if rseq != seq:
                continue
            if ftype == _gpm.PTY_STDOUT:
                on_out(payload)
            elif ftype == _gpm.PTY_STDERR:
                on_err(payload)
            elif ftype == _gpm.PTY_STARTED:
                result["pid"] = struct.unpack_from("<I", payload)[0]
            elif ftype == _gpm.PTY_EXIT:
                status, flags = struct.unpack_from("<iI", payload)
                result["status"] = status
                result["flags"] = flags
                return

    def exec(self, argv, *, stdin=None, stdout=None, stderr=None,
             timeout=None, env=None):
        """Runs ``argv`` in the guest; returns ``(status, timed_out)``.

        ``stdout``/``stderr``: callables taking bytes (default: dropped).
        ``stdin``: bytes or a binary file, sent then closed (default:
        empty). ``timeout``: seconds after which the guest kills the
        command's process group (status 137, ``timed_out`` True). A
        command that could not start gives a negative errno status.
        """
        on_out = stdout or (lambda b: None)
        on_err = stderr or (lambda b: None)
        with self._lock:
            self._channel()
            self._open(list(argv), False, 0, 0, timeout, env)
            result = {}
            errors = []

            def reader():
                try:
                    self._pump(on_out, on_err, result, None)
                except BaseException as err:  # handed to the caller
                    errors.append(err)

            t = threading.Thread(target=reader, daemon=True,
                                 name="pandagpm-exec")
            t.start()
            try:
                self._feed_stdin(stdin, t)
                self._send(_gpm.PTY_EOF)
                while t.is_alive():
                    t.join(0.2)
            except BaseException:
                # ^C on the host: stop the command, then give up on it.
                try:
                    self._send(_gpm.PTY_SIGNAL, struct.pack("<I", 9))
                except Exception:
                    pass
                t.join(5)
                if t.is_alive():
                    self._drop()
                raise
            if errors:
                self._drop()
                raise errors[0]
            return (result["status"],
                    bool(result["flags"] & _gpm.PTY_X_TIMEOUT))

    def _feed_stdin(self, stdin, reader):
        if stdin is None:
            return
        if isinstance(stdin, (bytes, bytearray, memoryview)):
            view = memoryview(stdin).cast("B")
            for i in range(0, len(view), MAX_FRAME):
                if not reader.is_alive():
                    return
                self._send(_gpm.PTY_STDIN, bytes(view[i:i + MAX_FRAME]))
            return
        while reader.is_alive():
            piece = stdin.read(MAX_FRAME)
            if not piece:
                return
            self._send(_gpm.PTY_STDIN, piece)

    def run(self, argv, *, stdin=None, timeout=None, env=None):
        """:meth:`exec` collecting the output: an :class:`ExecResult`."""
        out, err = bytearray(), bytearray()
        status, timed_out = self.exec(argv, stdin=stdin, stdout=out.extend,
                                      stderr=err.extend, timeout=timeout,
                                      env=env)
        return ExecResult(status, bytes(out), bytes(err), timed_out)

    def _drop(self):
        chan, self._chan = self._chan, None
        if chan is not None:
            try:
                chan.close()
            except Exception:
                pass

    # Interactive.

    def interactive(self, in_fd, out_fd, argv=(), *, term=None,
                    size_fd=None):
        """Runs a shell (or ``argv``) on a guest PTY attached to the host
        file descriptors ``in_fd``/``out_fd``; returns its exit status.

        A terminal ``in_fd`` is put in raw mode for the duration (and
        restored on any exit); its size is followed (``size_fd``, default
        ``in_fd``). When ``in_fd`` reaches end of file the shell gets EOF
        (^D).
        """
        size_fd = in_fd if size_fd is None else size_fd
        size = _winsize(size_fd) or (24, 80)
        env = {"TERM": term or os.environ.get("TERM", "xterm")}
        old = None
        if os.isatty(in_fd):
            old = termios.tcgetattr(in_fd)
            tty.setraw(in_fd)
        try:
            with self._lock:
                self._channel()
                self._open(list(argv), True, size[0], size[1], None, env)
                return self._relay(in_fd, out_fd, size_fd, size)
        finally:
            if old is not None:
                termios.tcsetattr(in_fd, termios.TCSADRAIN, old)

    def _relay(self, in_fd, out_fd, size_fd, size):
        result, errors = {}, []

        def write_out(data):
            view = memoryview(data)
            while view:
                n = os.write(out_fd, view)
                view = view[n:]

        def reader():
            try:
                self._pump(write_out, write_out, result, None)
            except BaseException as err:  # handed to the caller
                errors.append(err)

        t = threading.Thread(target=reader, daemon=True, name="pandagpm-pty")
        t.start()
        last_check = time.monotonic()
        eof = False
        while t.is_alive():
            r = []
            if not eof:
                r, _, _ = select.select([in_fd], [], [], WINCH_PERIOD)
            else:
                t.join(WINCH_PERIOD)
            if r:
                data = os.read(in_fd, MAX_FRAME)
                if not data:
                    eof = True
                    self._send(_gpm.PTY_STDIN, b"\x04")
                else:
                    self._send(_gpm.PTY_STDIN, data)
            now = time.monotonic()
            if now - last_check >= WINCH_PERIOD:
                last_check = now
                new = _winsize(size_fd)
                if new is not None and new != size:
                    size = new
                    self._send(_gpm.PTY_WINSIZE, struct.pack("<HH", *size))
        if errors:
            self._drop()
            raise errors[0]
        return result["status"]

    def serve_unix(self, path, argv=()):
        """Serves one interactive shell on a unix socket at ``path``.

        Waits for one client (e.g. ``socat -,raw,echo=0 UNIX:path``),
        relays its bytes to a guest PTY, returns the shell's status. The
        PTY keeps its initial size (a socket has none).
        """
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(1)
        try:
            conn, _ = srv.accept()
        finally:
            srv.close()
            os.unlink(path)
        with conn:
            fd = conn.fileno()
            with self._lock:
                self._channel()
                self._open(list(argv), True, 24, 80, None,
                           {"TERM": "xterm"})
                return self._relay(fd, fd, fd, (24, 80))


# The command line: pandagpm exec, pandagpm shell.


def _shell_for(session):
    return session.shared("shell", lambda: GuestShell(session.panda))


def _exec(args, session):
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        session.err("pandagpm exec: no command given (pandagpm exec -- CMD "
                    "...)\n")
        return 2
    sh = _shell_for(session)

    def out(data):
        session.stdout.write(data)
        session.stdout.flush()

    def err(data):
        session.stderr.write(data)
        session.stderr.flush()

    stdin = None
    if not args.no_stdin and not _isatty(session.stdin):
        stdin = session.stdin
    with session.lock("pty_shell"):
        status, timed_out = sh.exec(argv, stdin=stdin, stdout=out, stderr=err,
                                    timeout=args.timeout)
    if timed_out:
        session.err(f"pandagpm exec: {argv[0]}: killed after the "
                    f"{args.timeout:g} s timeout\n")
    if status < 0:
        code = -status
        session.err(f"pandagpm exec: {argv[0]}: {os.strerror(code)}\n")
        return 127 if code == 2 else 126
    return status


def _isatty(f):
    try:
        return os.isatty(f.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _shell(args, session):
    sh = _shell_for(session)
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    with session.lock("pty_shell"):
        if args.unix:
            session.err(f"pandagpm shell: waiting on {args.unix}\n")
            return sh.serve_unix(args.unix, argv)
        return sh.interactive(session.stdin.fileno(),
                              session.stdout.fileno(), argv)


def register_cli(sub):
    """Adds ``exec`` and ``shell`` (see pandagpm.cli)."""
    e = sub.add_parser(
        "exec", help="run a command in the guest",
        description="Run CMD in the guest with streamed stdout and stderr; "
        "stdin is forwarded when it is not a terminal. The exit status is "
        "the command's (126/127 if it could not start).")
    e.add_argument("--timeout", type=float, default=None,
                   help="kill the command after this many seconds")
    e.add_argument("-n", "--no-stdin", action="store_true",
                   help="do not forward stdin")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    e.set_defaults(handler=_exec)
    s = sub.add_parser(
        "shell", help="an interactive guest shell on a PTY",
        description="An interactive shell (or CMD) on a PTY in the guest, "
        "attached to this terminal (raw mode: ^C, ^Z, window size changes "
        "reach the guest), or served on a unix socket with --unix.")
    s.add_argument("--unix", metavar="PATH",
                   help="serve the shell on this unix socket instead")
    s.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    s.set_defaults(handler=_shell)

