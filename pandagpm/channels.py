"""Channels: the ``channel_recv`` decorator and the file-like ``Channel``.

A channel carries bytes both ways between the host and one guest program.
Guest -> host bytes arrive in a callback on the emulator's thread; host ->
guest bytes are queued by the core until the guest reads them.

There are two ways to receive:

* Pass a callback ``cb(channel_id, data)`` (for instance one decorated with
  :func:`channel_recv`). It runs on the emulator thread while the guest CPU
  is stopped, so it must be quick and must never wait for the guest.
* Pass no callback: the :class:`Channel` keeps what the guest writes in a
  bounded buffer and ``read()``/``readinto()`` return it, blocking with an
  optional timeout. The buffer holds at most ``buffer_limit`` bytes
  (:data:`DEFAULT_BUFFER_LIMIT`). The core cannot refuse a guest write, so
  when the buffer is full the new bytes are dropped, counted, and the next
  read raises :class:`~pandagpm.errors.ChannelOverflow` once (with
  ``lost``); nothing buffered before the overflow is lost. Size the limit
  for your protocol, or use a callback.

When the emulator is gone (QEMU exited), a Channel that belongs to a
host that noticed it raises that host's error
(:class:`~pandagpm.errors.EmulatorConnectionLost`) from ``write()``, and
from ``read()`` once everything buffered has been read; a reader blocked
at the time wakes up and raises it too.

A read that would wait, made inside a channel or event callback (on the
emulator's thread, with the guest stopped), raises
:class:`~pandagpm.errors.CalledFromCallback` at once instead of freezing
the guest; ``read(n, timeout=0)`` never waits and may be used there.

A Channel is an :class:`io.RawIOBase`, so ``io.BufferedReader(chan)``,
``shutil.copyfileobj(chan, f)`` and friends work. End of file is reached
when the channel is closed or the guest sends STOP on it (see
:class:`~pandagpm.manager.GuestPluginManager`, which forwards STOP).
"""

import collections
import functools
import inspect
import io
import threading
import time
import typing

from . import _gpm
from .errors import (CalledFromCallback, ChannelClosed, ChannelOverflow,
                     QueueFull, Timeout, wrap)

__all__ = ["channel_recv", "Channel", "DEFAULT_BUFFER_LIMIT"]

#: Bytes a Channel without a callback buffers before it drops guest writes.
DEFAULT_BUFFER_LIMIT = 16 << 20

_DEFAULT = object()


def _second_param(func):
    """The parameter that receives the message, skipping self/cls."""
    sig = inspect.signature(func)
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    if len(params) < 2:
        raise TypeError(
            f"{func.__qualname__}: a channel_recv callback takes "
            "(channel_id, msg)"
        )
    return params[1]


def _wants_str(func):
    """True if the message parameter is annotated ``str``."""
    param = _second_param(func)
    ann = param.annotation
    try:
        ann = typing.get_type_hints(func).get(param.name, ann)
    except Exception:  # Unresolvable forward references: keep the raw one.
        pass
    if ann is str or ann == "str":
        return True
    if ann in (bytes, "bytes", inspect.Parameter.empty, typing.Any):
        return False
    raise TypeError(
        f"{func.__qualname__}: the message parameter {param.name!r} must be "
        f"annotated bytes or str, not {ann!r}"
    )


def channel_recv(func):
    """Makes ``func(channel_id, msg)`` usable as a channel callback.

    The type of ``msg`` is chosen by its annotation, like the Rust
    original's ``#[channel_recv]``: ``str`` gets the bytes decoded as UTF-8
    (invalid sequences replaced), ``bytes`` or no annotation gets the bytes.
    Works on plain functions and on methods. The callback runs on the
    emulator thread; an exception it raises is reported through
    ``sys.unraisablehook`` and the emulator keeps running.
    """
    want_str = _wants_str(func)
    if want_str:

        @functools.wraps(func)
        def recv(*args):
            *head, data = args
            return func(*head, bytes(data).decode("utf-8", errors="replace"))

    else:

        @functools.wraps(func)
        def recv(*args):
            return func(*args)

    recv.channel_recv_str = want_str
    return recv


def _as_gpm_manager(obj):
    """The ``_gpm.Manager`` of a manager, a host or a GuestPluginManager."""
    if isinstance(obj, _gpm.Manager):
        return obj
    mgr = getattr(obj, "manager", None)
    if isinstance(mgr, _gpm.Manager):
        return mgr
    raise TypeError(f"expected a pandagpm manager or host, not {obj!r}")


