"""channel_recv, the file-like Channel, and GuestPluginManager."""

from __future__ import annotations

import io
import shutil
import threading
import time
import typing

import pytest

import pandagpm
from pandagpm import _gpm
from pandagpm.testing import FakeGuest, make_plugin_elf


@pytest.fixture
def gpm():
    g = pandagpm.GuestPluginManager()
    yield g
    g.close()


@pytest.fixture
def guest(gpm):
    return FakeGuest(gpm)


# channel_recv.


def test_channel_recv_bytes(gpm, guest):
    got = []

    @pandagpm.channel_recv
    def cb(channel_id: int, msg: bytes):
        got.append((channel_id, msg))

    assert cb.channel_recv_str is False
    cid = gpm.allocate_channel(cb)
    guest.write(cid, b"\xff\x00raw")
    assert got == [(cid, b"\xff\x00raw")]


def test_channel_recv_str(gpm, guest):
    got = []

    # This module uses "from __future__ import annotations": the annotation
    # is the string "str", resolved by the decorator.
    @pandagpm.channel_recv
    def cb(channel_id: int, msg: str):
        got.append(msg)

    assert cb.channel_recv_str is True
    cid = gpm.allocate_channel(cb)
    guest.write(cid, "héllo".encode())
    guest.write(cid, b"bad \xff\xfe utf8")
    assert got == ["héllo", "bad \ufffd\ufffd utf8"]


def test_channel_recv_runtime_annotations():
    def as_str(cid, msg):
        return msg

    as_str.__annotations__ = {"msg": str}
    assert pandagpm.channel_recv(as_str)(1, b"x") == "x"

    def as_bytes(cid, msg):
        return msg

    as_bytes.__annotations__ = {"msg": bytes}
    assert pandagpm.channel_recv(as_bytes)(1, b"x") == b"x"


def test_channel_recv_unannotated_gets_bytes():
    @pandagpm.channel_recv
    def cb(cid, msg):
        return msg

    assert cb(1, b"x") == b"x"
    assert cb.__name__ == "cb"


def test_channel_recv_any_gets_bytes():
    def cb(cid, msg):
        return msg

    cb.__annotations__ = {"msg": typing.Any}
    assert pandagpm.channel_recv(cb)(1, b"x") == b"x"


def test_channel_recv_on_methods(gpm, guest):
    class Sink:
        def __init__(self):
            self.lines = []

        @pandagpm.channel_recv
        def on_line(self, channel_id: int, msg: str):
            self.lines.append(msg)

    sink = Sink()
    cid = gpm.allocate_channel(sink.on_line)
    guest.write(cid, b"method")
    assert sink.lines == ["method"]


def test_channel_recv_rejects_bad_signatures():
    with pytest.raises(TypeError):
        @pandagpm.channel_recv
        def one(cid):
            pass

    with pytest.raises(TypeError):
        @pandagpm.channel_recv
        def wrong(cid: int, msg: int):
            pass


def test_channel_recv_returns_value_and_propagates_errors():
    @pandagpm.channel_recv
    def cb(cid: int, msg: str):
        raise ValueError(msg)

    with pytest.raises(ValueError, match="boom"):
        cb(1, b"boom")


# Channel as a file.


def test_channel_is_raw_io(gpm):
    chan = gpm.open_channel("f")
    assert isinstance(chan, io.RawIOBase)
    assert chan.readable() and chan.writable() and not chan.seekable()
    assert chan.name == "f" and chan.id > 0
    assert "f" in repr(chan)
    with pytest.raises(io.UnsupportedOperation):
        chan.fileno()


def test_channel_write_and_guest_read(gpm, guest):
    chan = gpm.open_channel("w")
    assert chan.write(b"abc") == 3
    assert chan.write(bytearray(b"de")) == 2
    assert chan.write(memoryview(b"fgh")[1:]) == 2
    assert chan.pending == (7, 3)
    assert guest.read(chan.id, 10) == b"abc"
    assert guest.read(chan.id, 10) == b"de"
    assert guest.read(chan.id, 10) == b"gh"


def test_channel_read_guest_bytes(gpm, guest):
    chan = gpm.open_channel("r", timeout=1)
    guest.write(chan.id, b"hello ")
    guest.write(chan.id, b"world")
    assert chan.buffered == 11
    assert chan.read(3) == b"hel"
    assert chan.read(100) == b"lo world"  # a stream: chunks merge
    assert chan.read(0) == b""
    b = bytearray(4)
    guest.write(chan.id, b"xy")
    assert chan.readinto(b) == 2 and b[:2] == b"xy"


