"""TCP forwarding between host and guest over one channel (no emulated
networking needed), through the ``tcp_fwd`` guest plugin.

Host port -> guest service, in the spirit of the original
``panda.tcp.forward_socket(guest_port, host_port)``::

    from pandagpm.tools import forward
    fwd = forward.forward(panda, guest_port=80, host_port=8080)
    # http://127.0.0.1:8080/ now reaches the guest's port 80
    fwd.close()

and guest port -> host service (``reverse_forward``). Any number of
connections run at once, multiplexed on the channel with a window of
``GPM_FWD_WINDOW`` bytes per connection and direction
(``csrc/include/gpm/tools_proto.h``), so a slow reader slows only its own
connection; half-closes pass through (a client's ``shutdown(SHUT_WR)``
becomes the guest socket's); a reset on either side resets the other and
is counted on the Forward. A Forward ends (``closed`` set, ``reason``
says why) when it is closed, when the guest service it watches stops
listening, or when the plugin, its daemon or the emulator goes away.

Threads: one pump thread per guest state owns every socket; the channel
callback only queues bytes for it. Every method may be called from any
thread except the channel and event callbacks.
"""

import collections
import errno
import ipaddress
import itertools
import select
import socket
import struct
import sys
import threading
import time

from ..errors import GpmError, ProtocolError, QueueFull, Timeout
from . import _common

__all__ = ["Forward", "ReverseForward", "Forwarder", "forward",
           "reverse_forward", "forwarder", "register_cli"]

PLUGIN = "tcp_fwd"
# gpm/tools_proto.h
HDR = struct.Struct("<BBHII")
MAX_PAYLOAD = 256 << 10
WINDOW = 4 << 20
GUEST_BIT = 0x80000000
MAX_CONNS = 256
(CONNECT, CONNECTED, DATA, ACK, SHUT, RESET, LISTEN, LISTENING, UNLISTEN,
 ACCEPTED, WATCH, GONE, QUIT) = range(1, 14)

# Host -> guest bytes allowed to wait in the core's queue before host
# sockets stop being read (the core refuses past 64 MiB per channel).
QUEUED_HIGH = 16 << 20
# Guest -> host bytes the callback queues before the channel is paused.
INBOUND_HIGH = 64 << 20
# How long close() waits for the plugin to exit after QUIT.
QUIT_WAIT = 5.0
# How often the pump looks for a lost emulator or a closed Forward.
PUMP_TICK = 0.2


def _addr_payload(port, addr):
    ip = ipaddress.ip_address(addr)
    fam = 4 if ip.version == 4 else 6
    return struct.pack("<HH", port, fam) + ip.packed.ljust(16, b"\0")


class _Conn:
    """One forwarded connection on the host side (pump thread only)."""

    __slots__ = ("id", "sock", "owner", "out", "credit", "unacked", "open",
                 "connecting", "sent_shut", "got_shut", "wr_shut")

    def __init__(self, cid, sock, owner):
        self.id = cid
        self.sock = sock
        self.owner = owner
        self.out = bytearray()   # guest bytes not yet written to sock
        self.credit = WINDOW     # bytes we may still send the guest
        self.unacked = 0         # written to sock, not ACKed to the guest
        self.open = False        # data may flow
        self.connecting = False  # our connect() to a host service
        self.sent_shut = self.got_shut = self.wr_shut = False