class _RecvBuffer:
    """Guest -> host bytes of one Channel; the core's callback for it.

    Called on the emulator thread with the GIL held; it never blocks for
    longer than a reader's short critical section.
    """

    def __init__(self, limit):
        if limit <= 0:
            raise ValueError("buffer_limit must be positive")
        self.limit = limit
        self.cond = threading.Condition()
        self.chunks = collections.deque()
        self.size = 0
        self.lost = 0
        self.eof = False
        self.closed = False
        # The exception to raise once drained: the emulator is gone.
        self.gone = None
        # pause(flag) pauses the channel in the core (set by Channel): the
        # guest's writes then get EBUSY and are retried, so nothing the
        # guest was told was taken is ever dropped. Without it, bytes past
        # the limit are dropped and counted.
        self.pause = None
        self.paused = False

    def _set_paused(self, flag):
        """Pauses or resumes the guest's writes; holds the lock."""
        if self.pause is None or self.paused == flag:
            return
        try:
            self.pause(flag)
            self.paused = flag
        except Exception:  # the channel is gone: nothing to pause
            pass

    def __call__(self, channel_id, data):
        with self.cond:
            if self.closed:
                return
            if self.pause is None and self.size + len(data) > self.limit:
                self.lost += len(data)
            else:
                # With backpressure the buffer passes the limit by at most
                # one hypercall's worth (GPM_HC_MAX_TRANSFER).
                self.chunks.append(data)
                self.size += len(data)
                if self.size >= self.limit:
                    self._set_paused(True)
            self.cond.notify_all()

    def set_eof(self, eof):
        with self.cond:
            self.eof = eof
            self.cond.notify_all()

    def set_lost(self, exc):
        """Readers raise ``exc`` once nothing is buffered; any thread."""
        with self.cond:
            self.gone = exc
            self.cond.notify_all()

    def take_into(self, b):
        """Moves up to len(b) buffered bytes into b; holds the lock."""
        view = memoryview(b).cast("B")
        n = 0
        while self.chunks and n < len(view):
            head = self.chunks[0]
            k = min(len(head), len(view) - n)
            view[n:n + k] = head[:k]
            n += k
            if k == len(head):
                self.chunks.popleft()
            else:
                self.chunks[0] = head[k:]
        self.size -= n
        if self.paused and self.size < self.limit // 2:
            self._set_paused(False)
        return n

    def unread(self, data):
        """Puts bytes back at the head; holds the lock."""
        if data:
            self.chunks.appendleft(bytes(data))
            self.size += len(data)

    def check_overflow(self):
        """Raises ChannelOverflow once after bytes were dropped."""
        if self.lost:
            lost, self.lost = self.lost, 0
            raise ChannelOverflow(
                f"receive buffer full ({self.limit} bytes): dropped {lost} "
                "guest bytes",
                lost=lost,
            )


class _HostState:
    """What a manager's Channels share: whether the emulator is gone."""

    def __init__(self):
        self.lost = None