def test_channel_read_timeouts(gpm):
    chan = gpm.open_channel("t")
    assert chan.read(10, timeout=0) is None
    assert chan.readinto(bytearray(1), timeout=0) is None
    t0 = time.monotonic()
    with pytest.raises(pandagpm.Timeout):
        chan.read(10, timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    chan.timeout = 0.01
    with pytest.raises(pandagpm.Timeout):
        chan.read(1)


def test_channel_blocking_read_woken_by_emulator_thread(gpm, guest):
    chan = gpm.open_channel("b")

    def emulator():
        time.sleep(0.05)
        guest.write(chan.id, b"late bytes")

    t = threading.Thread(target=emulator)
    t.start()
    assert chan.read(100, timeout=5) == b"late bytes"
    t.join()


def test_channel_read_all_until_guest_stop(gpm, guest):
    chan = gpm.open_channel("eof")
    guest.start(chan.id)
    guest.write(chan.id, b"part1 ")
    guest.write(chan.id, b"part2")
    guest.stop(chan.id)
    assert chan.read() == b"part1 part2"
    assert chan.read(10) == b""  # EOF
    # START again clears EOF.
    guest.start(chan.id)
    assert chan.read(10, timeout=0) is None


def test_channel_readall_timeout_loses_nothing(gpm, guest):
    chan = gpm.open_channel("keep")
    guest.write(chan.id, b"abc")
    with pytest.raises(pandagpm.Timeout):
        chan.read(timeout=0.05)  # no EOF yet
    assert chan.read(10, timeout=0) == b"abc"


def test_channel_buffered_reader_and_copyfileobj(gpm, guest):
    chan = gpm.open_channel("lines")
    guest.write(chan.id, b"line one\nline ")
    guest.write(chan.id, b"two\n")
    guest.stop(chan.id)
    reader = io.BufferedReader(chan)
    assert reader.readline() == b"line one\n"
    assert reader.readline() == b"line two\n"
    assert reader.readline() == b""

    chan2 = gpm.open_channel("copy")
    guest.write(chan2.id, b"x" * 100000)
    guest.stop(chan2.id)
    out = io.BytesIO()
    shutil.copyfileobj(chan2, out)
    assert out.getvalue() == b"x" * 100000


def test_full_channel_pushes_back_instead_of_dropping(gpm, guest):
    chan = gpm.open_channel("small", buffer_limit=10)
    assert guest.write(chan.id, b"12345678") == 8
    # Past the limit by one write at most: taken, then the channel pauses.
    assert guest.write(chan.id, b"abcdef") == 6
    assert guest.write(chan.id, b"later") == _gpm.HC_EBUSY  # not taken
    assert chan.read(100, timeout=0) == b"12345678abcdef"  # nothing lost
    # Below the limit again: the guest's retry goes through.
    assert guest.write(chan.id, b"later") == 5
    assert chan.read(100, timeout=0) == b"later"


def test_overflow_without_backpressure_is_reported_once(gpm, guest):
    from pandagpm.channels import _RecvBuffer

    # A buffer that cannot pause its channel drops and counts instead.
    buf = _RecvBuffer(10)
    buf(1, b"12345678")
    buf(1, b"abcdef")
    chan = pandagpm.Channel(gpm.manager, gpm.manager.allocate_channel(),
                            buffer=buf)
    buf.pause = None
    with pytest.raises(pandagpm.ChannelOverflow) as info:
        chan.read(100, timeout=0)
    assert info.value.lost == 6
    assert isinstance(info.value, pandagpm.QueueFull)
    assert chan.read(100, timeout=0) == b"12345678"  # kept
    with pytest.raises(ValueError):
        gpm.open_channel("zero", buffer_limit=0)


def test_channel_with_callback_is_not_readable(gpm, guest):
    got = []
    chan = gpm.open_channel("cb", callback=lambda c, d: got.append(d))
    assert not chan.readable()
    with pytest.raises(io.UnsupportedOperation):
        chan.read(1)
    guest.write(chan.id, b"to callback")
    assert got == [b"to callback"]
    assert chan.buffered == 0


def test_channel_close(gpm, guest):
    chan = gpm.open_channel("closing")
    chan.write(b"unread")
    chan.close()
    assert chan.closed
    chan.close()  # idempotent
    with pytest.raises(pandagpm.ChannelNotFound):
        gpm.get_channel_from_name("closing")
    with pytest.raises(ValueError):
        chan.write(b"x")
    with pytest.raises(ValueError):
        chan.read(1)
    assert guest.write(chan.id, b"x") == _gpm.HC_EBADF


def test_close_wakes_blocked_reader(gpm):
    chan = gpm.open_channel("wake")
    result = []

    def reader():
        result.append(chan._buf and chan.readinto(bytearray(4), timeout=5))

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    chan._buf.set_eof(True)
    t.join(5)
    assert result == [0]


def test_channel_context_manager(gpm):
    with gpm.open_channel("ctx") as chan:
        chan.write(b"x")
    assert chan.closed


def test_channel_allocate_directly():
    m = _gpm.Manager()
    chan = pandagpm.Channel.allocate(m, "direct")
    assert chan.manager is m
    assert m.lookup("direct") == chan.id
    with pytest.raises(TypeError):
        pandagpm.Channel.allocate(object())
    chan.close()
    with pytest.raises(_gpm.Error):
        m.lookup("direct")


# GuestPluginManager.


def test_manager_on_host_objects():
    m = _gpm.Manager(arch="arm")
    assert pandagpm.GuestPluginManager(m).arch == "arm"

    class Host:
        manager = _gpm.Manager(arch="aarch64")

    gpm = pandagpm.GuestPluginManager(Host())
    assert gpm.arch == "aarch64" and gpm.manager is Host.manager
    with pytest.raises(TypeError):
        pandagpm.GuestPluginManager(object())
    assert "aarch64" in repr(gpm)


def test_original_api_names(gpm, guest):
    got = []
    cid = gpm.allocate_channel(lambda c, d: got.append(d), name="orig")
    assert gpm.get_channel_from_name("orig") == cid
    gpm.channel_write(cid, b"to guest")
    assert guest.read(cid, 100) == b"to guest"
    guest.write(cid, b"to host")
    assert got == [b"to host"]
    anon = gpm.allocate_channel()
    assert anon != cid
    with pytest.raises(pandagpm.ChannelNotFound):
        gpm.get_channel_from_name("nope")


def test_channel_lookup(gpm, guest):
    chan = gpm.open_channel("look")
    assert gpm.channel("look") is chan
    assert gpm.channel(chan.id) is chan
    anon = guest.get_manager()
    view = gpm.channel(anon)  # made by the guest: a write-only view
    assert view.write(b"hi") == 2 and not view.readable()
    view.close()
    assert guest.read(anon, 10) == b"hi"  # the view did not close it
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.channel(98765)
    with pytest.raises(pandagpm.ChannelNotFound):
        gpm.channel("nope")


def test_close_channel_and_close(gpm):
    a = gpm.open_channel("a")
    b_id = gpm.allocate_channel(name="b")
    gpm.close_channel(a.id)
    assert a.closed
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.close_channel(a.id)
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.channel_write(a.id, b"x")
    anon = FakeGuest(gpm).get_manager()
    gpm.close_channel(anon)  # one gpm did not make
    gpm.close()
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.channel_write(b_id, b"x")


def test_load_guest_plugin(gpm, guest, tmp_path):
    path = make_plugin_elf(str(tmp_path / "plug_a"), "plug_a")
    chan = gpm.load_guest_plugin("plug_a", path=path)
    assert chan.name == "plug_a"
    assert gpm.get_channel_from_name("plug_a") == chan.id
    daemon = gpm.get_channel_from_name(_gpm.DAEMON_CHANNEL)
    assert gpm.channel(daemon).pending[1] >= 1
    guest.write(chan.id, b"plugin output")
    guest.stop(chan.id)
    assert chan.read() == b"plugin output"
    with pytest.raises(pandagpm.NameInUse):
        gpm.load_guest_plugin("plug_a", path=path)


def test_add_guest_plugin_found_on_search_path(gpm, tmp_path, monkeypatch):
    make_plugin_elf(str(tmp_path / "plug_b"), "plug_b")
    monkeypatch.setenv("EXTRA_GUEST_PLUGINS_PATH", str(tmp_path))
    got = []
    cid = gpm.add_guest_plugin("plug_b", callback=lambda c, d: got.append(d))
    assert isinstance(cid, int)
    info = gpm.find_plugin("plug_b")
    assert info.path == str(tmp_path / "plug_b")
    assert info.arch == "x86_64"
    names = [p.name for p in gpm.list_plugins()]
    assert "plug_b" in names
    assert "plug_b" in [p.name for p in pandagpm.list_plugins(str(tmp_path))]


def test_inspect_plugin_public(tmp_path):
    path = make_plugin_elf(str(tmp_path / "p"), "pinfo", "3.1", "described",
                           arch="mips")
    info = pandagpm.inspect_plugin(path)
    assert isinstance(info, pandagpm.PluginInfo)
    assert (info.name, info.version, info.description, info.arch) == (
        "pinfo", "3.1", "described", "mips")
    assert pandagpm.arch_info("mips")["big_endian"] is True
    pandagpm.add_plugin_dir(str(tmp_path / "unused"))


def test_events_api(gpm, guest):
    chan = gpm.open_channel("ev")
    all_events, starts = [], []

    @gpm.on_event
    def listener(ev):
        all_events.append(ev)

    gpm.on_event(starts.append, types=["CHANNEL_START"])
    with pytest.raises(ValueError):
        gpm.on_event(print, types=["NOT_A_TYPE"])
    guest.start(chan.id)
    guest.stop(chan.id)
    assert [e.type for e in all_events] == ["CHANNEL_START", "CHANNEL_STOP"]
    assert [e.type for e in starts] == ["CHANNEL_START"]
    assert isinstance(all_events[0], pandagpm.Event)
    gpm.remove_event_listener(listener)
    guest.start(chan.id)
    assert len(all_events) == 2 and len(starts) == 2
    assert set(pandagpm.EVENT_TYPES) >= {e.type for e in all_events}


def test_gpm_dispatch_maps_errors(gpm):
    class Lost:
        def read_reg(self, n):
            raise pandagpm.EmulatorConnectionLost("socket closed")

    with pytest.raises(pandagpm.EmulatorConnectionLost):
        gpm.dispatch(Lost())

    class Raw:
        def read_reg(self, n):
            return _gpm.EIO  # a negative int is a register value here

        def write_reg(self, n, v):
            return _gpm.EIO  # ... but a code from write_reg

    assert gpm.dispatch(Raw()) is False  # no magic value


def test_manager_context(tmp_path):
    with pandagpm.GuestPluginManager() as gpm:
        chan = gpm.open_channel("c")
    assert chan.closed


def test_attach_guest_channel(gpm, guest):
    anon = guest.get_manager()
    chan = gpm.attach_channel(anon, timeout=1)
    assert gpm.channel(anon) is chan
    assert guest.write(anon, b"from guest") == 10
    assert chan.read(100) == b"from guest"
    got = []
    gpm.attach_channel(anon, callback=lambda c, d: got.append(d))
    guest.write(anon, b"again")
    assert got == [b"again"]
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.attach_channel(99999)


# The whole plugin life cycle, with the test playing the guest daemon.


def test_plugin_life_cycle_with_fake_daemon(gpm, guest, tmp_path):
    from pandagpm import testing

    path = make_plugin_elf(str(tmp_path / "life"), "life")
    events = []
    gpm.on_event(events.append)
    chan = gpm.load_guest_plugin("life", path=path, timeout=5)

    load = guest.daemon_take_load()
    assert load["name"] == "life"
    with open(path, "rb") as f:
        assert load["elf"] == f.read()
    daemon = load["chan"]
    guest.send_frame(daemon, testing.DFRAME_HELLO, 0,
                     (77).to_bytes(4, "little") + (1).to_bytes(4, "little"))
    guest.daemon_reply(load, testing.DFRAME_STARTED, pid=1234)

    # The plugin talks on its own channel, then exits.
    pid_chan = guest.get_channel("life")
    assert pid_chan == chan.id
    guest.start(pid_chan)
    guest.write(pid_chan, b"plugin says hi\n")
    guest.daemon_reply(load, testing.DFRAME_EXITED, pid=1234, status=0)
    assert chan.read() == b"plugin says hi\n"  # EOF at exit

    kinds = [(e.type, e.pid, e.name) for e in events]
    assert ("DAEMON_READY", 77, None) in kinds
    assert ("PLUGIN_STARTED", 1234, "life") in kinds
    assert ("PLUGIN_EXITED", 1234, "life") in kinds


def test_plugin_failure_with_fake_daemon(gpm, guest, tmp_path):
    from pandagpm import testing

    path = make_plugin_elf(str(tmp_path / "doomed"), "doomed")
    failed = []
    gpm.on_event(failed.append, types={"PLUGIN_FAILED"})
    chan = gpm.load_guest_plugin("doomed", path=path, timeout=5)
    load = guest.daemon_take_load()
    guest.daemon_reply(load, testing.DFRAME_FAILED, err=8,
                       stage=_gpm.DSTAGE_EXEC, text="exec format error")
    assert chan.read() == b""  # EOF: it will never write
    (ev,) = failed
    assert (ev.name, ev.err, ev.stage, ev.text) == (
        "doomed", 8, _gpm.DSTAGE_EXEC, "exec format error")


def test_daemon_garbage_is_a_protocol_error(gpm, guest, tmp_path):
    path = make_plugin_elf(str(tmp_path / "g"), "g")
    errors = []
    gpm.on_event(errors.append, types={"PROTOCOL_ERROR"})
    gpm.load_guest_plugin("g", path=path)
    load = guest.daemon_take_load()
    guest.write(load["chan"], b"\xde\xad\xbe\xef" * 8)
    assert errors and "daemon" in errors[0].text
