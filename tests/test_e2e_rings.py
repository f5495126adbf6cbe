"""End-to-end tests of the shared-memory channel rings (docs/rings.md,
issue 16) on the real guest of each arch of tests/archs.py: stock QEMU,
the generic image, ``guest/testprogs/ringtest`` built for the arch.

* Under load, both directions at once (a writer and a reader thread in
  the guest, an echoing host callback), messages of 1 byte to 200 KiB
  checked byte for byte and in order on both sides, with almost no VM
  stop (the rings' memory ordering, tested for real per arch).
* A guest that breaks its ring's rules gets an error on that channel only:
  the host shuts that ring, reports it, and every other channel goes on.
* The switch: with rings off (``rings=False``, or ``PANDAGPM_RINGS=0``)
  the same exchange runs on hypercalls and no ring is attached.
"""

import re
import threading
import time

import pytest

import archs  # noqa: E402  (tests/archs.py)

from pandagpm.host import Panda  # noqa: E402

pytestmark = pytest.mark.e2e

EPROTO = -71
SHORT = 30.0
LONG = 300.0
STRESS_MSGS = 600
MAX_MSG = 200 << 10


def wait_for(pred, timeout, what, period=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting "
                                 f"for {what}")
        time.sleep(period)


def msg_size(seed, seq):
    """ringtest.c's msg_size(): the same pseudo-random sizes."""
    s = (seed ^ (seq * 2654435761)) & 0xFFFFFFFF
    s = (s * 1103515245 + 12345) & 0xFFFFFFFF
    r = s >> 8
    k = r % 8
    if k == 0:
        return 8 + r % MAX_MSG
    if k in (1, 2):
        return 8 + r % 8192
    return 8 + r % 300


def expected(seq, size):
    head = seq.to_bytes(4, "little") + size.to_bytes(4, "little")
    return head + bytes(((seq * 31 + i * 7) & 0xFF) for i in range(8, size))


class Echo:
    """Checks each stress message as it arrives and echoes it back."""

    def __init__(self, seed):
        self.seed = seed
        self.chan = None
        self.next = 0
        self.bad = []
        self.texts = []
        self.lock = threading.Lock()

    def __call__(self, cid, data):
        data = bytes(data)
        if data.startswith(b"RINGTEST "):
            self.texts.append(data.decode())
            return
        with self.lock:
            size = msg_size(self.seed, self.next)
            if data != expected(self.next, size) and len(self.bad) < 5:
                self.bad.append((self.next, len(data), size))
            self.next += 1
        self.chan.write(data)


@pytest.fixture(scope="module", params=archs.arch_params())
def arch(request):
    archs.require(request.param)
    return request.param


@pytest.fixture(scope="module")
def ringtest(arch):
    path = archs.guest_build(arch) / "testprogs" / "ringtest"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def panda(arch, ringtest):
    p = Panda(generic=arch, verbose=False, rings=True)
    p.start()
    p.machine.copy_to_guest(str(ringtest), "/tmp/ringtest")
    try:
        yield p
    finally:
        p.close()


def stress(p, seed, msgs=STRESS_MSGS):
    echo = Echo(seed)
    echo.chan = p.gpm.open_channel("ringtest", echo)
    try:
        stops0 = p.gdb.stats()["stops"]
        out = p.run_serial_cmd(f"/tmp/ringtest stress {msgs} {seed}; "
                               "echo rc=$?", timeout=LONG)
        wait_for(lambda: echo.texts, SHORT, "ringtest's verdict")
        return echo, out, p.gdb.stats()["stops"] - stops0
    finally:
        echo.chan.close()


def test_stress_both_ways_in_order(panda):
    """600 messages of 1 B..200 KiB each way at once, two guest threads,
    every byte checked on both sides, with the rings carrying them: the
    VM stops only for the channel's open, first read and STOP."""
    before = panda.gpm.manager.stats()
    echo, out, stops = stress(panda, seed=1234567)
    after = panda.gpm.manager.stats()
    assert "rc=0" in out, out
    assert echo.texts[-1] == (f"RINGTEST stress ok={STRESS_MSGS} bad=0 "
                              "writer=0"), echo.texts
    assert echo.bad == [] and echo.next == STRESS_MSGS
    moved = after["ring_msgs_from_guest"] - before["ring_msgs_from_guest"]
    assert moved >= STRESS_MSGS, (before, after)
    assert after["ring_msgs_to_guest"] - before["ring_msgs_to_guest"] >= \
        STRESS_MSGS
    assert after["ring_broken"] == before["ring_broken"]
    # Open (GET_CHANNEL, START, RING_ATTACH), the first READ, STOP: a
    # handful of stops, not one per message.
    assert stops < 20, stops


def test_corrupt_ring_hurts_only_its_channel(panda):
    """ringtest corrupt breaks two rings on purpose: the host shuts each
    (status EPROTO, a GUEST_ERROR event), the library's next write on that
    channel fails with -EPROTO, and the main channel's messages all arrive
    in order."""
    main, raw, errors = [], {}, []

    def on_event(ev):
        if ev.type == "GUEST_CHANNEL":
            panda.gpm.attach_channel(
                ev.channel,
                lambda cid, data: raw.setdefault(cid, []).append(bytes(data)))
        elif ev.type == "GUEST_ERROR":
            errors.append(ev.text)

    panda.gpm.on_event(on_event)
    before = panda.gpm.manager.stats()["ring_broken"]
    chan = panda.gpm.open_channel(
        "ringtest", lambda cid, data: main.append(bytes(data).decode()))
    try:
        out = panda.run_serial_cmd("/tmp/ringtest corrupt; echo rc=$?",
                                   timeout=LONG)
        assert "rc=0" in out, out
        wait_for(lambda: len(main) >= 4, SHORT, "main channel's messages")
    finally:
        chan.close()
    report = dict(re.findall(r"(\w+)=(-?\d+)", main[2]))
    assert main[:2] == ["main before", "main between"], main
    assert main[3] == "main after", main
    assert int(report["raw_status"]) == EPROTO, main[2]
    assert int(report["lib_status"]) == EPROTO, main[2]
    assert int(report["lib_write"]) == EPROTO, main[2]
    # The good record before each break was delivered, nothing after it.
    assert raw[int(report["anon"])] == [b"raw-ok"], raw
    assert raw[int(report["anon2"])] == [b"lib-ok"], raw
    assert panda.gpm.manager.stats()["ring_broken"] - before == 2
    assert sum("shut" in e for e in errors) == 2, errors
    # And the rings still work for the next program.
    echo, out, _ = stress(panda, seed=99, msgs=50)
    assert echo.bad == [] and echo.next == 50, echo.bad


def test_rings_off_switch(arch, ringtest):
    """rings=False: the same stress runs on READ/WRITE hypercalls, and no
    ring is ever attached."""
    if arch != archs.selected()[0]:
        pytest.skip("the switch is checked on the first selected arch")
    p = Panda(generic=arch, verbose=False, rings=False)
    p.start()
    try:
        p.machine.copy_to_guest(str(ringtest), "/tmp/ringtest")
        echo, out, stops = stress(p, seed=7, msgs=60)
        assert "rc=0" in out, out
        assert echo.bad == [] and echo.next == 60
        st = p.gpm.manager.stats()
        assert st["rings_attached"] == 0 and st["ring_msgs_from_guest"] == 0
        assert stops > 60  # one stop per call at least
    finally:
        p.close()
