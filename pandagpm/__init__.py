"""pandagpm: a guest plugin manager for PANDA-style whole-system analysis.

Host code runs programs inside an emulated Linux guest and exchanges bytes
with them over channels. The public API is plain Python over the private C
extension ``pandagpm._gpm``::

    import pandagpm

    @pandagpm.channel_recv
    def on_line(channel_id: int, msg: str):
        print("guest said", msg)

    gpm = pandagpm.GuestPluginManager(host)
    chan = gpm.load_guest_plugin("hello", callback=on_line)
    chan.write(b"hi")

Importing pandagpm is cheap: the names below are loaded on first use, so
``import pandagpm`` neither loads the extension nor the image/QEMU tools.
"""

import importlib

__version__ = "0.1.0"

_ERRORS = (
    "GpmError", "NotFound", "ChannelNotFound", "PluginNotFound",
    "ChannelClosed", "QueueFull", "MessageTooLong", "NameInUse",
    "InvalidArgument", "NameTooLong", "WrongArchitecture", "BadDescriptor",
    "NotExecutable", "GuestMemoryFault", "GuestPageReadOnly",
    "EmulatorError", "EmulatorConnectionLost", "Timeout", "TryAgain",
    "Busy", "PeerClosed", "PermissionDenied", "OutOfMemory",
    "NotSupported", "ProtocolError", "Cancelled", "ChannelOverflow",
)

# Public name -> the submodule that defines it.
_LAZY = {
    **{name: "errors" for name in _ERRORS},
    "channel_recv": "channels",
    "Channel": "channels",
    "DEFAULT_BUFFER_LIMIT": "channels",
    "GuestPluginManager": "manager",
    "Event": "manager",
    "EVENT_TYPES": "manager",
    "PluginInfo": "manager",
    "inspect_plugin": "manager",
    "find_plugin": "manager",
    "list_plugins": "manager",
    "add_plugin_dir": "manager",
    "arch_info": "manager",
    "load_guest_plugin": "panda_host",
    "Panda": "host",
    "InjectionFailed": "host",
}

# Submodules reachable as attributes without an explicit import.
_SUBMODULES = ("errors", "channels", "manager", "testing", "image", "qemu",
               "btf", "host", "panda_host")

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module("." + _LAZY[name], __name__),
                        name)
    elif name in _SUBMODULES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module 'pandagpm' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