class Channel(io.RawIOBase):
    """One channel as a binary file-like object.

    ``id`` and ``name`` identify it; ``write(data)`` queues one message for
    the guest; ``read(n)`` returns bytes the guest wrote (only for a channel
    made without a callback). Make one with :meth:`allocate`, or with
    :class:`~pandagpm.manager.GuestPluginManager`.

    Closing a Channel that allocated its channel closes it in the core too
    (which drops what is still queued for the guest and releases the
    callback). Like a file, a Channel is closed when it is garbage
    collected; GuestPluginManager keeps the Channels it returns alive.
    """

    def __init__(self, manager, channel_id, name=None, *, buffer=None,
                 timeout=None, owns=False, state=None):
        super().__init__()
        self._mgr = _as_gpm_manager(manager)
        self.id = channel_id
        self.name = name
        self.timeout = timeout
        self._buf = buffer
        self._owns = owns
        self._state = state
        # Set by the manager's CHANNEL_DRAINED event (gpm/manager.h).
        self._drained = threading.Event()
        if buffer is not None and hasattr(self._mgr, "set_paused"):
            mgr, cid = self._mgr, channel_id
            buffer.pause = lambda flag: mgr.set_paused(cid, flag)

    @classmethod
    def allocate(cls, manager, name=None, callback=None, *,
                 buffer_limit=DEFAULT_BUFFER_LIMIT, timeout=None):
        """A new channel. Without ``callback``, reads return guest bytes."""
        mgr = _as_gpm_manager(manager)
        buf = None if callback is not None else _RecvBuffer(buffer_limit)
        with wrap():
            cid = mgr.allocate_channel(name, callback or buf)
        return cls(mgr, cid, name, buffer=buf, timeout=timeout, owns=True)

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<pandagpm.Channel id={self.id} name={self.name!r} {state}>"

    def readable(self):
        return self._buf is not None and not self.closed

    def writable(self):
        return not self.closed

    def seekable(self):
        return False

    @property
    def manager(self):
        """The ``_gpm.Manager`` the channel belongs to."""
        return self._mgr

    @property
    def started(self):
        """Whether the guest has sent START on this channel."""
        with wrap():
            return self._mgr.started(self.id)

    @property
    def pending(self):
        """``(bytes, messages)`` queued for the guest and not yet read."""
        with wrap():
            return self._mgr.pending(self.id)

    @property
    def buffered(self):
        """Guest bytes waiting in this Channel's receive buffer."""
        if self._buf is None:
            return 0
        with self._buf.cond:
            return self._buf.size

    def write(self, data):
        """Queues ``data`` as one message for the guest; returns its length.

        Raises QueueFull if a queue limit would be passed (nothing is
        queued then), ChannelClosed if the channel is gone, or the host's
        EmulatorConnectionLost once the emulator has gone away.
        """
        self._checkClosed()
        if self._state is not None and self._state.lost is not None:
            raise self._state.lost
        with wrap():
            self._mgr.write(self.id, data)
        return memoryview(data).nbytes

    def set_queue_limit(self, limit):
        """Bounds what may be queued for the guest on this channel to
        ``limit`` bytes (0: the manager's limit), so that a streaming
        sender holds little host memory; see :meth:`write_wait`."""
        with wrap():
            self._mgr.set_queue_limit(self.id, limit)

    def wait_drained(self, timeout=None):
        """Waits for the CHANNEL_DRAINED event: after a write raised
        QueueFull, the guest has read the queue down to half its limit.

        Returns True if it came, False after ``timeout`` seconds. Needs a
        Channel made by a GuestPluginManager (which forwards the event).
        """
        return self._drained.wait(timeout)

    def write_wait(self, data, timeout=None, slice_=0.5):
        """:meth:`write`, waiting for room when the queue is full.

        On QueueFull it waits for the drained event (at most ``slice_``
        seconds at a time, since room taken by other channels under the
        manager's total limit gives no event) and tries again; raises
        Timeout after ``timeout`` seconds, or what write raises.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drained.clear()
            try:
                return self.write(data)
            except QueueFull as err:
                if isinstance(err, ChannelOverflow):
                    raise
                wait = slice_
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Timeout(
                            f"channel {self.id}: the guest did not read its "
                            f"queue within {timeout} s") from err
                    wait = min(wait, left)
                if self._mgr.in_callback():
                    raise CalledFromCallback(
                        f"Channel {self.id}: write_wait() waits for the "
                        "guest, but was called from a callback") from err
                self._drained.wait(wait)

    def _need_buffer(self):
        self._checkClosed()
        if self._buf is None:
            raise io.UnsupportedOperation(
                "this channel delivers guest bytes to its callback"
            )

    def readinto(self, b, timeout=_DEFAULT):
        """Fills ``b`` with guest bytes; returns the count.

        Blocks until at least one byte is there. Returns 0 at end of file
        (closed, or the guest sent STOP and everything was read). With
        ``timeout=0`` returns None instead of blocking; with a positive
        timeout raises :class:`~pandagpm.errors.Timeout` when it passes.
        """
        self._need_buffer()
        if len(memoryview(b)) == 0:
            return 0
        if timeout is _DEFAULT:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        buf = self._buf
        with buf.cond:
            while True:
                buf.check_overflow()
                if buf.chunks:
                    return buf.take_into(b)
                if buf.gone is not None:
                    raise buf.gone
                if buf.eof or buf.closed:
                    return 0
                if timeout != 0 and self._mgr.in_callback():
                    raise CalledFromCallback(
                        f"Channel {self.id}: a read that waits for the guest "
                        "was made inside a channel or event callback, where "
                        "the guest is stopped; use read(n, timeout=0)")
                if deadline is None:
                    buf.cond.wait()
                    continue
                if timeout == 0:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(
                        f"no data on channel {self.id} within {timeout} s"
                    )
                buf.cond.wait(remaining)

    def read(self, size=-1, timeout=_DEFAULT):
        """Up to ``size`` guest bytes; everything until end of file if < 0.

        Blocks until some bytes are there (see :meth:`readinto`). With a
        negative size and a timeout that passes, the bytes gathered so far
        are put back and Timeout is raised, so nothing is lost.
        """
        if size is None or size < 0:
            return self.readall(timeout)
        b = bytearray(size)
        n = self.readinto(b, timeout)
        if n is None:
            return None
        del b[n:]
        return bytes(b)

    def readall(self, timeout=_DEFAULT):
        """Every guest byte until end of file."""
        self._need_buffer()
        if timeout is _DEFAULT:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        out = bytearray()
        chunk = bytearray(64 << 10)
        while True:
            left = None
            if deadline is not None:
                # A zero timeout would mean "do not block" to readinto().
                left = max(1e-9, deadline - time.monotonic())
            try:
                n = self.readinto(chunk, left)
            except Timeout:
                with self._buf.cond:
                    self._buf.unread(out)
                raise
            if not n:
                return bytes(out)
            out += chunk[:n]

    def close(self):
        """Closes the Channel; see the class comment for the core side."""
        if self.closed:
            return
        try:
            if self._owns:
                try:
                    with wrap():
                        self._mgr.close(self.id)
                except ChannelClosed:
                    pass
            if self._buf is not None:
                with self._buf.cond:
                    self._buf.closed = True
                    self._buf.cond.notify_all()
        finally:
            super().close()