class _Base:
    """What Forward and ReverseForward share."""

    def __init__(self, fwd):
        self._fwd = fwd
        self.closed = threading.Event()
        self.reason = None
        #: Connections opened, and resets seen: [(conn id, errno)].
        self.connections = 0
        self.resets = []

    def close(self):
        """Stops forwarding; open connections are reset. Idempotent."""
        self._fwd._call(self._close_locked, "closed by the host")
        self.closed.wait(5)

    def wait_closed(self, timeout=None):
        """True once the forward has ended (see ``reason``)."""
        return self.closed.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Forward(_Base):
    """A host port forwarded to a guest address and port.

    ``host_port`` is the port actually bound (useful with 0). ``watch``:
    end the forward once the guest service stopped listening.
    """

    def __init__(self, fwd, fid, lsock, guest_addr, guest_port):
        super().__init__(fwd)
        self.id = fid
        self.sock = lsock
        self.host_addr, self.host_port = lsock.getsockname()[:2]
        self.guest_addr = guest_addr
        self.guest_port = guest_port

    def __repr__(self):
        return (f"<Forward {self.host_addr}:{self.host_port} -> guest "
                f"{self.guest_addr}:{self.guest_port}"
                f"{' closed' if self.closed.is_set() else ''}>")

    def _close_locked(self, reason):
        self._fwd._end_forward(self, reason)


class ReverseForward(_Base):
    """A guest port whose connections reach a host address and port."""

    def __init__(self, fwd, lid, guest_addr, guest_port, host_addr,
                 host_port):
        super().__init__(fwd)
        self.id = lid
        self.guest_addr = guest_addr
        self.guest_port = guest_port
        self.host_addr = host_addr
        self.host_port = host_port
        self.listening = threading.Event()
        self.status = None

    def __repr__(self):
        return (f"<ReverseForward guest {self.guest_addr}:{self.guest_port}"
                f" -> {self.host_addr}:{self.host_port}>")

    def _close_locked(self, reason):
        self._fwd._end_reverse(self, reason)


