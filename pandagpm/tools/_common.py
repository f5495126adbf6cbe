"""What the tools share: finding the guest plugin manager and loading a
tool's guest plugin once per guest state.

A *target* is any of: a CLI session (``.manager`` a GuestPluginManager,
``.panda`` the host), a host object with ``load_guest_plugin`` and
``gpm`` (``pandagpm.host.Panda``), or a bare GuestPluginManager.
"""

import threading
import time

from ..errors import GpmError, Timeout

#: How long a tool waits for one reply of its guest plugin.
DEFAULT_TIMEOUT = 60.0

_lock = threading.Lock()


def manager_of(target):
    """The GuestPluginManager of ``target`` (see the module comment)."""
    from ..manager import GuestPluginManager

    if isinstance(target, GuestPluginManager):
        return target
    mgr = getattr(target, "manager", None)
    if isinstance(mgr, GuestPluginManager):
        return mgr
    gpm = getattr(target, "gpm", None)
    if isinstance(gpm, GuestPluginManager):
        return gpm
    raise TypeError(f"{target!r} is not a pandagpm session, host or "
                    "GuestPluginManager")


def host_of(target):
    """The host object of ``target`` that can start plugins, or None."""
    for obj in (getattr(target, "panda", None), target):
        if obj is not None and hasattr(obj, "load_guest_plugin") and \
                hasattr(obj, "gpm"):
            return obj
    return None


def plugin_channel(target, name, callback=None, *, buffer_limit=None):
    """The Channel of guest plugin ``name``, loading it if need be.

    The plugin is loaded once per guest state and kept (cached on the
    GuestPluginManager); a plugin that exited or whose channel was closed
    is loaded again. With a host that waits for STARTED
    (``pandagpm.host.Panda``) this returns once the plugin runs.
    """
    mgr = manager_of(target)
    with _lock:
        cache = mgr.__dict__.setdefault("_tool_channels", {})
        chan = cache.get(name)
        if chan is not None and not chan.closed and not _at_eof(chan):
            return chan
        if chan is not None:
            try:
                mgr.close_channel(chan.id)
            except GpmError:
                pass
        host = host_of(target)
        kwargs = {}
        if buffer_limit is not None and callback is None:
            kwargs["buffer_limit"] = buffer_limit
        if host is not None and host.gpm is mgr:
            chan = host.load_guest_plugin(name, callback, **kwargs)
        else:
            chan = mgr.load_guest_plugin(name, callback, **kwargs)
        cache[name] = chan
        return chan


def forget_plugin(target, name):
    """Drops the cached channel of ``name`` (closing it)."""
    mgr = manager_of(target)
    with _lock:
        chan = mgr.__dict__.get("_tool_channels", {}).pop(name, None)
    if chan is not None:
        try:
            mgr.close_channel(chan.id)
        except GpmError:
            pass


def _at_eof(chan):
    buf = getattr(chan, "_buf", None)
    return buf is not None and (buf.eof or buf.closed)


def read_exact(chan, n, timeout):
    """Exactly ``n`` bytes from a buffered Channel, or Timeout/EOFError."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"no reply from guest plugin {chan.name!r} within "
                          f"{timeout:g} s")
        data = chan.read(n - len(out), timeout=left)
        if not data:
            raise EOFError(f"guest plugin {chan.name!r} went away")
        out += data
    return bytes(out)


def say(session, text):
    """One line of a command's output: to the caller's stdout in a kept
    session (``session.out``), else to this process's."""
    out = getattr(session, "out", None)
    if out is not None:
        out(text + "\n")
    else:
        print(text, flush=True)
