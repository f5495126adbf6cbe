"""Test-only: a CLI-style session on the e2e fixtures' guest.

The ``pandagpm`` CLI hands each command handler ``(args, session)`` where
``session.manager`` is the GuestPluginManager of a running guest with the
daemon injected and ``session.panda`` the host. Until the CLI lands this
builds the same shape from a ``pandagpm.host.Panda`` the tests booted.
"""

import argparse
import contextlib
import io


class ToolSession:
    """``.panda`` and ``.manager`` of a booted guest, daemon injected."""

    def __init__(self, panda):
        self.panda = panda
        panda.ensure_daemon()
        self.manager = panda.gpm


def run_command(module, session, argv):
    """Runs ``module``'s CLI command ``argv``; returns (status, stdout)."""
    parser = argparse.ArgumentParser(prog="pandagpm")
    sub = parser.add_subparsers(dest="command", required=True)
    module.register_cli(sub)
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = args.handler(args, session)
    return status, out.getvalue()