class Forwarder:
    """The tcp_fwd plugin of one guest state and the pump thread.

    Use :func:`forwarder` (one per GuestPluginManager) rather than making
    one. ``closed`` is set once it has stopped; ``reason`` says why.
    """

    def __init__(self, target):
        self.mgr = _common.manager_of(target)
        self._raw = self.mgr.manager
        self.closed = threading.Event()
        self.reason = None
        self._inq = collections.deque()
        self._inq_len = 0
        self._inq_lock = threading.Lock()
        self._paused = False
        self._calls = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._inbuf = bytearray()
        self._out = []          # frames for the guest, sent once a round
        self._conns = {}
        self._forwards = {}     # listening socket fd -> Forward
        self._watches = {}      # watch id -> Forward
        self._reverses = {}     # listener id -> ReverseForward
        self._ids = itertools.count(1)
        self._quit_by = None
        self._listen_ids = itertools.count(1)
        self.chan = _common.plugin_channel(target, PLUGIN, self._on_bytes)
        self.mgr.on_event(self._on_event, types=(
            "PLUGIN_EXITED", "PLUGIN_FAILED", "CHANNEL_STOP"))
        self._thread = threading.Thread(target=self._pump, daemon=True,
                                        name="pandagpm-tcp-fwd")
        self._thread.start()

    # --- called on the emulator thread --------------------------------

    def _on_bytes(self, channel_id, data):
        with self._inq_lock:
            self._inq.append(bytes(data))
            self._inq_len += len(data)
            if self._inq_len > INBOUND_HIGH and not self._paused:
                # A guest that ignores its windows must not grow us.
                self._raw.set_paused(self.chan.id, True)
                self._paused = True
        self._wake()

    def _on_event(self, ev):
        if ev.type == "CHANNEL_STOP" and ev.channel == self.chan.id or \
                ev.type != "CHANNEL_STOP" and ev.name == PLUGIN:
            self._calls.append((self._stop, (f"the guest plugin ended "
                                              f"({ev.type})",)))
            self._wake()

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or stopped

    # --- public -------------------------------------------------------

    def _call(self, func, *args):
        """Runs ``func(*args)`` on the pump thread; returns at once."""
        if self.closed.is_set():
            func(*args)  # the pump is gone: just mark things closed
            return
        self._calls.append((func, args))
        self._wake()

    def forward(self, guest_port, host_port=0, *, guest_addr="127.0.0.1",
                host_addr="127.0.0.1", watch=True):
        """Listens on ``host_addr:host_port``; returns a :class:`Forward`.

        Each connection accepted there is connected to
        ``guest_addr:guest_port`` in the guest; one the guest refuses is
        reset. Raises OSError if the host port cannot be bound.
        """
        self._check()
        payload = _addr_payload(guest_port, guest_addr)
        fam = socket.AF_INET6 if ":" in host_addr else socket.AF_INET
        lsock = socket.socket(fam, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lsock.bind((host_addr, host_port))
            lsock.listen(128)
        except OSError:
            lsock.close()
            raise
        lsock.setblocking(False)
        f = Forward(self, next(self._listen_ids), lsock, guest_addr,
                    guest_port)
        f._payload = payload

        def add():
            self._forwards[lsock.fileno()] = f
            if watch:
                self._watches[f.id] = f
                self._frame(WATCH, f.id, struct.pack("<HH", guest_port,
                                                     payload[2]))

        self._call(add)
        return f

    def reverse_forward(self, guest_port, host_port, *,
                        host_addr="127.0.0.1", guest_addr="127.0.0.1",
                        timeout=_common.DEFAULT_TIMEOUT):
        """Listens on ``guest_addr:guest_port`` in the guest; connections
        there reach ``host_addr:host_port``. Returns a ReverseForward once
        the guest listens; raises the guest's error (e.g. EADDRINUSE as
        OSError) or Timeout.
        """
        self._check()
        r = ReverseForward(self, next(self._listen_ids), guest_addr,
                           guest_port, host_addr, host_port)
        payload = _addr_payload(guest_port, guest_addr)

        def add():
            self._reverses[r.id] = r
            self._frame(LISTEN, r.id, payload)

        self._call(add)
        if not r.listening.wait(timeout):
            r.close()
            raise Timeout(f"tcp_fwd did not listen on guest port "
                          f"{guest_port} within {timeout:g} s")
        if r.status:
            raise OSError(-r.status, f"guest port {guest_port}: "
                          f"{errno.errorcode.get(-r.status, r.status)}")
        return r

    def close(self):
        """Stops the plugin (QUIT) and every forward."""
        if not self.closed.is_set():
            self._call(self._quit)
            self.closed.wait(QUIT_WAIT + 5)

    def _check(self):
        if self.closed.is_set():
            raise GpmError(f"the TCP forwarder has stopped: {self.reason}")

    # --- pump thread --------------------------------------------------

    def _frame(self, ftype, cid, payload=b""):
        self._out.append(HDR.pack(ftype, 0, 0, cid, len(payload)))
        if payload:
            self._out.append(payload)

    def _flush(self):
        if not self._out:
            return
        data = b"".join(self._out)
        try:
            self.chan.write(data)
            self._out.clear()
        except QueueFull:
            self._out = [data]  # the guest is behind: try again soon
        except GpmError as err:
            self._stop(f"channel write failed: {err}")

    def _quit(self):
        """QUIT, then wait (in the pump loop) for the plugin to exit:
        closing the channel at once would drop the QUIT unread."""
        for c in list(self._conns.values()):
            self._drop(c, reset=True, notify=False)
        self._frame(QUIT, 0)
        self._flush()
        self._quit_by = time.monotonic() + QUIT_WAIT

    def _stop(self, reason):
        if self.closed.is_set():
            return
        if self._quit_by is not None:
            reason = "closed by the host"
        self.reason = reason
        for c in list(self._conns.values()):
            self._drop(c, reset=True, notify=False)
        for f in list(self._forwards.values()):
            self._end_forward(f, reason, notify=False)
        for r in list(self._reverses.values()):
            self._end_reverse(r, reason, notify=False)
        self.closed.set()
        # The plugin has gone (or was told to go): its channel goes too,
        # so the next Forwarder loads a fresh one.
        if self.mgr.__dict__.get("_tool_channels", {}).get(PLUGIN) is \
                self.chan:
            _common.forget_plugin(self.mgr, PLUGIN)

    def _end_forward(self, f, reason, notify=True):
        if f.closed.is_set():
            return
        self._forwards.pop(f.sock.fileno(), None)
        if self._watches.pop(f.id, None) is not None and notify:
            self._frame(UNLISTEN, f.id)
        for c in [c for c in self._conns.values() if c.owner is f]:
            self._drop(c, reset=True, notify=notify)
        f.sock.close()
        f.reason = reason
        f.closed.set()

    def _end_reverse(self, r, reason, notify=True):
        if r.closed.is_set():
            return
        if self._reverses.pop(r.id, None) is not None and notify:
            self._frame(UNLISTEN, r.id)
        for c in [c for c in self._conns.values() if c.owner is r]:
            self._drop(c, reset=True, notify=notify)
        r.reason = reason
        r.listening.set()
        r.closed.set()

    def _drop(self, c, reset, notify=True, err=0):
        """Forgets ``c``; ``reset`` aborts its host socket (RST)."""
        self._conns.pop(c.id, None)
        if reset and notify:
            self._frame(RESET, c.id, struct.pack("<i", err))
        if reset:
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            except OSError:
                pass
        c.sock.close()

    def _maybe_done(self, c):
        if c.sent_shut and c.got_shut and c.wr_shut and not c.out:
            self._ack(c, True)
            self._drop(c, reset=False)

    def _ack(self, c, force):
        if c.unacked and (force or c.unacked >= WINDOW // 4):
            self._frame(ACK, c.id, struct.pack("<I", c.unacked))
            c.unacked = 0

    def _host_write(self, c):
        try:
            while c.out:
                n = c.sock.send(c.out)
                del c.out[:n]
                c.unacked += n
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as err:
            c.owner.resets.append((c.id, err.errno))
            self._drop(c, reset=True, err=-(err.errno or errno.EIO))
            return
        # ACKs in quarters of the window: each message to the guest costs
        # it READ hypercalls, so fewer, larger ACKs forward faster.
        self._ack(c, False)
        if not c.out and c.got_shut and not c.wr_shut:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.wr_shut = True
        self._maybe_done(c)

    def _host_read(self, c):
        try:
            data = c.sock.recv(min(c.credit, MAX_PAYLOAD))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            c.owner.resets.append((c.id, err.errno))
            self._drop(c, reset=True, err=-(err.errno or errno.EIO))
            return
        if not data:
            self._frame(SHUT, c.id)
            c.sent_shut = True
            self._maybe_done(c)
            return
        c.credit -= len(data)
        self._frame(DATA, c.id, data)

    def _accept(self, f):
        try:
            sock, _ = f.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if len(self._conns) >= MAX_CONNS:
            sock.close()
            return
        sock.setblocking(False)
        cid = next(self._ids) & ~GUEST_BIT or next(self._ids)
        c = _Conn(cid, sock, f)
        self._conns[cid] = c
        f.connections += 1
        self._frame(CONNECT, cid, f._payload)

    def _connect_done(self, c):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        c.connecting = False
        if err:
            c.owner.resets.append((c.id, err))
            self._drop(c, reset=True, err=-err)
            return
        c.open = True
        self._frame(CONNECTED, c.id)

    def _on_frame(self, ftype, cid, payload):
        if ftype == GONE:
            f = self._watches.pop(cid, None)
            if f is not None:
                self._end_forward(f, "the guest service stopped listening")
            return
        if ftype == LISTENING:
            r = self._reverses.get(cid)
            if r is not None:
                r.status = struct.unpack("<i", payload[:4])[0] \
                    if len(payload) >= 4 else -errno.EPROTO
                if r.status:
                    self._reverses.pop(cid, None)
                    r.reason = "the guest could not listen"
                    r.closed.set()
                r.listening.set()
            return
        if ftype == ACCEPTED:
            self._on_accepted(cid, payload)
            return
        c = self._conns.get(cid)
        if c is None:
            return  # finished here already
        if ftype == CONNECTED:
            c.open = True
        elif ftype == DATA:
            if c.got_shut or len(c.out) + len(payload) > WINDOW:
                c.owner.resets.append((cid, errno.EPROTO))
                self._drop(c, reset=True, err=-errno.EPROTO)
                return
            c.out += payload
            self._host_write(c)
        elif ftype == ACK and len(payload) >= 4:
            c.credit = min(WINDOW, c.credit + struct.unpack("<I",
                                                            payload[:4])[0])
        elif ftype == SHUT:
            c.got_shut = True
            self._host_write(c)
        elif ftype == RESET:
            err = struct.unpack("<i", payload[:4])[0] if len(payload) >= 4 \
                else 0
            c.owner.resets.append((cid, -err))
            self._drop(c, reset=True, notify=False)

    def _on_accepted(self, cid, payload):
        lid = struct.unpack("<I", payload[:4])[0] if len(payload) >= 4 else 0
        r = self._reverses.get(lid)
        if r is None or not cid & GUEST_BIT or cid in self._conns or \
                len(self._conns) >= MAX_CONNS:
            self._frame(RESET, cid, struct.pack("<i", -errno.ECONNREFUSED))
            return
        fam = socket.AF_INET6 if ":" in r.host_addr else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setblocking(False)
        c = _Conn(cid, sock, r)
        c.connecting = True
        self._conns[cid] = c
        r.connections += 1
        rc = sock.connect_ex((r.host_addr, r.host_port))
        if rc not in (0, errno.EINPROGRESS):
            c.connecting = False
            r.resets.append((cid, rc))
            self._drop(c, reset=True, err=-rc)
        elif rc == 0:
            self._connect_done(c)

    def _parse(self):
        buf = self._inbuf
        view = memoryview(buf)
        off = 0
        try:
            while len(buf) - off >= HDR.size:
                ftype, _, _, cid, n = HDR.unpack_from(view, off)
                if n > MAX_PAYLOAD:
                    raise ProtocolError(f"tcp_fwd: frame of {n} bytes")
                if len(buf) - off - HDR.size < n:
                    break
                start = off + HDR.size
                self._on_frame(ftype, cid, bytes(view[start:start + n]))
                off = start + n
        finally:
            view.release()
            del buf[:off]

    def _take_input(self):
        with self._inq_lock:
            chunks = list(self._inq)
            self._inq.clear()
            self._inq_len = 0
            if self._paused:
                self._raw.set_paused(self.chan.id, False)
                self._paused = False
        for ch in chunks:
            self._inbuf += ch

    def _round(self, poller_timeout):
        p = select.poll()
        fds = {self._wake_r.fileno(): None}
        p.register(self._wake_r, select.POLLIN)
        for fd in self._forwards:
            p.register(fd, select.POLLIN)
        try:
            queued = self.chan.pending[0]
        except GpmError:
            queued = 0
        for c in self._conns.values():
            ev = 0
            if c.connecting or c.out:
                ev |= select.POLLOUT
            if c.open and not c.sent_shut and c.credit > 0 and \
                    queued < QUEUED_HIGH:
                ev |= select.POLLIN
            if ev:
                p.register(c.sock, ev)
                fds[c.sock.fileno()] = c
        for fd, ev in p.poll(poller_timeout * 1000):
            if fd == self._wake_r.fileno():
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                continue
            f = self._forwards.get(fd)
            if f is not None:
                self._accept(f)
                continue
            c = fds.get(fd)
            if c is None or self._conns.get(c.id) is not c:
                continue
            if c.connecting:
                self._connect_done(c)
                continue
            if ev & (select.POLLOUT | select.POLLERR | select.POLLHUP) \
                    and c.out:
                self._host_write(c)
            if self._conns.get(c.id) is c and ev & (
                    select.POLLIN | select.POLLHUP | select.POLLERR):
                self._host_read(c)

    def _pump(self):
        try:
            while not self.closed.is_set():
                while self._calls:
                    func, args = self._calls.popleft()
                    func(*args)
                if self.closed.is_set():
                    break
                if self._quit_by is not None and \
                        time.monotonic() > self._quit_by:
                    self._stop("closed by the host")
                    break
                if self.mgr.lost is not None:
                    self._stop(f"the emulator is gone: {self.mgr.lost}")
                    break
                self._take_input()
                self._parse()
                self._flush()
                self._round(PUMP_TICK if not self._out else 0.01)
                self._take_input()
                self._parse()
                self._flush()
        except Exception as err:  # reported, and every forward ends
            print(f"[pandagpm] tcp_fwd pump: {err!r}", file=sys.stderr)
            self._stop(f"internal error: {err!r}")
        finally:
            self._wake_r.close()
            self._wake_w.close()


_lock = threading.Lock()


def forwarder(target):
    """The running :class:`Forwarder` of ``target``'s guest state,
    started (with its guest plugin) on first use."""
    mgr = _common.manager_of(target)
    with _lock:
        fw = mgr.__dict__.get("_tool_forwarder")
        if fw is None or fw.closed.is_set():
            fw = Forwarder(target)
            mgr.__dict__["_tool_forwarder"] = fw
        return fw


def forward(target, guest_port, host_port=0, **kwargs):
    """Forwards host port ``host_port`` (0: any free one) to guest port
    ``guest_port``; returns the :class:`Forward`. See
    :meth:`Forwarder.forward` for the keywords."""
    return forwarder(target).forward(guest_port, host_port, **kwargs)


def reverse_forward(target, guest_port, host_port, **kwargs):
    """Makes guest port ``guest_port`` reach host port ``host_port``;
    returns the :class:`ReverseForward`."""
    return forwarder(target).reverse_forward(guest_port, host_port, **kwargs)


def _cmd_forward(args, session):
    if args.reverse:
        f = reverse_forward(session, args.guest_port, args.host_port,
                            host_addr=args.host_addr,
                            guest_addr=args.guest_addr)
        _common.say(session, f"guest {args.guest_addr}:{args.guest_port} -> "
             f"{args.host_addr}:{args.host_port}")
    else:
        f = forward(session, args.guest_port, args.host_port or 0,
                    guest_addr=args.guest_addr, host_addr=args.host_addr,
                    watch=not args.no_watch)
        _common.say(session, f"{f.host_addr}:{f.host_port} -> guest "
             f"{args.guest_addr}:{args.guest_port}")
    deadline = None if args.duration is None else \
        time.monotonic() + args.duration
    try:
        while not f.wait_closed(0.5):
            if deadline is not None and time.monotonic() > deadline:
                break
    except KeyboardInterrupt:
        pass
    f.close()
    _common.say(session, f"forward ended: {f.reason}")
    return 0


def register_cli(subparsers):
    """Adds ``forward`` to the ``pandagpm`` command line."""
    p = subparsers.add_parser(
        "forward", help="forward a host TCP port to a guest port (or back)",
        description="Forwards connections to a host TCP port to a guest "
        "address and port over a channel (no guest network needed), until "
        "Ctrl-C, --duration, or the guest service stops. With --reverse, "
        "connections to the guest port reach the host port instead.")
    p.add_argument("guest_port", type=int)
    p.add_argument("host_port", type=int, nargs="?", default=0,
                   help="host port (default: any free port, printed)")
    p.add_argument("--reverse", action="store_true",
                   help="listen in the guest, connect on the host")
    p.add_argument("--guest-addr", default="127.0.0.1")
    p.add_argument("--host-addr", default="127.0.0.1")
    p.add_argument("--no-watch", action="store_true",
                   help="keep forwarding after the guest service stops")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this long")
    p.set_defaults(handler=_cmd_forward)
    return p
