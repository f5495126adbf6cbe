"""The shared wire layer (gpm/wire.h through pandagpm.wire) and the
CHANNEL_DRAINED event, in process against the fake guest."""

import struct
import threading

import pytest

import pandagpm
from pandagpm import _gpm, wire
from pandagpm.errors import QueueFull, Timeout
from pandagpm.testing import FakeGuest


@pytest.fixture
def gpm():
    g = pandagpm.GuestPluginManager()
    yield g
    g.close()


def test_python_encoder_matches_the_c_header():
    wire.check()
    hdr = wire.header(wire.MAGIC_FILES, 3, 9, 100)
    assert hdr == _gpm.wire_header(wire.MAGIC_FILES, 3, 9, 100)
    assert wire.unpack(hdr) == (wire.MAGIC_FILES, 1, 3, 9, 100)
    assert hdr[:4] == b"GPMF"
    assert wire.daemon_frame(wire.DFRAME_PING)[:4] == b"GPMD"
    with pytest.raises(OverflowError):
        _gpm.wire_header(1 << 32, 0, 0, 0)


def test_frame_reader_bounds_and_checks(gpm):
    chan = gpm.open_channel("w")
    guest = FakeGuest(gpm)
    cid = guest.get_channel("w")
    guest.write(cid, wire.pack(wire.MAGIC_FILES, 5, 1, b"abc"))
    rd = wire.FrameReader(chan, wire.MAGIC_FILES, 8)
    assert rd.read(timeout=1) == (5, 1, b"abc")
    guest.write(cid, wire.pack(wire.MAGIC_FILES, 5, 1, b"x" * 9))
    with pytest.raises(wire.ProtocolError, match="over the limit"):
        rd.read(timeout=1)
    guest.write(cid, wire.pack(wire.MAGIC_PTY, 5, 1, b""))
    with pytest.raises(wire.ProtocolError, match="bad frame header"):
        wire.FrameReader(chan, wire.MAGIC_FILES, 8).read(timeout=1)


def test_drained_event_after_queue_full(gpm):
    chan = gpm.open_channel("d")
    guest = FakeGuest(gpm)
    cid = guest.get_channel("d")
    events = []
    gpm.add_event_listener(events.append, types={"CHANNEL_DRAINED"})
    chan.set_queue_limit(4 * (1000 + 32))
    for _ in range(4):
        chan.write(b"m" * 1000)
    with pytest.raises(QueueFull):
        chan.write(b"m" * 1000)
    assert not chan.wait_drained(0)
    # One message read: 3 of 4 left, above half: no event yet.
    assert len(guest.read(cid, 1000)) == 1000
    assert events == []
    assert len(guest.read(cid, 1000)) == 1000
    assert [e.channel for e in events] == [cid]
    assert chan.wait_drained(0)
    # Only once per refusal.
    assert len(guest.read(cid, 1000)) == 1000
    assert len(events) == 1


def test_no_drained_event_without_a_refusal(gpm):
    chan = gpm.open_channel("n")
    guest = FakeGuest(gpm)
    cid = guest.get_channel("n")
    events = []
    gpm.add_event_listener(events.append, types={"CHANNEL_DRAINED"})
    chan.write(b"x" * 100)
    guest.read(cid, 100)
    assert events == []


def test_write_wait_resumes_on_drained(gpm):
    chan = gpm.open_channel("ww")
    guest = FakeGuest(gpm)
    cid = guest.get_channel("ww")
    chan.set_queue_limit(2 * (1000 + 32))
    chan.write(b"a" * 1000)
    chan.write(b"b" * 1000)
    done = threading.Event()

    def writer():
        chan.write_wait(b"c" * 1000, timeout=30, slice_=30)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    assert not done.wait(0.2)
    got = guest.read(cid, 1000)
    assert got == b"a" * 1000
    # The drained event (not a poll: the slice is 30 s) wakes the writer.
    assert done.wait(10)
    t.join(10)
    assert chan.pending == (2000, 2)
    with pytest.raises(Timeout):
        chan.write_wait(b"d" * 1000, timeout=0.1)


def test_queue_limit_is_checked(gpm):
    chan = gpm.open_channel("q")
    with pytest.raises(pandagpm.GpmError):
        chan.set_queue_limit(10)
    chan.set_queue_limit(0)
    assert struct.calcsize("<IHHII") == wire.HDR_SIZE
