"""The ``pandagpm`` command (also ``python -m pandagpm``).

Usage: ``pandagpm [--arch ARCH] [--session ADDR] [-v] COMMAND ...``;
``pandagpm COMMAND --help`` describes each command. Commands come from
the tool modules listed in ``pandagpm.tools.TOOL_MODULES``: each defines
``register_cli(subparsers)`` and adds its subcommands with
``subparsers.add_parser(...)``, setting on each parser

- ``handler=func`` with ``set_defaults``: ``func(args, session) -> int``,
  the exit status of the command;
- ``needs_guest=False`` (also with ``set_defaults``) for a command that
  runs without a guest (``plugins``, ``image``); it gets ``session=None``.

The session object
------------------
A handler works on the guest through ``session``, whichever way it was
made: standalone (the command booted a guest from the ``root`` snapshot,
injects the daemon on first use and tears everything down afterwards) or
attached (``--session ADDR`` or ``$PANDAGPM_SESSION``: the command runs
inside a kept ``pandagpm session start`` process, with the caller's
standard streams and working directory). Its interface:

``session.panda``
    the host object (``pandagpm.host.Panda``): ``load_guest_plugin(name,
    callback=None, *, buffer_limit=..., wait=True)`` returns a Channel;
    ``panda.gpm`` is the ``GuestPluginManager`` (events, channels).
``session.gpm``
    the same ``GuestPluginManager``.
``session.arch``
    the guest's architecture name.
``session.stdin``, ``session.stdout``, ``session.stderr``
    the caller's streams as binary files (use them, not ``sys.stdout``:
    in an attached session they are the client's, passed over the unix
    socket); ``session.out(text)`` and ``session.err(text)`` write text.
``session.cwd``
    the caller's working directory; ``session.local_path(p)`` resolves a
    local path against it.
``session.lock(name)``
    a ``threading.Lock`` per name, for tools whose guest plugin allows
    one user at a time (the session may run several commands at once).
``session.shared(key, factory)``
    one object per key for the session's lifetime (e.g. the one
    ``GuestFiles``); made by ``factory()`` on first use.
``session.attached``
    True inside a kept session.

Exit codes: 0 success, the guest command's status for ``exec`` and
``shell``, 1 a failure reported on stderr (``pandagpm: ...``), 2 usage
errors (argparse), 130 interrupted.
"""

import argparse
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from . import tools as _tools

__all__ = ["main", "build_parser", "Session", "StandaloneSession",
           "SESSION_ENV"]

#: The environment variable that names a kept session's socket.
SESSION_ENV = "PANDAGPM_SESSION"


class Session:
    """What a command handler gets; see the module docstring."""

    attached = False

    def __init__(self, panda, *, stdin=None, stdout=None, stderr=None,
                 cwd=None):
        self.panda = panda
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer
        self.cwd = cwd or os.getcwd()
        self._shared = {}
        self._locks = {}
        self._mutex = threading.Lock()

    @property
    def gpm(self):
        return self.panda.gpm

    @property
    def arch(self):
        return self.panda.arch_name

    def out(self, text):
        self.stdout.write(text.encode())
        self.stdout.flush()

    def err(self, text):
        self.stderr.write(text.encode())
        self.stderr.flush()

    def local_path(self, path):
        return os.path.join(self.cwd, os.path.expanduser(path))

    def lock(self, name):
        with self._mutex:
            return self._locks.setdefault(name, threading.Lock())

    def shared(self, key, factory):
        with self._mutex:
            if key not in self._shared:
                self._shared[key] = factory()
            return self._shared[key]

    def close(self):
        """Closes the shared tool objects (not the guest)."""
        for obj in list(self._shared.values()):
            close = getattr(obj, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
        self._shared.clear()


class StandaloneSession(Session):
    """A guest booted for one command from the ``root`` snapshot."""

    def __init__(self, arch="x86_64", *, verbose=False, **streams):
        from .host import Panda

        panda = Panda(generic=arch, verbose=verbose)
        super().__init__(panda, **streams)
        panda.start()

    def close(self):
        super().close()
        self.panda.close()


class _AttachedSession(Session):
    """A command run inside a kept session for a client."""

    attached = True

    def __init__(self, base, stdin, stdout, stderr, cwd):
        super().__init__(base.panda, stdin=stdin, stdout=stdout,
                         stderr=stderr, cwd=cwd)
        # Shared objects and locks are the kept session's.
        self._shared = base._shared
        self._locks = base._locks
        self._mutex = base._mutex

    def close(self):
        pass


def _load_tools():
    mods = []
    for name in _tools.TOOL_MODULES:
        mods.append(importlib.import_module(f"{_tools.__name__}.{name}"))
    return mods


def build_parser():
    """The argparse parser with every tool's subcommands."""
    ap = argparse.ArgumentParser(
        prog="pandagpm",
        description="Work on a guest: copy files, run commands, shells, "
        "mounts. Each command boots a guest from the image's 'root' "
        "snapshot and tears it down, unless --session attaches it to a kept "
        "one ('pandagpm session start').")
    ap.add_argument("--arch", default=os.environ.get("PANDAGPM_ARCH",
                                                     "x86_64"),
                    help="the guest architecture of the generic image "
                    "(default x86_64, or $PANDAGPM_ARCH)")
    ap.add_argument("--session", metavar="ADDR",
                    default=os.environ.get(SESSION_ENV),
                    help="run in the kept session at this socket (default "
                    f"${SESSION_ENV}); without, a guest is booted for the "
                    "command")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="log what the host does on stderr")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _load_tools():
        mod.register_cli(sub)
    return ap


