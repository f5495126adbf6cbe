"""Host-side tools built on the public channel API, one module each.

Each module here that offers ``pandagpm`` subcommands defines
``register_cli(subparsers)`` (see :mod:`pandagpm.cli`); the command line
imports the modules named in :data:`TOOL_MODULES`, in that order.

- :mod:`pandagpm.tools.files`: copy, stat, list, remove guest files
  (``pandagpm cp``).
- :mod:`pandagpm.tools.shell`: ``exec`` with streamed output and an
  interactive PTY shell (``pandagpm exec``, ``pandagpm shell``).
- :mod:`pandagpm.tools.mount`: the guest's filesystem through FUSE
  (``pandagpm mount``).
- :mod:`pandagpm.tools.session`: a kept session other commands attach to
  (``pandagpm session``), and ``plugins`` / ``image``.
- :mod:`pandagpm.tools.procs`: the guest's processes and memory maps
  (``pandagpm ps``).
- :mod:`pandagpm.tools.ports`: its TCP and UDP sockets (``pandagpm ports``).
- :mod:`pandagpm.tools.forward`: TCP forwarding host <-> guest
  (``pandagpm forward``).
"""

#: Modules (under pandagpm.tools) whose register_cli() adds subcommands.
TOOL_MODULES = ("session", "files", "shell", "mount", "procs", "ports",
                "forward")
