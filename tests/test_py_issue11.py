"""Issue 11 (and issue 10's event plumbing) in process, with a fake CPU:
event listeners, channel ownership through dispatch(tgid=), the daemon
reset, blocking calls inside callbacks, and a lost emulator.
"""

import gc
import struct
import threading

import pytest

from pandagpm import _gpm
from pandagpm.channels import Channel
from pandagpm.errors import CalledFromCallback, EmulatorConnectionLost
from pandagpm.manager import (OWNER_NONE, OWNER_PENDING, GuestPluginManager)
from pandagpm.testing import (DFRAME_EXITED, DFRAME_HELLO, DFRAME_STARTED,
                              FakeGuest, make_plugin_elf)

EACCES = -13
EBUSY = -16
ENOSPC = -28
DAEMON, PLUGIN, SNOOPER = 100, 300, 666


def hello(guest, chan, pid):
    return guest.send_frame(chan, DFRAME_HELLO, 0, struct.pack("<II", pid, 1))


# Issue 10: any number of listeners.

def test_every_manager_on_one_core_manager_gets_every_event():
    core = _gpm.Manager()
    first, second = GuestPluginManager(core), GuestPluginManager(core)
    got1, got2 = [], []
    first.on_event(got1.append)
    second.on_event(got2.append)
    guest = FakeGuest(core)
    cid = guest.get_manager()
    assert cid > 0
    assert [e.type for e in got1] == [e.type for e in got2] == \
        ["GUEST_CHANNEL"]
    # A closed or collected manager stops listening; the others go on.
    first.close()
    del second
    gc.collect()
    third = GuestPluginManager(core)
    got3 = []
    third.add_event_listener(got3.append, types=["CHANNEL_START"])
    assert guest.start(cid) == 0
    assert len(got1) == 1 and len(got3) == 1


def test_core_manager_listeners_add_and_remove():
    core = _gpm.Manager()
    calls = []

    def a(ev):
        calls.append(("a", ev[0]))

    def b(ev):
        calls.append(("b", ev[0]))

    core.add_event_listener(a)
    core.add_event_listener(b)
    FakeGuest(core).get_manager()
    assert calls == [("a", "GUEST_CHANNEL"), ("b", "GUEST_CHANNEL")]
    assert core.remove_event_listener(a) is True
    assert core.remove_event_listener(a) is False
    FakeGuest(core).get_manager()
    assert calls[-1] == ("b", "GUEST_CHANNEL") and len(calls) == 3
    with pytest.raises(TypeError):
        core.add_event_listener(42)


# Ownership.

def test_plugin_channel_belongs_to_the_plugin_process(tmp_path):
    gpm = GuestPluginManager()
    mgr = gpm.manager
    daemon = FakeGuest(mgr, tgid=DAEMON)
    plugin = FakeGuest(mgr, cpu=daemon.cpu, tgid=PLUGIN)
    snooper = FakeGuest(mgr, cpu=daemon.cpu, tgid=SNOOPER)
    events = []
    gpm.on_event(events.append)
    dchan = mgr.daemon_channel()
    assert mgr.owner(dchan) == OWNER_PENDING
    # Until the host names the daemon, processes are asked to wait.
    assert hello(snooper, dchan, 4242) == EBUSY
    mgr.daemon_reset(DAEMON)
    assert hello(snooper, dchan, 4242) == EACCES
    assert not [e for e in events if e.type == "DAEMON_READY"]

    path = make_plugin_elf(str(tmp_path / "p"), "p")
    chan = gpm.load_guest_plugin("p", path=path)
    load = daemon.daemon_take_load()
    assert plugin.start(chan.id) == EBUSY
    # A forged STARTED is refused; the daemon's gives the channel away.
    snooper_load = dict(load, chan=dchan)
    assert snooper.daemon_reply(snooper_load, DFRAME_STARTED,
                                pid=SNOOPER) == EACCES
    assert daemon.daemon_reply(load, DFRAME_STARTED, pid=PLUGIN) > 0
    assert mgr.owner(chan.id) == PLUGIN
    assert plugin.start(chan.id) == 0
    chan.write(b"for the plugin only")
    assert snooper.read(chan.id, 64) == EACCES
    assert snooper.write(chan.id, b"fake") == EACCES
    assert snooper.get_channel("p") == EACCES
    assert plugin.read(chan.id, 64) == b"for the plugin only"
    assert plugin.write(chan.id, b"real") == 4
    assert chan.read(4, timeout=5) == b"real"
    assert mgr.stats()["refused"] >= 5
    # The real EXITED retires the owner: a reused pid gets nothing.
    assert daemon.daemon_reply(load, DFRAME_EXITED, pid=PLUGIN) > 0
    assert mgr.owner(chan.id) == OWNER_NONE
    assert plugin.write(chan.id, b"x") == EACCES


