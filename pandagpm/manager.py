"""GuestPluginManager: the public face of the channel manager.

Method names mirror the original PANDA guest plugin manager
(``add_guest_plugin``, ``channel_write``, ``get_channel_from_name``,
``allocate_channel``), plus :meth:`GuestPluginManager.load_guest_plugin`
which returns a file-like :class:`~pandagpm.channels.Channel`.

The manager sits on a *host*: whatever runs the guest and feeds its
hypercalls to a ``_gpm.Manager`` (the stock-QEMU host, PANDA, or a test's
fake CPU through :meth:`GuestPluginManager.dispatch`). A host is any object
with a ``manager`` attribute holding a ``_gpm.Manager``; a bare
``_gpm.Manager``, or nothing (a new one is made), works for in-process use.
"""

import threading
import typing
import weakref

from . import _gpm, _paths
from .channels import DEFAULT_BUFFER_LIMIT, Channel, _HostState, _RecvBuffer
from .errors import ChannelNotFound, PluginNotFound, wrap

__all__ = [
    "GuestPluginManager", "Event", "PluginInfo", "inspect_plugin",
    "find_plugin", "list_plugins", "add_plugin_dir", "arch_info",
    "EVENT_TYPES", "OWNER_ANY", "OWNER_PENDING", "OWNER_NONE",
]

#: Channel owners besides a guest tgid (gpm/manager.h): any process may
#: use the channel; its owner is not known yet (calls get EBUSY); it had
#: one that is gone (calls get EACCES).
OWNER_ANY = -1
OWNER_PENDING = 0
OWNER_NONE = -2

#: The names an Event's ``type`` can take.
EVENT_TYPES = (
    "CHANNEL_START", "CHANNEL_STOP", "GUEST_ERROR", "GUEST_CHANNEL",
    "DAEMON_READY", "PLUGIN_STARTED", "PLUGIN_EXITED", "PLUGIN_FAILED",
    "PROTOCOL_ERROR", "CHANNEL_DRAINED",
)


class Event(typing.NamedTuple):
    """A lifecycle event from the guest (see gpm/manager.h).

    ``type`` is one of :data:`EVENT_TYPES`; fields a type does not use are
    0, -1 (pids) or None.
    """

    type: str
    channel: int
    name: typing.Optional[str]
    text: typing.Optional[str]
    pid: int
    status: int
    err: int
    stage: int


class PluginInfo(typing.NamedTuple):
    """A guest plugin binary: its descriptor and ELF identity."""

    name: str
    version: str
    description: str
    path: str
    arch: typing.Optional[str]
    elf_machine: int
    elf_class: int
    desc_abi: int


def _plugin_info(d):
    return PluginInfo(**d)


def inspect_plugin(path):
    """The descriptor of the guest binary at ``path`` (PluginInfo).

    Raises PluginNotFound, NotExecutable or BadDescriptor.
    """
    with wrap(PluginNotFound):
        return _plugin_info(_gpm.inspect_plugin(path))


def find_plugin(name, arch="x86_64", explicit_dir=None):
    """The first valid binary for ``name`` along the search path.

    Binaries for other arches are passed over (a search path may hold
    several arches' builds). Raises PluginNotFound (listing every path
    tried), the error of the first candidate that was refused, or
    WrongArchitecture if only other arches' binaries were found.
    """
    _paths.register()
    with wrap(PluginNotFound):
        return _plugin_info(_gpm.find_plugin(name, arch, explicit_dir))


def list_plugins(explicit_dir=None):
    """Every valid guest plugin on the search path, first match per name."""
    _paths.register()
    with wrap(PluginNotFound):
        return [_plugin_info(d) for d in _gpm.list_plugins(explicit_dir)]


def add_plugin_dir(path):
    """Appends a directory to the plugin search path."""
    with wrap():
        _gpm.add_plugin_dir(path)


def arch_info(name):
    """The core's table entry for an architecture, as a dict."""
    with wrap():
        return _gpm.arch_info(name)


def _event_trampoline(ref):
    """An event callback that does not keep its manager alive."""

    def on_event(raw):
        self = ref()
        if self is not None:
            self._dispatch_event(Event(*raw))

    return on_event


