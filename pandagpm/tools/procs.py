"""Processes and memory maps of the guest, from the ``procs`` guest plugin.

No kernel profile is needed: the plugin reads ``/proc`` in the guest.
The wire format is ``csrc/include/gpm/tools_proto.h``::

    from pandagpm.tools import procs
    for p in procs.list_processes(panda):
        print(p.pid, p.ppid, p.name)
    for m in procs.memory_maps(panda, 1):
        print(hex(m.start), hex(m.end), m.perms, m.path)

``pandagpm ps`` prints the process list as a table (PID, PPID, USER,
STAT, NAME, CMD).
"""

import itertools
import struct
import threading
import typing

from ..errors import GpmError, ProtocolError, from_code
from . import _common

__all__ = ["Process", "MemoryMap", "list_processes", "memory_maps",
           "format_processes", "register_cli"]

PLUGIN = "procs"
# gpm/tools_proto.h
MAGIC = 0x43525047
OP_PS, OP_MAPS, OP_SOCKETS, OP_EXIT = 1, 2, 3, 4
TRUNCATED = 0x80000000
HDR = struct.Struct("<IIIiII")
PROC_FIXED = struct.Struct("<IiiIIQIII")
MAP_FIXED = struct.Struct("<IQQQ4sQI")
# Replies are at most GPM_PROCS_MAX_REPLY (8 MiB) plus the header.
MAX_REPLY = (8 << 20) + HDR.size

_seq = itertools.count(1)
_req_lock = threading.Lock()


class Process(typing.NamedTuple):
    """One guest process, as /proc showed it."""

    pid: int
    ppid: int
    uid: int
    state: str
    name: str
    cmdline: typing.Tuple[str, ...]
    exe: str
    start_time: int  # clock ticks after boot

    @property
    def user(self):
        """The user name (``/etc/passwd`` is not read: root or the uid)."""
        return "root" if self.uid == 0 else str(self.uid)


class MemoryMap(typing.NamedTuple):
    """One mapping of a process, as in ``/proc/PID/maps``."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str


class Reply(typing.NamedTuple):
    """A decoded reply: its records' bytes and whether it was cut short."""

    count: int
    records: bytes
    truncated: bool


def request(target, op, arg=0, timeout=_common.DEFAULT_TIMEOUT):
    """Sends one request to the procs plugin; returns its Reply.

    Raises the GpmError of a negative status (e.g. NotFound for a pid that
    does not exist), ProtocolError for a malformed reply, Timeout.
    """
    with _req_lock:
        chan = _common.plugin_channel(target, PLUGIN,
                                      buffer_limit=2 * MAX_REPLY)
        seq = next(_seq) & 0xFFFFFFFF
        try:
            chan.write(struct.pack("<III", op, seq, arg))
            hdr = _common.read_exact(chan, HDR.size, timeout)
            magic, rop, rseq, status, count, length = HDR.unpack(hdr)
            if magic != MAGIC or rop & ~TRUNCATED != op or rseq != seq or \
                    length > MAX_REPLY:
                raise ProtocolError(
                    f"procs: bad reply header {hdr.hex()} for op {op}")
            body = _common.read_exact(chan, length, timeout) if length else b""
        except (GpmError, EOFError):
            # A reply half read leaves the stream out of step: start over.
            _common.forget_plugin(target, PLUGIN)
            raise
    if status < 0:
        raise from_code(status, f"procs: request {op} (arg {arg}) failed")
    return Reply(count, body, bool(rop & TRUNCATED))


def _records(body, fixed):
    """Yields each record of ``body`` as a memoryview."""
    view = memoryview(body)
    off = 0
    while off < len(view):
        if off + 4 > len(view):
            raise ProtocolError("procs: record header cut short")
        (rec_len,) = struct.unpack_from("<I", view, off)
        if rec_len < fixed or off + rec_len > len(view):
            raise ProtocolError(f"procs: bad record length {rec_len}")
        yield view[off:off + rec_len]
        off += rec_len


