"""Host-side tools on top of guest plugins (one module per tool).

This branch's modules: :mod:`.procs` (``pandagpm ps``), :mod:`.ports`
(``pandagpm ports``) and :mod:`.forward` (``pandagpm forward``). Each
module that offers commands defines ``register_cli(subparsers)``.
"""

#: Modules of this package that define ``register_cli(subparsers)``.
TOOL_MODULES = ("procs", "ports", "forward")
