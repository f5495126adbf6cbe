"""The frame layout every pandagpm protocol uses (csrc/include/gpm/wire.h).

One definition: the constants come from ``pandagpm._gpm``, which takes
them from gpm/wire.h, and :func:`check` compares this module's encoder
with the C one (``_gpm.wire_header``). A frame is a 16-byte header
(``<IHHII``: magic, version, type, seq, payload length; little-endian)
then the payload. Each protocol has its own magic: the guest daemon
(``MAGIC_DAEMON``), the files plugin (``MAGIC_FILES``) and the PTY shell
(``MAGIC_PTY``).

:class:`FrameReader` reads frames of one protocol from a buffered
:class:`~pandagpm.channels.Channel`, refusing a payload over the
caller's limit, so a hostile guest cannot make the host allocate much.
"""

import struct

from . import _gpm
from .errors import GpmError

__all__ = ["HDR", "HDR_SIZE", "VERSION", "MAGIC_DAEMON", "MAGIC_FILES",
           "MAGIC_PTY", "pack", "unpack", "FrameReader", "ProtocolError",
           "DFRAME_PING", "DSTAGE_LOST", "daemon_frame"]

HDR = struct.Struct("<IHHII")
HDR_SIZE = _gpm.WIRE_HDR_SIZE
VERSION = _gpm.WIRE_VERSION
MAGIC_DAEMON = _gpm.WIRE_MAGIC_DAEMON
MAGIC_FILES = _gpm.WIRE_MAGIC_FILES
MAGIC_PTY = _gpm.WIRE_MAGIC_PTY

# The daemon protocol's frame types and stages (gpm/daemon_proto.h).
DFRAME_LOAD = _gpm.DFRAME_LOAD
DFRAME_PING = _gpm.DFRAME_PING
DFRAME_PROBE = _gpm.DFRAME_PROBE
DFRAME_HELLO = _gpm.DFRAME_HELLO
DFRAME_STARTED = _gpm.DFRAME_STARTED
DFRAME_EXITED = _gpm.DFRAME_EXITED
DFRAME_FAILED = _gpm.DFRAME_FAILED
DFRAME_GONE = _gpm.DFRAME_GONE
DSTAGE_LOST = _gpm.DSTAGE_LOST

assert HDR.size == HDR_SIZE


class ProtocolError(GpmError):
    """A peer sent a frame that does not follow its protocol."""

    default_code = _gpm.EPROTO


def pack(magic, ftype, seq=0, payload=b""):
    """One frame: header then ``payload`` (bytes-like) as bytes."""
    return HDR.pack(magic, VERSION, ftype, seq, len(payload)) + bytes(payload)


def header(magic, ftype, seq, length):
    """Only the header of a frame whose payload is ``length`` bytes."""
    return HDR.pack(magic, VERSION, ftype, seq, length)


def unpack(data):
    """Splits a 16-byte header: ``(magic, version, type, seq, length)``."""
    return HDR.unpack_from(data)


def daemon_frame(ftype, seq=0, payload=b""):
    """A frame of the guest daemon's protocol."""
    return pack(MAGIC_DAEMON, ftype, seq, payload)


def check():
    """Raises AssertionError if this encoder and gpm/wire.h disagree."""
    for args in ((MAGIC_DAEMON, 2, 0, 0), (MAGIC_FILES, 0x1234, 7, 1 << 20),
                 (MAGIC_PTY, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)):
        assert header(*args) == _gpm.wire_header(*args), args


class FrameReader:
    """Reads frames with one magic from a buffered Channel.

    ``max_payload`` bounds what one frame may carry; a longer one, a bad
    magic or a bad version raises :class:`ProtocolError` (the stream is
    then out of step and should be closed). ``read(timeout)`` returns
    ``(type, seq, payload)``, or None at end of file before a header.
    """

    def __init__(self, chan, magic, max_payload):
        self.chan = chan
        self.magic = magic
        self.max_payload = max_payload

    def _exact(self, n, timeout):
        out = bytearray()
        while len(out) < n:
            piece = self.chan.read(n - len(out), timeout=timeout)
            if not piece:
                return bytes(out)
            out += piece
        return bytes(out)

    def read(self, timeout=None):
        hdr = self._exact(HDR_SIZE, timeout)
        if not hdr:
            return None
        if len(hdr) < HDR_SIZE:
            raise ProtocolError(f"frame header cut short ({len(hdr)} bytes)")
        magic, version, ftype, seq, length = HDR.unpack(hdr)
        if magic != self.magic or version != VERSION:
            raise ProtocolError(
                f"bad frame header (magic 0x{magic:08x}, version {version})")
        if length > self.max_payload:
            raise ProtocolError(
                f"frame payload of {length} bytes over the limit "
                f"{self.max_payload}")
        payload = self._exact(length, timeout) if length else b""
        if len(payload) < length:
            raise ProtocolError(
                f"frame cut short ({len(payload)} of {length} bytes)")
        return ftype, seq, payload
