"""TCP and UDP sockets of the guest with their process, like ``netstat -tunap``.

From the ``procs`` guest plugin, which reads ``/proc/net/{tcp,udp}{,6}``
and matches socket inodes to processes through ``/proc/PID/fd``::

    from pandagpm.tools import ports
    for s in ports.list_sockets(panda):
        if s.listening:
            print(s.proto, s.local, s.pid, s.program)

``pandagpm ports`` prints the same as a table.
"""

import ipaddress
import struct
import typing

from ..errors import ProtocolError
from . import _common, procs

__all__ = ["Socket", "list_sockets", "format_sockets", "register_cli",
           "TCP_STATES"]

SOCK_FIXED = struct.Struct("<IBBBxHH16s16sIiQI")

#: The kernel's TCP state numbers (include/net/tcp_states.h).
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
    5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
    9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}
_TCP_LISTEN = 10
_UDP_UNCONNECTED = 7


class Socket(typing.NamedTuple):
    """One guest socket."""

    proto: str             # "tcp" or "udp" (IPv6 ones say "tcp6"/"udp6")
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    state: str             # a TCP_STATES name; UDP: "UNCONN" or "ESTABLISHED"
    uid: int
    inode: int
    pid: typing.Optional[int]  # None when no process holds it
    program: str

    @property
    def listening(self):
        """A TCP listener or an unconnected UDP socket."""
        return self.state in ("LISTEN", "UNCONN")

    @property
    def local(self):
        """``addr:port`` (IPv6 addresses in brackets)."""
        return _hostport(self.local_addr, self.local_port)

    @property
    def remote(self):
        return _hostport(self.remote_addr, self.remote_port)


def _hostport(addr, port):
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def decode_sockets(body):
    """Socket objects from the records of a SOCKETS reply."""
    out = []
    for rec in procs._records(body, SOCK_FIXED.size):
        (_, proto, family, state, lport, rport, laddr, raddr, uid, pid,
         inode, plen) = SOCK_FIXED.unpack_from(rec)
        if SOCK_FIXED.size + plen > len(rec) or family not in (4, 6) or \
                proto not in (6, 17):
            raise ProtocolError("procs: malformed SOCK record")
        if family == 4:
            la, ra = ipaddress.IPv4Address(laddr[:4]), \
                ipaddress.IPv4Address(raddr[:4])
        else:
            la, ra = ipaddress.IPv6Address(laddr), ipaddress.IPv6Address(raddr)
        name = "tcp" if proto == 6 else "udp"
        if proto == 6:
            st = TCP_STATES.get(state, str(state))
        else:
            st = "UNCONN" if state == _UDP_UNCONNECTED else "ESTABLISHED"
        out.append(Socket(name + ("6" if family == 6 else ""), str(la), lport,
                          str(ra), rport, st, uid, inode,
                          pid if pid > 0 else None,
                          procs._text(rec[SOCK_FIXED.size:
                                          SOCK_FIXED.size + plen])))
    return out


def list_sockets(target, timeout=_common.DEFAULT_TIMEOUT):
    """Every TCP and UDP socket of the guest (list of :class:`Socket`).

    Listeners first, then by protocol and local port.
    """
    socks = decode_sockets(procs.request(target, procs.OP_SOCKETS,
                                         timeout=timeout).records)
    return sorted(socks, key=lambda s: (not s.listening, s.proto,
                                        s.local_port, s.remote_port))


def format_sockets(socks):
    """A table: PROTO, LOCAL, REMOTE, STATE, PID/PROGRAM."""
    rows = [("PROTO", "LOCAL", "REMOTE", "STATE", "PID/PROGRAM")]
    for s in socks:
        who = f"{s.pid}/{s.program}" if s.pid is not None else "-"
        rows.append((s.proto, s.local, s.remote, s.state, who))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join([r[i].ljust(widths[i]) for i in range(4)] +
                               [r[4]]).rstrip() for r in rows)


def _cmd_ports(args, session):
    socks = list_sockets(session)
    if args.listening:
        socks = [s for s in socks if s.listening]
    _common.say(session, format_sockets(socks))
    return 0


def register_cli(subparsers):
    """Adds ``ports`` to the ``pandagpm`` command line."""
    p = subparsers.add_parser(
        "ports", help="list the guest's TCP and UDP sockets",
        description="Lists the guest's TCP and UDP sockets (listening and "
        "connected) with the pid and program holding each, read from "
        "/proc by the procs guest plugin.")
    p.add_argument("-l", "--listening", action="store_true",
                   help="only listening TCP and unconnected UDP sockets")
    p.set_defaults(handler=_cmd_ports)
    return p
