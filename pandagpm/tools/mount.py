"""The running guest's filesystem on the host, through FUSE.

:class:`GuestMount` serves a FUSE filesystem (pyfuse3 on libfuse3) whose
every operation is a :class:`~pandagpm.tools.files.GuestFiles` request::

    from pandagpm.tools.mount import GuestMount

    m = GuestMount(panda, "/mnt/guest")
    m.run()                      # blocks; m.stop() from another thread

getattr, lookup, readdir, open/read, readlink, and write, create,
truncate, chmod, chown, utimens, mkdir, rmdir, unlink, rename, symlink.
A directory listing is one LISTDIR request whose reply carries every
entry's attributes; they go to the kernel with the entries
(readdirplus) and into an attribute cache (:data:`ATTR_TTL`), so
``ls -l`` of a large directory is a few round trips, not one per entry.

Unmounting: ``stop()``, ^C (SIGINT/SIGTERM in the main thread) and the
guest's death (QEMU gone: checked every :data:`WATCH_PERIOD`) all end
the loop, and the filesystem is always unmounted on the way out
(``pyfuse3.close(unmount=True)``). Only a SIGKILL of the host process
leaves the mount point dead; ``fusermount3 -u MOUNTPOINT`` clears it.

Why pyfuse3: the guest side is already Python (GuestFiles); pyfuse3 is the
maintained libfuse3 binding, exposes the low-level API (inode numbers,
readdirplus with attributes, explicit timeouts) and runs the requests
concurrently under trio while the blocking guest calls go to threads.
A C filesystem on libfuse3 would need its own client of the files
protocol and a second channel user in the same process.
"""

import errno
import os
import signal
import stat as _stat
import threading
import time

__all__ = ["GuestMount", "fuse_available", "ATTR_TTL"]

#: Seconds the kernel and this cache keep attributes and names.
ATTR_TTL = 1.0
#: How often the emulator is checked while mounted.
WATCH_PERIOD = 0.2


def fuse_available():
    """``(True, "")`` if a FUSE mount can be made here, else
    ``(False, why)``."""
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as err:
        return False, f"pyfuse3/trio not installed ({err})"
    if not os.path.exists("/dev/fuse"):
        return False, "no /dev/fuse"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
        os.close(fd)
    except OSError as err:
        return False, f"cannot open /dev/fuse: {err.strerror}"
    from shutil import which
    if which("fusermount3") is None and os.geteuid() != 0:
        return False, "no fusermount3 (Debian package fuse3)"
    return True, ""


