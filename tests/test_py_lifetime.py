"""Reference ownership: callbacks are released exactly once, when their
channel is closed or their manager freed; cycles through callbacks are
collected; nothing leaks over many calls."""

import gc
import subprocess
import sys
import weakref

import pytest

import pandagpm
from pandagpm import _gpm
from pandagpm.testing import FakeGuest, make_plugin_elf


class Callback:
    """A callable that can be weakly referenced and counts its deaths."""

    deaths = 0

    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)

    def __del__(self):
        type(self).deaths += 1


@pytest.fixture(autouse=True)
def reset_deaths():
    Callback.deaths = 0


def test_released_on_close():
    m = _gpm.Manager()
    cb = Callback()
    ref = weakref.ref(cb)
    cid = m.allocate_channel("c", cb)
    del cb
    assert ref() is not None  # the channel owns it
    m.close(cid)
    assert ref() is None
    assert Callback.deaths == 1


def test_released_on_manager_free():
    m = _gpm.Manager()
    refs = []
    for i in range(5):
        cb = Callback()
        refs.append(weakref.ref(cb))
        m.allocate_channel(f"c{i}", cb)
        del cb
    ev = Callback()
    evref = weakref.ref(ev)
    m.set_event_callback(ev)
    del ev
    assert all(r() is not None for r in refs) and evref() is not None
    del m
    assert all(r() is None for r in refs)
    assert evref() is None
    assert Callback.deaths == 6  # exactly once each


def test_not_kept_when_allocation_fails():
    m = _gpm.Manager()
    m.allocate_channel("taken")
    cb = Callback()
    before = sys.getrefcount(cb)
    with pytest.raises(_gpm.Error):
        m.allocate_channel("taken", cb)
    assert sys.getrefcount(cb) == before
    with pytest.raises(_gpm.Error):
        m.add_guest_plugin("no_such_plugin_lifetime", None, cb)
    assert sys.getrefcount(cb) == before


def test_plugin_callback_released(tmp_path):
    m = _gpm.Manager()
    path = make_plugin_elf(str(tmp_path / "lp"), "lp")
    cb = Callback()
    ref = weakref.ref(cb)
    cid = m.add_guest_plugin("lp", path, cb)
    del cb
    assert ref() is not None
    m.close(cid)
    assert ref() is None


def test_replacing_event_callback_releases_old():
    m = _gpm.Manager()
    a, b = Callback(), Callback()
    ra = weakref.ref(a)
    m.set_event_callback(a)
    del a
    m.set_event_callback(b)
    assert ra() is None
    m.set_event_callback(None)
    assert sys.getrefcount(b) == 2


def test_cycle_through_channel_callback_is_collected():
    m = _gpm.Manager()
    mref = weakref.ref(m)

    class Holder:
        def __init__(self, manager):
            self.manager = manager  # callback -> manager -> callback

        def __call__(self, cid, data):
            pass

    cb = Holder(m)
    cbref = weakref.ref(cb)
    m.allocate_channel("cyc", cb)
    del cb, m
    gc.collect()
    assert mref() is None
    assert cbref() is None


def test_cycle_through_event_callback_is_collected():
    m = _gpm.Manager()
    mref = weakref.ref(m)
    m.set_event_callback(lambda ev, m=m: None)
    del m
    gc.collect()
    assert mref() is None


def test_gpm_manager_does_not_form_cycles_with_its_manager():
    gpm = pandagpm.GuestPluginManager()
    mref = weakref.ref(gpm.manager)
    gref = weakref.ref(gpm)
    chan = gpm.open_channel("x")
    cref = weakref.ref(chan)
    del chan
    gc.disable()
    try:
        del gpm
        # Plain reference counting frees the whole graph: no cycles.
        assert gref() is None
        assert cref() is None
        assert mref() is None
    finally:
        gc.enable()


def test_channel_closed_by_garbage_collection_releases_buffer():
    m = _gpm.Manager()
    chan = pandagpm.Channel.allocate(m, "temp")
    bufref = weakref.ref(chan._buf)
    del chan  # like a file: closed when collected
    gc.collect()
    assert bufref() is None
    with pytest.raises(_gpm.Error):
        m.lookup("temp")


def test_no_leak_over_many_dispatches():
    m = _gpm.Manager()
    cb = Callback()
    cid = m.allocate_channel("loop", cb)
    guest = FakeGuest(m)
    payload = b"p" * 100
    guest.write(cid, payload)
    m.write(cid, b"r")
    guest.read(cid, 10)
    base_cb = sys.getrefcount(cb)
    base_payload = sys.getrefcount(payload)
    base_cpu = sys.getrefcount(guest.cpu)
    for _ in range(300):
        guest.write(cid, payload)
        m.write(cid, b"r")
        guest.read(cid, 10)
        guest.cpu.calls.clear()
    # Measured before asserting: pytest's rewriting holds references.
    after = (sys.getrefcount(cb), sys.getrefcount(payload),
             sys.getrefcount(guest.cpu))
    assert after == (base_cb, base_payload, base_cpu)
    cb.calls.clear()


def test_callback_closing_channel_during_manager_free():
    """A callback's finalizer that touches the manager while it is freed."""
    code = r"""
import pandagpm._gpm as g
m = g.Manager()
class CB:
    def __call__(self, *a): pass
    def __del__(self):
        print("released", flush=True)
for i in range(3):
    m.allocate_channel(None, CB())
del m
print("done", flush=True)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60, cwd=_repo_root())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["released"] * 3 + ["done"]


def test_manager_alive_at_interpreter_exit():
    code = r"""
import pandagpm
from pandagpm.testing import FakeGuest
gpm = pandagpm.GuestPluginManager()
c = gpm.open_channel("bye", callback=lambda c, d: None)
FakeGuest(gpm).write(c.id, b"x")
KEEP = gpm
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60, cwd=_repo_root())
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def _repo_root():
    import os

    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