def _run_handler(args, session):
    try:
        rc = args.handler(args, session)
        return 0 if rc is None else int(rc)
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        session_err = session.err if session is not None else (
            lambda t: sys.stderr.write(t))
        session_err(f"pandagpm: {err}\n")
        return 1
    except Exception as err:
        from .errors import GpmError
        if not isinstance(err, GpmError):
            raise
        msg = f"pandagpm: {err}\n"
        if session is not None:
            session.err(msg)
        else:
            sys.stderr.write(msg)
        return 1


def main(argv=None):
    """Entry point; returns the exit status."""
    ap = build_parser()
    args = ap.parse_args(argv)
    needs_guest = getattr(args, "needs_guest", True)
    if args.session and (needs_guest or getattr(args, "session_stop", False)):
        return _client_run(args.session, sys.argv[1:] if argv is None
                           else list(argv))
    if not needs_guest:
        return _run_handler(args, None)
    session = None
    try:
        session = StandaloneSession(args.arch, verbose=args.verbose)
        return _run_handler(args, session)
    except KeyboardInterrupt:
        return 130
    finally:
        if session is not None:
            session.close()


# A kept session: a server process holding the guest, and clients.


def _strip_session(argv):
    """argv without --session ADDR / --session=ADDR."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--session":
            skip = True
            continue
        if a.startswith("--session="):
            continue
        out.append(a)
    return out


def _client_run(addr, argv):
    """Sends a command to the session at ``addr`` with our stdio."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(addr)
    except OSError as err:
        sys.stderr.write(f"pandagpm: no session at {addr}: {err.strerror}\n")
        return 1
    req = json.dumps({"argv": _strip_session(argv),
                      "cwd": os.getcwd()}).encode() + b"\n"
    socket.send_fds(sock, [req], [0, 1, 2])
    old = signal.getsignal(signal.SIGINT)
    try:
        data = b""
        while not data.endswith(b"\n"):
            piece = sock.recv(4096)
            if not piece:
                sys.stderr.write("pandagpm: the session went away\n")
                return 1
            data += piece
        return int(json.loads(data)["exit"])
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGINT, old)
        sock.close()


class SessionServer:
    """Holds one guest and runs the commands clients send (a thread each).

    Protocol on the unix socket: the client sends one JSON line
    ``{"argv": [...], "cwd": "..."}`` with its fds 0, 1 and 2 attached
    (SCM_RIGHTS); the server runs the command on those streams and
    answers ``{"exit": N}``. ``session stop`` ends the server.
    """

    def __init__(self, path, arch, verbose=False):
        self.path = path
        self.base = StandaloneSession(arch, verbose=verbose)
        self.stopping = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(8)

    def serve(self):
        self.sock.settimeout(0.5)
        try:
            while not self.stopping.is_set():
                if self.base.panda.emulator_lost.is_set():
                    break
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    continue
                threading.Thread(target=self._client, args=(conn,),
                                 daemon=True).start()
        finally:
            self.sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.base.close()

    def _client(self, conn):
        files = []
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            while not msg.endswith(b"\n"):
                more = conn.recv(1 << 16)
                if not more:
                    return
                msg += more
            req = json.loads(msg)
            if len(fds) != 3:
                raise ValueError("expected 3 file descriptors")
            files = [os.fdopen(fds[0], "rb", buffering=0),
                     os.fdopen(fds[1], "wb", buffering=0),
                     os.fdopen(fds[2], "wb", buffering=0)]
            rc = self._run(req["argv"], req.get("cwd") or "/", files)
        except Exception as err:  # a broken client must not end the server
            rc = 1
            try:
                if files:
                    files[2].write(f"pandagpm: {err}\n".encode())
            except OSError:
                pass
        finally:
            for f in files:
                try:
                    f.close()
                except OSError:
                    pass
        try:
            conn.sendall(json.dumps({"exit": rc}).encode() + b"\n")
        except OSError:
            pass
        conn.close()

    def _run(self, argv, cwd, files):
        ap = build_parser()
        try:
            args = ap.parse_args(argv)
        except SystemExit as e:
            return int(e.code or 0)
        if getattr(args, "session_stop", False):
            self.stopping.set()
            return 0
        s = _AttachedSession(self.base, files[0], files[1], files[2], cwd)
        if not getattr(args, "needs_guest", True):
            return _run_handler(args, None)
        return _run_handler(args, s)


def default_socket_path():
    """Where ``session start`` puts its socket by default."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return os.path.join(base, f"pandagpm-session-{os.getpid()}.sock")


def start_session(arch, path=None, verbose=False, timeout=300):
    """Starts a kept session in the background; returns its socket path.

    The server is ``python -m pandagpm session serve`` in a new session
    (no controlling terminal), so it outlives the caller; stop it with
    ``pandagpm --session PATH session stop``.
    """
    path = path or default_socket_path()
    log = open(path + ".log", "wb")
    cmd = [sys.executable, "-m", "pandagpm", "--arch", arch, "session",
           "serve", "--socket", path]
    if verbose:
        cmd.insert(3, "-v")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the session server exited ({proc.returncode});"
                               f" see {path}.log")
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.close()
                return path
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the session server did not start within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
