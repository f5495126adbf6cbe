"""Where the built guest binaries are, and registering them for lookup.

An in-place checkout keeps them in ``<repo>/guest/build`` (``make guest``);
an installed package may ship them in ``pandagpm/guest_bin``. The
inventory tries ``D/<arch>/<name>`` then ``D/<name>`` in each directory,
after the directories of ``EXTRA_GUEST_PLUGINS_PATH``.
"""

import os
import threading

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_PKG_DIR)
_lock = threading.Lock()
_registered = False


def guest_bin_dirs():
    """The package's guest binary directories, most specific first.

    ``<repo>/guest/build`` is listed for a checkout even before it is built,
    so binaries built later are still found.
    """
    dirs = []
    if os.path.isdir(os.path.join(_REPO_DIR, "guest")):
        dirs.append(os.path.join(_REPO_DIR, "guest", "build"))
    shipped = os.path.join(_PKG_DIR, "guest_bin")
    if os.path.isdir(shipped):
        dirs.append(shipped)
    return dirs


def register():
    """Adds :func:`guest_bin_dirs` to the C inventory, once per process."""
    global _registered
    with _lock:
        if _registered:
            return
        from . import _gpm

        for d in guest_bin_dirs():
            _gpm.add_plugin_dir(d)
        _registered = True
