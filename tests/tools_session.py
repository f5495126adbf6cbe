"""Test-only: a CLI-style session on the e2e fixtures' guest.

The ``pandagpm`` CLI hands each command handler ``(args, session)`` where
``session.manager`` is the GuestPluginManager of a running guest with the
daemon injected and ``session.panda`` the host. Until the CLI lands this
builds the same shape from a ``pandagpm.host.Panda`` the tests booted.
"""

import argparse
import contextlib
import io
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


def wait_for(pred, timeout, what, period=0.1):
    """test_e2e_guest.wait_for, polling every ``period`` seconds."""
    from test_e2e_guest import wait_for as _wait_for

    return _wait_for(pred, timeout, what, period)


# Fixtures shared by the tool tests (import them into a test module).

@pytest.fixture(scope="module")
def built():
    """The guest plugins, built by make -C guest."""
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "guest")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def panda(built):
    """One stock-QEMU Panda for the module."""
    from pandagpm.host import Panda

    p = Panda(generic="x86_64", verbose=False)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def session(panda):
    """A fresh root guest with the daemon injected, as a CLI session."""
    panda.revert_sync("root")
    return ToolSession(panda)
