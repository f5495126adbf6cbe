"""Guest files from Python: copy both ways, stat, list, remove, mkdir, chmod.

:class:`GuestFiles` drives the ``files`` guest plugin
(guest/plugins/files, protocol csrc/include/gpm/files_proto.h) over the
public channel API, on any host object that has ``load_guest_plugin``
(the stock-QEMU :class:`pandagpm.host.Panda`, or pypanda's under real
PANDA)::

    from pandagpm.host import Panda
    from pandagpm.tools.files import GuestFiles

    with Panda(generic="x86_64") as panda:
        fs = GuestFiles(panda)
        fs.get("/etc/passwd", "passwd")
        fs.put("report.txt", "/tmp/report.txt", mode=0o644)
        print(fs.listdir("/etc"))

Streaming: a copy moves 1 MiB frames; host -> guest the channel's queue
is capped at :data:`QUEUE_LIMIT` and the sender waits for the
CHANNEL_DRAINED event, guest -> host the receive buffer is
:data:`RECV_LIMIT` and pauses the guest when full. Host memory stays a few
MiB whatever the file size, and so does the plugin's (two 1 MiB buffers).

Errors: a guest errno becomes the matching ``OSError`` subclass
(``FileNotFoundError``, ``PermissionError``, ``IsADirectoryError``,
``NotADirectoryError``, ``FileExistsError``, ...) with the guest path as
``filename``. Protocol breaks raise :class:`pandagpm.wire.ProtocolError`;
a lost emulator raises what the channel raises.

Threads: one request at a time per GuestFiles (a lock serialises them),
so it may be shared by threads (the FUSE mount does).
"""

import collections
import os
import stat as _stat
import struct
import threading
import typing

from .. import _gpm, wire

__all__ = ["GuestFiles", "GuestStat", "parse_guest_path", "QUEUE_LIMIT",
           "RECV_LIMIT"]

#: The guest plugin (and its channel's name).
PLUGIN = "files"
#: Host -> guest bytes queued at most on the files channel.
QUEUE_LIMIT = 4 << 20
#: Guest -> host bytes buffered at most before the guest is paused.
RECV_LIMIT = 4 << 20
#: How long one reply may take (guest seconds are slow under emulation).
DEFAULT_TIMEOUT = 120.0

CHUNK = _gpm.FILES_CHUNK
_ATTR = struct.Struct("<IIIIIIQQQqqq")
assert _ATTR.size == _gpm.FILES_ATTR_SIZE
_STATUS = struct.Struct("<iIQ")
# Largest reply payload the host accepts.
_MAX_REPLY = max(CHUNK, _gpm.FILES_DIRENTS_MAX)


class GuestStat(typing.NamedTuple):
    """A guest file's attributes, named like ``os.stat_result``."""

    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_rdev: int
    st_size: int
    st_blocks: int
    st_ino: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int

    @property
    def st_mtime(self):
        return self.st_mtime_ns / 1e9

    @property
    def st_atime(self):
        return self.st_atime_ns / 1e9

    def is_dir(self):
        return _stat.S_ISDIR(self.st_mode)

    def is_file(self):
        return _stat.S_ISREG(self.st_mode)

    def is_symlink(self):
        return _stat.S_ISLNK(self.st_mode)


def _attr(data, off=0):
    f = _ATTR.unpack_from(data, off)
    return GuestStat(f[0], f[1], f[2], f[3], f[4], f[6], f[7], f[8], f[9],
                     f[10], f[11])


def parse_guest_path(spec):
    """``"guest:/etc/passwd"`` -> ``"/etc/passwd"``; anything else -> None."""
    if isinstance(spec, str) and spec.startswith("guest:"):
        path = spec[len("guest:"):]
        return path or "/"
    return None


def _os_error(status, path, path2=None):
    code = -status
    return OSError(code, os.strerror(code), path, None, path2) \
        if path2 is not None else OSError(code, os.strerror(code), path)