def _make_ops(files, attr_ttl):
    import pyfuse3
    import trio

    class Ops(pyfuse3.Operations):
        """The FUSE operations, as GuestFiles requests in threads."""

        enable_writeback_cache = False

        def __init__(self):
            super().__init__()
            self.paths = {pyfuse3.ROOT_INODE: "/"}
            self.inodes = {"/": pyfuse3.ROOT_INODE}
            self.next_ino = pyfuse3.ROOT_INODE + 1
            self.cache = {}  # path -> (GuestStat, time)
            self.dirs = {}  # directory handle -> [path, entries or None]
            self.next_dir = 1
            self.lock = threading.Lock()

        # Inodes: our own numbers, one per guest path seen.

        def _ino(self, path):
            with self.lock:
                ino = self.inodes.get(path)
                if ino is None:
                    ino = self.next_ino
                    self.next_ino += 1
                    self.inodes[path] = ino
                    self.paths[ino] = path
                return ino

        def _path(self, ino):
            try:
                return self.paths[ino]
            except KeyError:
                raise pyfuse3.FUSEError(errno.ENOENT) from None

        @staticmethod
        def _join(parent, name):
            name = os.fsdecode(name)
            return "/" + name if parent == "/" else f"{parent}/{name}"

        async def _call(self, fn, *args):
            try:
                return await trio.to_thread.run_sync(fn, *args)
            except OSError as err:
                raise pyfuse3.FUSEError(err.errno or errno.EIO) from None
            except Exception:  # a lost guest or a protocol break
                raise pyfuse3.FUSEError(errno.EIO) from None

        def _entry(self, path, st):
            e = pyfuse3.EntryAttributes()
            e.st_ino = self._ino(path)
            e.st_mode = st.st_mode
            e.st_nlink = st.st_nlink
            e.st_uid = st.st_uid
            e.st_gid = st.st_gid
            e.st_rdev = st.st_rdev
            e.st_size = st.st_size
            e.st_blocks = st.st_blocks
            e.st_blksize = 4096
            e.st_atime_ns = st.st_atime_ns
            e.st_mtime_ns = st.st_mtime_ns
            e.st_ctime_ns = st.st_ctime_ns
            e.attr_timeout = attr_ttl
            e.entry_timeout = attr_ttl
            return e

        def _cached(self, path):
            hit = self.cache.get(path)
            if hit is not None and time.monotonic() - hit[1] < attr_ttl:
                return hit[0]
            return None

        def _forget_path(self, path):
            self.cache.pop(path, None)
            self.cache.pop(os.path.dirname(path) or "/", None)

        async def _lstat(self, path):
            st = self._cached(path)
            if st is None:
                st = await self._call(files.lstat, path)
                self.cache[path] = (st, time.monotonic())
            return st

        async def lookup(self, parent_inode, name, ctx=None):
            path = self._join(self._path(parent_inode), name)
            return self._entry(path, await self._lstat(path))

        async def getattr(self, inode, ctx=None):
            path = self._path(inode)
            return self._entry(path, await self._lstat(path))

        async def readlink(self, inode, ctx):
            return os.fsencode(await self._call(files.readlink,
                                                self._path(inode)))

        async def opendir(self, inode, ctx):
            # One listing per open directory: the kernel reads it in
            # several readdir calls, which must not each ask the guest.
            with self.lock:
                fh = self.next_dir
                self.next_dir += 1
                self.dirs[fh] = [self._path(inode), None]
            return fh

        async def releasedir(self, fh):
            with self.lock:
                self.dirs.pop(fh, None)

        async def readdir(self, fh, start_id, token):
            try:
                d = self.dirs[fh]
            except KeyError:
                raise pyfuse3.FUSEError(errno.EBADF) from None
            path = d[0]
            if d[1] is None:
                d[1] = await self._call(files.scandir, path)
            entries = d[1]
            now = time.monotonic()
            for i, (name, st) in enumerate(entries):
                if i < start_id:
                    continue
                child = self._join(path, os.fsencode(name))
                self.cache[child] = (st, now)
                if not pyfuse3.readdir_reply(token, os.fsencode(name),
                                             self._entry(child, st), i + 1):
                    break

        async def open(self, inode, flags, ctx):
            if flags & os.O_TRUNC:
                await self._call(files.truncate, self._path(inode), 0)
                self._forget_path(self._path(inode))
            return pyfuse3.FileInfo(fh=inode, direct_io=False,
                                    keep_cache=False)

        async def read(self, fh, off, size):
            return await self._call(files.read, self._path(fh), off, size)

        async def write(self, fh, off, buf):
            path = self._path(fh)
            n = await self._call(lambda: files.write(
                path, buf, off, truncate=False, create=False))
            self._forget_path(path)
            return n

        async def create(self, parent_inode, name, mode, flags, ctx):
            path = self._join(self._path(parent_inode), name)
            await self._call(lambda: files.write(
                path, b"", 0, truncate=True, create=True,
                mode=_stat.S_IMODE(mode)))
            self._forget_path(path)
            st = await self._lstat(path)
            return (pyfuse3.FileInfo(fh=self._ino(path)),
                    self._entry(path, st))

        async def setattr(self, inode, attr, fields, fh, ctx):
            path = self._path(inode)
            if fields.update_size:
                await self._call(files.truncate, path, attr.st_size)
            if fields.update_mode:
                await self._call(files.chmod, path,
                                 _stat.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                st = await self._lstat(path)
                uid = attr.st_uid if fields.update_uid else st.st_uid
                gid = attr.st_gid if fields.update_gid else st.st_gid
                await self._call(files.chown, path, uid, gid)
            if fields.update_atime or fields.update_mtime:
                st = await self._lstat(path)
                at = attr.st_atime_ns if fields.update_atime else \
                    st.st_atime_ns
                mt = attr.st_mtime_ns if fields.update_mtime else \
                    st.st_mtime_ns
                await self._call(files.utime, path, (at, mt))
            self._forget_path(path)
            return await self.getattr(inode, ctx)

        async def mkdir(self, parent_inode, name, mode, ctx):
            path = self._join(self._path(parent_inode), name)
            await self._call(files.mkdir, path, _stat.S_IMODE(mode))
            self._forget_path(path)
            return self._entry(path, await self._lstat(path))

        async def symlink(self, parent_inode, name, target, ctx):
            path = self._join(self._path(parent_inode), name)
            await self._call(files.symlink, os.fsdecode(target), path)
            self._forget_path(path)
            return self._entry(path, await self._lstat(path))

        async def unlink(self, parent_inode, name, ctx):
            path = self._join(self._path(parent_inode), name)
            await self._call(files.remove, path)
            self._forget_path(path)

        async def rmdir(self, parent_inode, name, ctx):
            path = self._join(self._path(parent_inode), name)
            await self._call(files.rmdir, path)
            self._forget_path(path)

        async def rename(self, p_old, n_old, p_new, n_new, flags, ctx):
            if flags:
                raise pyfuse3.FUSEError(errno.EINVAL)
            old = self._join(self._path(p_old), n_old)
            new = self._join(self._path(p_new), n_new)
            await self._call(files.rename, old, new)
            self._forget_path(old)
            self._forget_path(new)
            with self.lock:
                ino = self.inodes.pop(old, None)
                if ino is not None:
                    self.inodes[new] = ino
                    self.paths[ino] = new

        async def statfs(self, ctx):
            s = pyfuse3.StatvfsData()
            s.f_bsize = s.f_frsize = 4096
            s.f_namemax = 255
            return s

    return Ops()


class GuestMount:
    """A FUSE mount of the guest's filesystem at ``mountpoint``.

    ``files`` is a GuestFiles (default: a new one on ``host``). One mount
    per host process (pyfuse3 has one session).
    """

    def __init__(self, host, mountpoint, *, files=None, attr_ttl=ATTR_TTL,
                 read_only=False):
        from .files import GuestFiles

        self.host = host
        self.mountpoint = os.path.abspath(mountpoint)
        self._own_files = files is None
        self.files = files if files is not None else GuestFiles(host)
        self.attr_ttl = attr_ttl
        self.read_only = read_only
        self._token = None
        self._stop = threading.Event()
        self.mounted = threading.Event()
        self.reason = None

    def _lost(self):
        lost = getattr(self.host, "emulator_lost", None)
        return lost is not None and lost.is_set()

    def run(self):
        """Mounts, serves until stopped, ^C or the guest's death, then
        unmounts; blocks. Returns why it ended ("stopped", "interrupted",
        "guest gone")."""
        import pyfuse3
        import trio

        ops = _make_ops(self.files, self.attr_ttl)
        opts = set(pyfuse3.default_options)
        opts.add("fsname=pandagpm")
        opts.discard("default_permissions")
        if self.read_only:
            opts.add("ro")
        pyfuse3.init(ops, self.mountpoint, opts)
        self.reason = "stopped"

        async def watch(nursery):
            while True:
                if self._stop.is_set():
                    break
                if self._lost():
                    self.reason = "guest gone"
                    break
                await trio.sleep(WATCH_PERIOD)
            pyfuse3.terminate()

        async def main():
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as n:
                n.start_soon(watch, n)
                self.mounted.set()
                await pyfuse3.main()
                n.cancel_scope.cancel()

        try:
            trio.run(main)
        except KeyboardInterrupt:
            self.reason = "interrupted"
        finally:
            self.mounted.clear()
            pyfuse3.close(unmount=True)
            if self._own_files:
                try:
                    self.files.close()
                except Exception:  # the guest may be gone
                    pass
        return self.reason

    def stop(self):
        """Ends :meth:`run` (any thread); it unmounts on the way out."""
        self._stop.set()


def is_mounted(path):
    """Whether ``path`` is a mount point in /proc/self/mounts."""
    path = os.path.abspath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and fields[1] == path:
                return True
    return False


def _mount(args, session):
    ok, why = fuse_available()
    if not ok:
        session.err(f"pandagpm mount: FUSE is not usable here: {why}\n")
        return 1
    mp = session.local_path(args.mountpoint)
    if not os.path.isdir(mp):
        session.err(f"pandagpm mount: {mp}: not a directory\n")
        return 1
    from .files import GuestFiles

    files = session.shared("files", lambda: GuestFiles(session.panda))
    m = GuestMount(session.panda, mp, files=files, read_only=args.read_only)
    session.err(f"pandagpm mount: the guest's / on {mp}; ^C unmounts\n")
    old = {}
    if threading.current_thread() is threading.main_thread():
        # SIGTERM and SIGHUP unmount too (^C does through trio).
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, lambda *_: m.stop())
    try:
        reason = m.run()
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    session.err(f"pandagpm mount: unmounted ({reason})\n")
    return 0 if reason != "guest gone" else 1


def register_cli(sub):
    """Adds ``mount`` (see pandagpm.cli)."""
    p = sub.add_parser(
        "mount", help="mount the guest's filesystem with FUSE",
        description="Show the running guest's / at MOUNTPOINT (FUSE, "
        "pyfuse3 on libfuse3) until ^C or the guest's end; always "
        "unmounted on the way out.")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("--read-only", action="store_true",
                   help="refuse writes")
    p.set_defaults(handler=_mount)