class GuestPluginManager:
    """Loads guest plugins and exchanges bytes with them over channels.

    ``host`` is an object with a ``manager`` attribute (a ``_gpm.Manager``),
    a ``_gpm.Manager``, or None to make a new Manager for ``arch`` with the
    given limits (0 = the core's default).

    Threads: every method may be called from any thread. Channel callbacks
    and event listeners run on the emulator's thread while the guest is
    stopped; they must be quick and must not wait for the guest.
    """

    def __init__(self, host=None, *, arch="x86_64", queue_limit=0,
                 total_queue_limit=0, max_channels=0, max_guest_channels=0):
        if host is None:
            with wrap():
                mgr = _gpm.Manager(arch, queue_limit, total_queue_limit,
                                   max_channels, max_guest_channels)
        elif isinstance(host, _gpm.Manager):
            mgr = host
        else:
            mgr = getattr(host, "manager", None)
            if not isinstance(mgr, _gpm.Manager):
                raise TypeError(
                    f"host {host!r} has no 'manager' attribute holding a "
                    "pandagpm._gpm.Manager"
                )
        self.host = host
        self._mgr = mgr
        self._lock = threading.Lock()
        self._channels = {}
        self._listeners = []
        self._state = _HostState()
        _paths.register()
        # One listener among any number: several GuestPluginManagers on one
        # _gpm.Manager each get every event. It goes away with this object.
        self._trampoline = _event_trampoline(weakref.ref(self))
        mgr.add_event_listener(self._trampoline)
        self._unlisten = weakref.finalize(self, mgr.remove_event_listener,
                                          self._trampoline)

    def __repr__(self):
        return (f"<pandagpm.GuestPluginManager arch={self.arch} "
                f"channels={len(self._channels)}>")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def manager(self):
        """The ``_gpm.Manager`` underneath."""
        return self._mgr

    @property
    def arch(self):
        """The guest's architecture name."""
        return self._mgr.arch

    def _register(self, chan):
        with self._lock:
            self._channels[chan.id] = chan
        return chan

    # Plugins.

    def load_guest_plugin(self, name, callback=None, path=None, *,
                          buffer_limit=DEFAULT_BUFFER_LIMIT, timeout=None):
        """Asks the guest daemon to run plugin ``name``; returns its Channel.

        ``path`` is the binary (default: found by name on the search path).
        Without ``callback`` the Channel buffers what the plugin writes and
        ``read()`` returns it. Raises PluginNotFound, WrongArchitecture,
        BadDescriptor, NotExecutable or NameInUse; on failure nothing is
        queued for the guest.
        """
        buf = None if callback is not None else _RecvBuffer(buffer_limit)
        self._check_alive()
        with wrap(PluginNotFound):
            cid = self._mgr.add_guest_plugin(name, path, callback or buf)
        return self._register(Channel(self._mgr, cid, name, buffer=buf,
                                      timeout=timeout, owns=True,
                                      state=self._state))

    def add_guest_plugin(self, name, path=None, callback=None):
        """Like the original: registers plugin ``name`` and returns the id
        of its main channel. See :meth:`load_guest_plugin`.
        """
        return self.load_guest_plugin(name, callback, path).id

    def find_plugin(self, name, explicit_dir=None):
        """:func:`find_plugin` for this manager's architecture."""
        return find_plugin(name, self.arch, explicit_dir)

    def list_plugins(self, explicit_dir=None):
        """:func:`list_plugins`."""
        return list_plugins(explicit_dir)

    # Channels.

    def open_channel(self, name=None, callback=None, *,
                     buffer_limit=DEFAULT_BUFFER_LIMIT, timeout=None):
        """A new channel as a Channel (named or anonymous)."""
        chan = Channel.allocate(self._mgr, name, callback,
                                buffer_limit=buffer_limit, timeout=timeout)
        chan._state = self._state
        return self._register(chan)

    def attach_channel(self, channel_id, callback=None, *,
                       buffer_limit=DEFAULT_BUFFER_LIMIT, timeout=None):
        """Starts receiving on a channel made elsewhere; returns its Channel.

        A channel the guest allocated (a GUEST_CHANNEL event) has no
        receiver, so guest writes to it fail with HC_EPIPE until this is
        called. Replaces any previous callback of the channel.
        """
        buf = None if callback is not None else _RecvBuffer(buffer_limit)
        with wrap():
            self._mgr.set_callback(channel_id, callback or buf)
        return self._register(Channel(self._mgr, channel_id, buffer=buf,
                                      timeout=timeout, owns=True,
                                      state=self._state))

    def allocate_channel(self, callback=None, name=None):
        """Like the original: a new channel's id. ``callback(id, data)``
        receives guest bytes; without one the Channel buffers them.
        """
        return self.open_channel(name, callback).id

    def get_channel_from_name(self, name):
        """The id of the channel called ``name``; ChannelNotFound if none."""
        with wrap(ChannelNotFound):
            return self._mgr.lookup(name)

    def channel(self, key):
        """The Channel for an id or a name.

        Channels made through this manager come back as they were made;
        others (e.g. one the guest allocated) get a write-only Channel that
        does not close the core channel when it is closed.
        """
        cid = self.get_channel_from_name(key) if isinstance(key, str) else key
        with self._lock:
            chan = self._channels.get(cid)
        if chan is not None and not chan.closed:
            return chan
        with wrap():
            self._mgr.pending(cid)
        return Channel(self._mgr, cid, key if isinstance(key, str) else None,
                       state=self._state)

    def channel_write(self, channel_id, data):
        """Queues ``data`` as one message for the guest on ``channel_id``.

        Raises QueueFull (nothing queued), MessageTooLong, ChannelClosed,
        or EmulatorConnectionLost once the host marked the emulator lost.
        """
        self._check_alive()
        with wrap():
            self._mgr.write(channel_id, data)

    def close_channel(self, channel_id):
        """Closes a channel: queued bytes are dropped, callbacks released."""
        with self._lock:
            chan = self._channels.pop(channel_id, None)
        if chan is not None and chan._owns:
            chan.close()
            return
        with wrap():
            self._mgr.close(channel_id)

    def end_all_channels(self):
        """Puts every buffered channel at end of file (the guest is gone).

        Blocked readers return what was buffered, then ``b""``. Any thread.
        """
        with self._lock:
            chans = list(self._channels.values())
        for chan in chans:
            if chan._buf is not None:
                chan._buf.set_eof(True)

    def lose_all_channels(self, exc):
        """The emulator is gone: ``exc`` is raised by every Channel's
        ``write()``, by ``read()`` once its buffer is drained (blocked
        readers wake up), and by this manager's writes and loads. Any
        thread.
        """
        self._state.lost = exc
        with self._lock:
            chans = list(self._channels.values())
        for chan in chans:
            if chan._buf is not None:
                chan._buf.set_lost(exc)

    @property
    def lost(self):
        """The exception given to :meth:`lose_all_channels`, or None."""
        return self._state.lost

    def _check_alive(self):
        if self._state.lost is not None:
            raise self._state.lost

    def close(self):
        """Closes every channel this manager made and stops listening."""
        with self._lock:
            chans = list(self._channels.values())
            self._channels.clear()
        for chan in chans:
            chan.close()
        self._unlisten()

    # Events and hypercalls.

    def on_event(self, callback=None, *, types=None):
        """Calls ``callback(event)`` for each Event (of ``types`` if given).

        Usable as a decorator, with or without arguments. Returns the
        callback. Listeners run on the emulator thread.
        """
        if types is not None:
            types = frozenset(types)
            unknown = types - set(EVENT_TYPES)
            if unknown:
                raise ValueError(f"unknown event types: {sorted(unknown)}")

        def add(cb):
            with self._lock:
                self._listeners.append((cb, types))
            return cb

        return add if callback is None else add(callback)

    def add_event_listener(self, callback, types=None):
        """Same as ``on_event(callback, types=types)``; returns callback.

        Any number of listeners may be added, on any number of
        GuestPluginManagers sharing one ``_gpm.Manager``; each gets every
        event, in the order added.
        """
        return self.on_event(callback, types=types)

    def remove_event_listener(self, callback):
        """Stops calling ``callback``."""
        with self._lock:
            self._listeners = [(c, t) for c, t in self._listeners
                               if c is not callback]

    def _dispatch_event(self, ev):
        # End of file for buffered Channels: the guest stopped the channel,
        # or the plugin behind it is gone. START clears it.
        chan = None
        with self._lock:
            if ev.type == "CHANNEL_DRAINED":
                drained = self._channels.get(ev.channel)
                if drained is not None:
                    drained._drained.set()
            if ev.type in ("CHANNEL_STOP", "CHANNEL_START"):
                chan = self._channels.get(ev.channel)
            elif ev.type in ("PLUGIN_EXITED", "PLUGIN_FAILED") and ev.name:
                chan = next((c for c in self._channels.values()
                             if c.name == ev.name and c._owns), None)
        if chan is not None and chan._buf is not None:
            chan._buf.set_eof(ev.type != "CHANNEL_START")
        with self._lock:
            listeners = list(self._listeners)
        first = None
        for cb, types in listeners:
            if types is not None and ev.type not in types:
                continue
            try:
                cb(ev)
            except Exception as err:  # Every listener runs; report one.
                if first is None:
                    first = err
        if first is not None:
            raise first

    def dispatch(self, cpu, tgid=-1):
        """Feeds a stopped Python CPU's possible hypercall to the core,
        made by guest process ``tgid`` (-1: unknown; channel ownership is
        then not checked).

        ``cpu`` has ``read_reg(n) -> int``, ``write_reg(n, v)``,
        ``read_mem(addr, n) -> bytes`` and ``write_mem(addr, data)``; they
        report unmapped or read-only guest memory by raising
        GuestMemoryFault or GuestPageReadOnly. Returns True if it was a
        hypercall. Another exception from ``cpu`` is re-raised here.
        """
        with wrap():
            return self._mgr.dispatch(cpu, tgid=tgid)

    def stats(self):
        """The core's counters as a dict."""
        return self._mgr.stats()
