"""The pandagpm exception hierarchy, mapped from the C codes in one place.

Every C call fails with ``_gpm.Error(code, name, message)``, where ``code``
is a negative ``GPM_E*`` value. :func:`wrap` (a context manager and
decorator) turns that into the matching subclass of :class:`GpmError` here,
with ``raise ... from err``. Code written against pandagpm catches these
classes; nothing outside this module looks at numeric codes.

:class:`GpmError` itself derives from ``_gpm.Error``, so an exception from
this module raised by a Python host (a fake CPU raising
:class:`GuestMemoryFault` from ``read_mem``) is understood by the C
dispatcher, which passes its code to the core.

The OSError family is deliberately not mixed in: OSError reinterprets the
constructor arguments. ``LookupError``, ``ValueError`` and ``MemoryError``
are, where they fit.

    GpmError
     +-- NotFound (ENOENT)
     |    +-- ChannelNotFound
     |    +-- PluginNotFound
     +-- ChannelClosed (EBADF)
     +-- QueueFull (ENOSPC)
     +-- MessageTooLong (EMSGSIZE)
     +-- NameInUse (EEXIST)
     +-- InvalidArgument (EINVAL)        also a ValueError
     |    +-- NameTooLong (ENAMETOOLONG)
     +-- WrongArchitecture (EARCH)
     +-- BadDescriptor (EDESC)
     +-- NotExecutable (ENOEXEC)
     +-- GuestMemoryFault (EFAULT)
     +-- GuestPageReadOnly (EROFS)
     +-- EmulatorError (EIO)
     |    +-- EmulatorConnectionLost (ECONNRESET)
     +-- Timeout (ETIMEDOUT)
     +-- TryAgain (EAGAIN), Busy (EBUSY), PeerClosed (EPIPE)
     +-- PermissionDenied (EPERM, EACCES)
     +-- OutOfMemory (ENOMEM)             also a MemoryError
     +-- NotSupported (ENOSYS), ProtocolError (EPROTO), Cancelled (ECANCELED)
     +-- ChannelOverflow (ENOSPC)         a Channel's receive buffer overflowed
     +-- DaemonLost (EPIPE)               the guest daemon stopped answering
     +-- CalledFromCallback (EBUSY)       a blocking call on the emulator
                                          thread; also a RuntimeError
"""

import contextlib
import functools

from . import _gpm

__all__ = [
    "GpmError", "NotFound", "ChannelNotFound", "PluginNotFound",
    "ChannelClosed", "QueueFull", "MessageTooLong", "NameInUse",
    "InvalidArgument", "NameTooLong", "WrongArchitecture", "BadDescriptor",
    "NotExecutable", "GuestMemoryFault", "GuestPageReadOnly",
    "EmulatorError", "EmulatorConnectionLost", "Timeout", "TryAgain",
    "Busy", "PeerClosed", "PermissionDenied", "OutOfMemory",
    "NotSupported", "ProtocolError", "Cancelled", "ChannelOverflow",
    "DaemonLost", "CalledFromCallback",
    "error_class", "from_code", "wrap",
]


class GpmError(_gpm.Error):
    """Base class of every pandagpm error.

    ``code`` is the negative ``GPM_E*`` value, ``name`` its symbolic name
    (``"GPM_ENOENT"``), ``message`` the text. Subclasses carry a default
    code, so ``GuestMemoryFault("page 0x1000 unmapped")`` is complete.
    """

    default_code = _gpm.EIO

    def __init__(self, message=None, code=None):
        if code is None:
            code = self.default_code
        if message is None:
            message = _gpm.strerror(code)
        super().__init__(code, _gpm.err_name(code), message)

    def __reduce__(self):
        return (type(self), (self.message, self.code))


class NotFound(GpmError, LookupError):
    """No such channel, plugin or file (ENOENT)."""

    default_code = _gpm.ENOENT


class ChannelNotFound(NotFound):
    """No channel has that name."""


class PluginNotFound(NotFound):
    """No guest plugin binary of that name was found on the search path."""


class ChannelClosed(GpmError):
    """The channel id is unknown or the channel was closed (EBADF)."""

    default_code = _gpm.EBADF


class QueueFull(GpmError):
    """A queue or table limit would be passed; nothing was queued (ENOSPC)."""

    default_code = _gpm.ENOSPC


class ChannelOverflow(QueueFull):
    """A Channel's receive buffer was full and guest bytes were dropped.

    ``lost`` is how many bytes were dropped. Raised once by the next read;
    the bytes buffered before the overflow stay readable.
    """

    def __init__(self, message=None, code=None, lost=0):
        super().__init__(message, code)
        self.lost = lost


class MessageTooLong(GpmError):
    """One message is larger than a channel's whole queue (EMSGSIZE)."""

    default_code = _gpm.EMSGSIZE


class NameInUse(GpmError):
    """A channel or plugin of that name exists already (EEXIST)."""

    default_code = _gpm.EEXIST


class InvalidArgument(GpmError, ValueError):
    """An argument was refused (EINVAL)."""

    default_code = _gpm.EINVAL


class NameTooLong(InvalidArgument):
    """A channel or plugin name is longer than the limit (ENAMETOOLONG)."""

    default_code = _gpm.ENAMETOOLONG


class WrongArchitecture(GpmError):
    """The binary is for another architecture or word size (EARCH)."""

    default_code = _gpm.EARCH