def _text(b):
    return bytes(b).decode("utf-8", errors="replace")


def decode_processes(body):
    """Process objects from the records of a PS reply."""
    out = []
    for rec in _records(body, PROC_FIXED.size):
        (_, pid, ppid, uid, state, start, nlen, clen,
         elen) = PROC_FIXED.unpack_from(rec)
        if PROC_FIXED.size + nlen + clen + elen > len(rec):
            raise ProtocolError("procs: PROC strings past the record")
        p = PROC_FIXED.size
        name = _text(rec[p:p + nlen])
        cmd = bytes(rec[p + nlen:p + nlen + clen])
        exe = _text(rec[p + nlen + clen:p + nlen + clen + elen])
        args = tuple(_text(a) for a in cmd.split(b"\0")) if cmd else ()
        out.append(Process(pid, ppid, uid, chr(state & 0x7F) if state else
                           "?", name, args, exe, start))
    return out


def decode_maps(body):
    """MemoryMap objects from the records of a MAPS reply."""
    out = []
    for rec in _records(body, MAP_FIXED.size):
        _, start, end, offset, perms, inode, plen = MAP_FIXED.unpack_from(rec)
        if MAP_FIXED.size + plen > len(rec):
            raise ProtocolError("procs: MAP path past the record")
        out.append(MemoryMap(start, end, perms.decode("ascii", "replace"),
                             offset, inode,
                             _text(rec[MAP_FIXED.size:MAP_FIXED.size + plen])))
    return out


def list_processes(target, timeout=_common.DEFAULT_TIMEOUT):
    """Every guest process, sorted by pid (list of :class:`Process`).

    ``target``: a host (``pandagpm.host.Panda``), a GuestPluginManager or
    a CLI session. Loads the ``procs`` guest plugin on first use.
    """
    return sorted(decode_processes(request(target, OP_PS,
                                           timeout=timeout).records))


def memory_maps(target, pid, timeout=_common.DEFAULT_TIMEOUT):
    """The memory maps of guest process ``pid`` (list of MemoryMap).

    Raises NotFound (ENOENT) if there is no such process.
    """
    if not 0 < pid < 1 << 31:
        raise ValueError(f"bad pid {pid}")
    return decode_maps(request(target, OP_MAPS, pid, timeout).records)


def format_processes(procs):
    """A table with PID, PPID, USER, STAT, NAME and CMD columns."""
    rows = [("PID", "PPID", "USER", "STAT", "NAME", "CMD")]
    for p in procs:
        rows.append((str(p.pid), str(p.ppid), p.user, p.state, p.name,
                     " ".join(p.cmdline) or f"[{p.name}]"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join([r[0].rjust(widths[0]), r[1].rjust(widths[1]),
                   r[2].ljust(widths[2]), r[3].ljust(widths[3]),
                   r[4].ljust(widths[4]), r[5]]).rstrip()
        for r in rows)


def format_maps(maps):
    """Lines shaped like ``/proc/PID/maps`` (without dev)."""
    return "\n".join(f"{m.start:08x}-{m.end:08x} {m.perms} {m.offset:08x} "
                     f"{m.inode:<10d} {m.path}".rstrip() for m in maps)


def _cmd_ps(args, session):
    if args.maps is not None:
        _common.say(session, format_maps(memory_maps(session, args.maps)))
    else:
        _common.say(session, format_processes(list_processes(session)))
    return 0


def register_cli(subparsers):
    """Adds ``ps`` to the ``pandagpm`` command line."""
    p = subparsers.add_parser(
        "ps", help="list the guest's processes (from its /proc)",
        description="Lists the guest's processes with PID, PPID, USER, "
        "STAT, NAME and CMD columns, read from /proc by the procs guest "
        "plugin (no kernel profile needed).")
    p.add_argument("--maps", type=int, metavar="PID",
                   help="print the memory maps of PID instead")
    p.set_defaults(handler=_cmd_ps)
    return p