def test_daemon_reset_fails_pending_loads_and_drops_their_frames(tmp_path):
    gpm = GuestPluginManager()
    mgr = gpm.manager
    mgr.daemon_reset(DAEMON)
    events = []
    gpm.on_event(events.append)
    path = make_plugin_elf(str(tmp_path / "p"), "p")
    gpm.load_guest_plugin("p", path=path)
    assert mgr.pending(mgr.daemon_channel())[0] > 0
    assert mgr.daemon_reset(OWNER_PENDING) == 1
    assert mgr.pending(mgr.daemon_channel()) == (0, 0)
    failed = [e for e in events if e.type == "PLUGIN_FAILED"]
    assert len(failed) == 1 and failed[0].name == "p"
    assert failed[0].stage == 7  # GPM_DSTAGE_LOST
    # The old daemon is refused from now on.
    old = FakeGuest(mgr, tgid=DAEMON)
    assert hello(old, mgr.daemon_channel(), DAEMON) == EACCES


def test_anonymous_channels_per_process_quota_and_stop_frees():
    mgr = _gpm.Manager()
    mgr.set_guest_quota(4)
    greedy = FakeGuest(mgr, tgid=400)
    ids = [greedy.get_manager() for _ in range(4)]
    assert all(i > 0 for i in ids)
    assert greedy.get_manager() == ENOSPC
    other = FakeGuest(mgr, cpu=greedy.cpu, tgid=401)
    assert other.get_manager() > 0
    assert other.stop(ids[0]) == EACCES
    assert greedy.stop(ids[0]) == 0
    assert greedy.get_manager() > 0
    assert mgr.process_gone(400) == 4
    assert mgr.stats()["channels"] == 1


def test_compat_mode_lets_every_process_through():
    mgr = _gpm.Manager()
    mgr.set_ownership(False)
    dchan = mgr.daemon_channel()
    assert hello(FakeGuest(mgr, tgid=SNOOPER), dchan, 1) > 0


# Callbacks and a lost emulator.

def test_blocking_read_inside_a_callback_raises_at_once():
    gpm = GuestPluginManager()
    idle = gpm.open_channel("idle")
    seen = []

    def on_data(cid, data):
        seen.append(gpm.manager.in_callback())
        assert idle.read(1, timeout=0) is None
        with pytest.raises(CalledFromCallback):
            idle.read(1)
        with pytest.raises(CalledFromCallback):
            idle.read(1, timeout=30)
        seen.append("done")

    chan = gpm.open_channel("cb", on_data)
    assert FakeGuest(gpm).write(chan.id, b"x") == 1
    assert seen == [True, "done"]
    assert gpm.manager.in_callback() is False
    assert gpm.stats()["callback_errors"] == 0


def test_lost_emulator_wakes_readers_and_fails_writes():
    gpm = GuestPluginManager()
    chan = gpm.open_channel("c")
    FakeGuest(gpm).write(chan.id, b"kept")
    result = []

    def reader():
        try:
            result.append(chan.read(4))
            result.append(chan.read(4))
        except EmulatorConnectionLost as err:
            result.append(err)

    t = threading.Thread(target=reader)
    t.start()
    t.join(0.2)
    gpm.lose_all_channels(EmulatorConnectionLost("QEMU exited"))
    t.join(10)
    assert not t.is_alive()
    assert result[0] == b"kept" and isinstance(result[1],
                                               EmulatorConnectionLost)
    with pytest.raises(EmulatorConnectionLost):
        chan.write(b"x")
    with pytest.raises(EmulatorConnectionLost):
        gpm.channel_write(chan.id, b"x")
    with pytest.raises(EmulatorConnectionLost):
        gpm.channel("c").write(b"x")
    # A Channel made without the manager knows nothing of it.
    Channel(gpm.manager, chan.id).write(b"queued")


def test_protocol_errors_are_counted_and_reported_once():
    gpm = GuestPluginManager()
    mgr = gpm.manager
    mgr.daemon_reset(DAEMON)
    events = []
    gpm.on_event(events.append, types=["PROTOCOL_ERROR"])
    daemon = FakeGuest(mgr, tgid=DAEMON)
    junk = struct.pack("<IHHII", 0x444D5047, 1, 17, 0, 8192) * 4096
    for _ in range(4):
        assert daemon.write(mgr.daemon_channel(), junk) == len(junk)
    assert mgr.stats()["protocol_errors"] >= 4 * 4096
    assert len(events) == 1
    assert hello(daemon, mgr.daemon_channel(), DAEMON) > 0


def test_guest_event_logging_is_rate_limited(capsys, monkeypatch):
    from pandagpm import host

    panda = host.Panda.__new__(host.Panda)
    panda.verbose = True
    panda._log_window = {}
    now = [100.0]
    monkeypatch.setattr(host.time, "monotonic", lambda: now[0])
    for i in range(1000):
        panda._log_limited("GUEST_ERROR", f"GUEST_ERROR: spam {i}")
    now[0] += 1.5
    panda._log_limited("GUEST_ERROR", "GUEST_ERROR: later")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == host.LOG_BURST + 2
    assert f"({1000 - host.LOG_BURST} more GUEST_ERROR events" in lines[-2]
    assert lines[-1].endswith("GUEST_ERROR: later")