class GuestFiles:
    """Files of a running guest, through the ``files`` guest plugin.

    ``host`` has ``load_guest_plugin(name, callback=None, ...)`` returning
    a buffered Channel; the plugin is loaded on first use and again after
    it is lost (a revert). ``user``: ``(uid, gid)`` to act as that guest
    user instead of root (the plugin drops privileges for good).
    """

    def __init__(self, host, *, user=None, timeout=DEFAULT_TIMEOUT):
        self.host = host
        self.user = user
        self.timeout = timeout
        self._chan = None
        self._reader = None
        self._seq = 0
        self._lock = threading.RLock()
        #: Requests sent, by protocol type number (for tests and benches).
        self.requests = collections.Counter()

    def __repr__(self):
        return f"<pandagpm.tools.files.GuestFiles on {self.host!r}>"

    # The channel.

    def _channel(self):
        if self._chan is not None and not self._chan.closed:
            return self._chan
        chan = self.host.load_guest_plugin(PLUGIN, buffer_limit=RECV_LIMIT)
        chan.set_queue_limit(QUEUE_LIMIT)
        self._chan = chan
        self._reader = wire.FrameReader(chan, wire.MAGIC_FILES, _MAX_REPLY)
        if self.user is not None:
            uid, gid = self.user
            self._call(_gpm.FILES_SETUSER, struct.pack("<II", uid, gid), "")
        return chan

    def close(self):
        """Asks the plugin to exit and closes its channel."""
        with self._lock:
            chan, self._chan = self._chan, None
            if chan is None or chan.closed:
                return
            try:
                chan.write(wire.pack(wire.MAGIC_FILES, _gpm.FILES_QUIT))
            except Exception:  # the guest may be gone already
                pass
            chan.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _send(self, ftype, payload=b""):
        self.requests[ftype] += 1
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._chan.write_wait(wire.pack(wire.MAGIC_FILES, ftype, self._seq,
                                        payload), timeout=self.timeout)
        return self._seq

    def _reply(self, seq):
        frame = self._reader.read(timeout=self.timeout)
        if frame is None:
            self._drop()
            raise wire.ProtocolError("the files plugin ended its channel")
        ftype, rseq, payload = frame
        if rseq != seq:
            self._drop()
            raise wire.ProtocolError(
                f"reply to request {rseq} while waiting for {seq}")
        return ftype, payload

    def _drop(self):
        """Forgets a channel that is out of step (a new plugin is loaded
        on next use)."""
        chan, self._chan = self._chan, None
        if chan is not None:
            try:
                chan.close()
            except Exception:
                pass

    @staticmethod
    def _status(ftype, payload, path, path2=None):
        if ftype != _gpm.FILES_R_STATUS or len(payload) != _STATUS.size:
            raise wire.ProtocolError(f"expected STATUS, got type {ftype}")
        status, _, value = _STATUS.unpack(payload)
        if status < 0:
            raise _os_error(status, path, path2)
        return value

    def _call(self, ftype, fixed, path, path2=None):
        """One request whose only reply is STATUS; returns its value."""
        with self._lock:
            self._channel()
            try:
                seq = self._send(ftype, fixed + os.fsencode(path))
                return self._status(*self._reply(seq), path, path2)
            except wire.ProtocolError:
                self._drop()
                raise

    @staticmethod
    def _check_path(path):
        p = os.fsencode(path)
        if not p or b"\0" in p or len(p) > _gpm.FILES_PATH_MAX:
            raise ValueError(f"bad guest path {path!r}")
        return os.fsdecode(p)

    # Metadata.

    def stat(self, path, *, follow_symlinks=True):
        """The guest's ``stat`` (``lstat`` without following) of ``path``."""
        path = self._check_path(path)
        flags = 0 if follow_symlinks else _gpm.FILES_NOFOLLOW
        with self._lock:
            self._channel()
            seq = self._send(_gpm.FILES_STAT,
                             struct.pack("<I", flags) + os.fsencode(path))
            ftype, payload = self._reply(seq)
            if ftype == _gpm.FILES_R_ATTR and len(payload) == _ATTR.size:
                return _attr(payload)
            self._status(ftype, payload, path)
            raise wire.ProtocolError("STAT answered with a zero STATUS")

    def lstat(self, path):
        return self.stat(path, follow_symlinks=False)

    def exists(self, path):
        try:
            self.stat(path)
            return True
        except FileNotFoundError:
            return False

    def scandir(self, path):
        """``[(name, GuestStat)]`` of a guest directory (lstat attributes),
        in the guest's order, in a few round trips for any size."""
        path = self._check_path(path)
        out = []
        with self._lock:
            self._channel()
            seq = self._send(_gpm.FILES_LISTDIR, os.fsencode(path))
            while True:
                ftype, payload = self._reply(seq)
                if ftype != _gpm.FILES_R_DIRENTS:
                    self._status(ftype, payload, path)
                    return out
                off = 0
                while off < len(payload):
                    if off + 2 > len(payload):
                        raise wire.ProtocolError("DIRENTS cut short")
                    (nlen,) = struct.unpack_from("<H", payload, off)
                    end = off + 2 + nlen
                    if nlen == 0 or end + _ATTR.size > len(payload):
                        raise wire.ProtocolError("bad DIRENTS entry")
                    name = os.fsdecode(payload[off + 2:end])
                    out.append((name, _attr(payload, end)))
                    off = end + _ATTR.size

    def listdir(self, path):
        """Names in a guest directory, like ``os.listdir``."""
        return [name for name, _ in self.scandir(path)]

    def readlink(self, path):
        path = self._check_path(path)
        with self._lock:
            self._channel()
            seq = self._send(_gpm.FILES_READLINK, os.fsencode(path))
            ftype, payload = self._reply(seq)
            if ftype != _gpm.FILES_R_DATA:
                self._status(ftype, payload, path)
                raise wire.ProtocolError("READLINK without data")
            self._status(*self._reply(seq), path)
            return os.fsdecode(payload)

    def remove(self, path):
        """Removes a guest file (not a directory: see :meth:`rmdir`)."""
        self._call(_gpm.FILES_REMOVE, struct.pack("<I", 0),
                   self._check_path(path))

    unlink = remove

    def rmdir(self, path):
        self._call(_gpm.FILES_REMOVE, struct.pack("<I", _gpm.FILES_DIR),
                   self._check_path(path))

    def mkdir(self, path, mode=0o777):
        self._call(_gpm.FILES_MKDIR, struct.pack("<I", mode),
                   self._check_path(path))

    def makedirs(self, path, mode=0o777, exist_ok=False):
        """``os.makedirs`` in the guest."""
        path = self._check_path(path)
        parent = os.path.dirname(path.rstrip("/"))
        if parent and parent != path and not self.exists(parent):
            self.makedirs(parent, mode, exist_ok=True)
        try:
            self.mkdir(path, mode)
        except FileExistsError:
            if not exist_ok or not self.stat(path).is_dir():
                raise

    def chmod(self, path, mode):
        self._call(_gpm.FILES_CHMOD, struct.pack("<I", mode),
                   self._check_path(path))

    def chown(self, path, uid, gid, *, follow_symlinks=True):
        flags = 0 if follow_symlinks else _gpm.FILES_NOFOLLOW
        self._call(_gpm.FILES_CHOWN, struct.pack("<III", uid, gid, flags),
                   self._check_path(path))

    def utime(self, path, ns, *, follow_symlinks=True):
        """Sets ``(atime_ns, mtime_ns)``."""
        flags = 0 if follow_symlinks else _gpm.FILES_NOFOLLOW
        self._call(_gpm.FILES_UTIMES, struct.pack("<qqI", ns[0], ns[1], flags),
                   self._check_path(path))

    def symlink(self, target, path):
        t = os.fsencode(target)
        self._call(_gpm.FILES_SYMLINK, struct.pack("<I", len(t)) + t,
                   self._check_path(path))

    def rename(self, src, dst):
        s = os.fsencode(self._check_path(src))
        self._call(_gpm.FILES_RENAME, struct.pack("<I", len(s)) + s,
                   self._check_path(dst), path2=None)

    def truncate(self, path, size):
        self._call(_gpm.FILES_TRUNCATE, struct.pack("<Q", size),
                   self._check_path(path))

    # Contents.

    def read(self, path, offset=0, size=None):
        """Bytes of a guest file (``size`` None: to the end)."""
        out = bytearray()
        self.get_to(path, out.extend, offset=offset, size=size)
        return bytes(out)

    def get_to(self, path, sink, *, offset=0, size=None, progress=None):
        """Streams a guest file into ``sink(bytes)``; returns its GuestStat.

        ``size`` 0 reads nothing; ``progress(done, total)`` is called after
        each chunk. Memory: one chunk at a time.
        """
        path = self._check_path(path)
        if size == 0:
            return self.stat(path)
        with self._lock:
            self._channel()
            seq = self._send(_gpm.FILES_GET, struct.pack(
                "<QQ", offset, size or 0) + os.fsencode(path))
            ftype, payload = self._reply(seq)
            if ftype != _gpm.FILES_R_ATTR:
                self._status(ftype, payload, path)
                raise wire.ProtocolError("GET without attributes")
            st = _attr(payload)
            total = size if size is not None else max(0, st.st_size - offset)
            done = 0
            while True:
                ftype, payload = self._reply(seq)
                if ftype != _gpm.FILES_R_DATA:
                    self._status(ftype, payload, path)
                    return st
                done += len(payload)
                sink(payload)
                if progress is not None:
                    progress(done, total)

    def get(self, guest_path, local_path, *, preserve=False, progress=None):
        """Copies a guest file to ``local_path`` (a path or a binary file).

        ``preserve``: the local file gets the guest's mode bits and times
        (and owner, when the host runs as root). Returns the GuestStat.
        """
        if hasattr(local_path, "write"):
            return self.get_to(guest_path, local_path.write,
                               progress=progress)
        tmp = f"{local_path}.part"
        try:
            with open(tmp, "wb") as f:
                st = self.get_to(guest_path, f.write, progress=progress)
            os.replace(tmp, local_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if preserve:
            os.chmod(local_path, _stat.S_IMODE(st.st_mode))
            os.utime(local_path, ns=(st.st_atime_ns, st.st_mtime_ns))
            if os.geteuid() == 0:
                os.chown(local_path, st.st_uid, st.st_gid)
        return st

    def write(self, path, data, offset=0, *, truncate=True, create=True,
              mode=0o644):
        """Writes bytes into a guest file at ``offset``; returns the count."""
        view = memoryview(data).cast("B")
        chunks = (view[i:i + CHUNK] for i in range(0, len(view), CHUNK))
        return self.put_from(path, chunks, offset=offset, truncate=truncate,
                             create=create, mode=mode)

    def put_from(self, path, chunks, *, offset=0, truncate=True, create=True,
                 exclusive=False, mode=0o644, progress=None, total=None):
        """Streams bytes-like ``chunks`` into a guest file; returns the count.

        Each chunk goes as DATA frames of at most 1 MiB; at most
        QUEUE_LIMIT bytes wait on the host for the guest (the sender
        sleeps on the CHANNEL_DRAINED event).
        """
        path = self._check_path(path)
        flags = ((_gpm.FILES_TRUNC if truncate else 0)
                 | (_gpm.FILES_CREATE if create else 0)
                 | (_gpm.FILES_EXCL if exclusive else 0))
        with self._lock:
            self._channel()
            try:
                seq = self._send(_gpm.FILES_PUT, struct.pack(
                    "<IIQ", mode, flags, offset) + os.fsencode(path))
                self._status(*self._reply(seq), path)
                done = 0
                for chunk in chunks:
                    chunk = memoryview(chunk).cast("B")
                    for i in range(0, len(chunk), CHUNK):
                        piece = chunk[i:i + CHUNK]
                        self._chan.write_wait(
                            wire.header(wire.MAGIC_FILES, _gpm.FILES_R_DATA,
                                        seq, len(piece)) + bytes(piece),
                            timeout=self.timeout)
                        done += len(piece)
                        if progress is not None:
                            progress(done, total)
                self._chan.write_wait(wire.pack(
                    wire.MAGIC_FILES, _gpm.FILES_R_DATA, seq),
                    timeout=self.timeout)
                return self._status(*self._reply(seq), path)
            except BaseException as err:
                if not isinstance(err, OSError) or isinstance(
                        err, wire.ProtocolError):
                    # Out of step (e.g. ^C half way): a new plugin next time.
                    self._drop()
                raise

    def put(self, local_path, guest_path, *, mode=None, preserve=False,
            progress=None):
        """Copies ``local_path`` (a path or a binary file) to the guest.

        ``mode``: the new file's mode (default: the local file's, or
        0o644); ``preserve`` also sets the guest file's times (and owner,
        which needs a root plugin). Returns the bytes written.
        """
        if hasattr(local_path, "read"):
            f, close, st = local_path, False, None
        else:
            f, close = open(local_path, "rb"), True
            st = os.fstat(f.fileno())
        try:
            if mode is None:
                mode = _stat.S_IMODE(st.st_mode) if st is not None else 0o644
            total = st.st_size if st is not None else None
            chunks = iter(lambda: f.read(CHUNK), b"")
            n = self.put_from(guest_path, chunks, mode=mode,
                              progress=progress, total=total)
        finally:
            if close:
                f.close()
        self.chmod(guest_path, mode)
        if preserve and st is not None:
            self.utime(guest_path, (st.st_atime_ns, st.st_mtime_ns))
            if self.user is None:
                self.chown(guest_path, st.st_uid, st.st_gid)
        return n



# The command line: pandagpm cp.


class _Progress:
    """A one-line progress bar on a terminal, for copies of 1 MiB or more."""

    def __init__(self, stream, label, enabled):
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.shown = False

    def __call__(self, done, total):
        if not self.enabled or (total is not None and total < (1 << 20)):
            return
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(frac * 30)
            line = (f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% "
                    f"{done >> 20}/{total >> 20} MiB")
        else:
            line = f"\r{self.label} {done >> 20} MiB"
        self.stream.write(line.encode())
        self.stream.flush()
        self.shown = True

    def end(self):
        if self.shown:
            self.stream.write(b"\n")
            self.stream.flush()


def _isatty(f):
    try:
        return os.isatty(f.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _cp(args, session):
    src_g, dst_g = parse_guest_path(args.src), parse_guest_path(args.dst)
    if (src_g is None) == (dst_g is None):
        session.err("pandagpm cp: exactly one of SRC and DST must be "
                    "guest:/path\n")
        return 2
    fs = session.shared("files", lambda: GuestFiles(session.panda))
    show = (not args.quiet) and _isatty(session.stderr)
    if src_g is not None:
        dst = session.local_path(args.dst)
        if os.path.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src_g.rstrip("/")))
        bar = _Progress(session.stderr, os.path.basename(src_g), show)
        try:
            fs.get(src_g, dst, preserve=args.preserve, progress=bar)
        finally:
            bar.end()
    else:
        src = session.local_path(args.src)
        dst = dst_g
        try:
            if fs.stat(dst).is_dir():
                dst = dst.rstrip("/") + "/" + os.path.basename(src)
        except FileNotFoundError:
            pass
        bar = _Progress(session.stderr, os.path.basename(src), show)
        try:
            fs.put(src, dst, preserve=args.preserve, progress=bar)
        finally:
            bar.end()
    return 0


def register_cli(sub):
    """Adds ``cp`` (see pandagpm.cli)."""
    p = sub.add_parser(
        "cp", help="copy a file to or from the guest",
        description="Copy one file between the host and the guest; the "
        "guest side is written guest:/path. A progress bar is shown on "
        "a terminal for copies of 1 MiB or more.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("-p", "--preserve", action="store_true",
                   help="keep mode bits, times (and owner as root)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar")
    p.set_defaults(handler=_cp)