class BadDescriptor(GpmError):
    """The binary has no pandagpm descriptor, or an unknown one (EDESC)."""

    default_code = _gpm.EDESC


class NotExecutable(GpmError):
    """The file is not an ELF executable for a guest (ENOEXEC)."""

    default_code = _gpm.ENOEXEC


class GuestMemoryFault(GpmError):
    """A guest virtual address is not mapped or not resident (EFAULT)."""

    default_code = _gpm.EFAULT


class GuestPageReadOnly(GpmError):
    """A guest page is present but must not be written (EROFS)."""

    default_code = _gpm.EROFS


class EmulatorError(GpmError):
    """Talking to the emulator failed (EIO)."""

    default_code = _gpm.EIO


class EmulatorConnectionLost(EmulatorError):
    """The connection to the emulator was lost (ECONNRESET)."""

    default_code = _gpm.ECONNRESET


class Timeout(GpmError):
    """Waiting timed out (ETIMEDOUT)."""

    default_code = _gpm.ETIMEDOUT


class TryAgain(GpmError):
    """Temporarily unavailable; retry (EAGAIN)."""

    default_code = _gpm.EAGAIN


class Busy(GpmError):
    """Busy (EBUSY)."""

    default_code = _gpm.EBUSY


class PeerClosed(GpmError):
    """The other side is gone (EPIPE)."""

    default_code = _gpm.EPIPE


class PermissionDenied(GpmError):
    """Not permitted (EPERM, EACCES)."""

    default_code = _gpm.EPERM


class OutOfMemory(GpmError, MemoryError):
    """Out of memory (ENOMEM)."""

    default_code = _gpm.ENOMEM


class NotSupported(GpmError):
    """Not supported (ENOSYS)."""

    default_code = _gpm.ENOSYS


class ProtocolError(GpmError):
    """A malformed frame or reply (EPROTO)."""

    default_code = _gpm.EPROTO


class Cancelled(GpmError):
    """The operation was cancelled (ECANCELED)."""

    default_code = _gpm.ECANCELED


class DaemonLost(GpmError):
    """The guest daemon stopped answering, or was replaced, while a load
    waited on it (EPIPE). The load's request was dropped, never to be
    replayed to another daemon; loading again injects a new daemon.
    """

    default_code = _gpm.EPIPE


class CalledFromCallback(GpmError, RuntimeError):
    """A call that waits for the guest was made from a channel or event
    callback (EBUSY). Callbacks run on the emulator's thread while the
    guest is stopped, so the wait could never end; use the non-blocking
    form (e.g. ``Panda.load_guest_plugin_async``) instead.
    """

    default_code = _gpm.EBUSY


# The one table from C code to class. ENOENT depends on what was looked
# up, so callers may pass a narrower class for it to wrap().
_BY_CODE = {
    _gpm.ENOENT: NotFound,
    _gpm.EBADF: ChannelClosed,
    _gpm.ENOSPC: QueueFull,
    _gpm.EMSGSIZE: MessageTooLong,
    _gpm.EEXIST: NameInUse,
    _gpm.EINVAL: InvalidArgument,
    _gpm.ENAMETOOLONG: NameTooLong,
    _gpm.EARCH: WrongArchitecture,
    _gpm.EDESC: BadDescriptor,
    _gpm.ENOEXEC: NotExecutable,
    _gpm.EFAULT: GuestMemoryFault,
    _gpm.EROFS: GuestPageReadOnly,
    _gpm.EIO: EmulatorError,
    _gpm.ECONNRESET: EmulatorConnectionLost,
    _gpm.ETIMEDOUT: Timeout,
    _gpm.EAGAIN: TryAgain,
    _gpm.EBUSY: Busy,
    _gpm.EPIPE: PeerClosed,
    _gpm.EPERM: PermissionDenied,
    _gpm.EACCES: PermissionDenied,
    _gpm.ENOMEM: OutOfMemory,
    _gpm.ENOSYS: NotSupported,
    _gpm.EPROTO: ProtocolError,
    _gpm.ECANCELED: Cancelled,
}


def error_class(code, not_found=NotFound):
    """The class for a C code; ``not_found`` narrows ENOENT."""
    if code == _gpm.ENOENT:
        return not_found
    return _BY_CODE.get(code, GpmError)


def from_code(code, message=None, not_found=NotFound):
    """A new exception instance for a C code."""
    return error_class(code, not_found)(message, code)


def _narrow(err, not_found):
    """The GpmError for a raw ``_gpm.Error``."""
    return from_code(err.code, err.message, not_found)


class wrap(contextlib.ContextDecorator):
    """Turns ``_gpm.Error`` into the matching :class:`GpmError` subclass.

    Use as ``with wrap():`` or as ``@wrap()``; ``wrap(ChannelNotFound)``
    makes ENOENT a :class:`ChannelNotFound`. Exceptions that are already
    GpmError pass unchanged.
    """

    def __init__(self, not_found=NotFound):
        self.not_found = not_found

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, _gpm.Error):
            return False
        if isinstance(exc, GpmError):
            return False
        raise _narrow(exc, self.not_found) from exc


def wrapped(not_found=NotFound):
    """Decorator form of :class:`wrap` that keeps the function's metadata."""

    def decorate(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            with wrap(not_found):
                return func(*args, **kwargs)

        return inner

    return decorate
