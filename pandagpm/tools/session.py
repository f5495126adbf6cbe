"""``pandagpm session``, ``pandagpm plugins`` and ``pandagpm image``.

A kept session holds one running guest that several commands attach to::

    $ export PANDAGPM_SESSION=$(pandagpm session start)
    $ pandagpm exec -- uname -a        # no boot: runs in the kept guest
    $ pandagpm cp ./tool guest:/tmp/tool
    $ pandagpm session stop

``plugins`` prints the guest plugin inventory (the search path, first
match per name); ``image build|info|kernelinfo`` is
``python -m pandagpm.image`` with the global ``--arch``.
"""

import argparse
import sys

__all__ = ["register_cli"]


def _session_start(args, _session):
    from ..cli import start_session

    path = start_session(args.arch, args.socket, verbose=args.verbose)
    print(path)
    return 0


def _session_serve(args, _session):
    from ..cli import SessionServer

    server = SessionServer(args.socket, args.arch, verbose=args.verbose)
    server.serve()
    return 0


def _session_stop(args, _session):
    # Only reached without --session: inside a session the server stops.
    sys.stderr.write("pandagpm: session stop needs --session ADDR "
                     "(or $PANDAGPM_SESSION)\n")
    return 1


def _plugins(args, _session):
    from ..manager import list_plugins

    rows = [p for p in list_plugins(args.dir) if args.all or
            p.arch == args.arch]
    if args.json:
        import json
        print(json.dumps([p._asdict() for p in rows], indent=2))
        return 0
    width = max([len(p.name) for p in rows] + [4])
    for p in rows:
        print(f"{p.name:<{width}}  {p.version:<8} {p.arch:<8} "
              f"{p.description}")
    if not args.quiet:
        for p in rows:
            print(f"  {p.name}: {p.path}", file=sys.stderr)
    return 0


def _image(args, _session):
    from .. import image

    rest = list(args.image_args)
    if rest and rest[0] in ("build", "info") and "--arch" not in rest:
        rest[1:1] = ["--arch", args.arch]
    return image.main(rest)


def register_cli(sub):
    """Adds ``session``, ``plugins`` and ``image`` (see pandagpm.cli)."""
    s = sub.add_parser("session", help="keep one guest for many commands",
                       description="Keep one running guest that other "
                       "commands attach to with --session ADDR (or "
                       "$PANDAGPM_SESSION).")
    ssub = s.add_subparsers(dest="session_command", metavar="ACTION")
    ssub.required = True
    st = ssub.add_parser("start", help="boot a guest in the background; "
                         "prints the session's address")
    st.add_argument("--socket", help="unix socket path (default "
                    "$XDG_RUNTIME_DIR or /tmp/pandagpm-session-PID.sock)")
    st.set_defaults(handler=_session_start, needs_guest=False)
    sv = ssub.add_parser("serve", help="run a session in the foreground "
                         "(what start runs)")
    sv.add_argument("--socket", required=True)
    sv.set_defaults(handler=_session_serve, needs_guest=False)
    sp = ssub.add_parser("stop", help="stop the session given by --session")
    sp.set_defaults(handler=_session_stop, session_stop=True,
                    needs_guest=False)

    p = sub.add_parser("plugins", help="list the guest plugins found",
                       description="The guest plugin inventory: every "
                       "valid plugin on the search path (first match per "
                       "name), for --arch.")
    p.add_argument("--dir", help="search this directory first")
    p.add_argument("--all", action="store_true",
                   help="every architecture, not only --arch")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no paths on stderr")
    p.set_defaults(handler=_plugins, needs_guest=False)

    im = sub.add_parser("image", help="build or inspect the generic image",
                        description="python -m pandagpm.image: build, "
                        "info, kernelinfo (see 'pandagpm image -- --help').",
                        add_help=True)
    im.add_argument("image_args", nargs=argparse.REMAINDER,
                    metavar="build|info|kernelinfo ...")
    im.set_defaults(handler=_image, needs_guest=False)
