"""_gpm.Manager: every method, its arguments and its errors."""

import os

import pytest

from pandagpm import _gpm
from pandagpm.testing import make_plugin_elf


@pytest.fixture
def m():
    return _gpm.Manager()


def error_code(excinfo):
    return excinfo.value.code


def test_construct_defaults_and_arch():
    m = _gpm.Manager()
    assert m.arch == "x86_64"
    for arch in _gpm.ARCHES:
        assert _gpm.Manager(arch=arch).arch == arch
    m = _gpm.Manager("arm", 100, 200, 3, 2)
    assert m.arch == "arm"


def test_construct_bad_arguments():
    with pytest.raises(_gpm.Error) as info:
        _gpm.Manager(arch="pdp11")
    assert error_code(info) == _gpm.EINVAL
    assert "pdp11" in info.value.message
    with pytest.raises(ValueError):
        _gpm.Manager(queue_limit=-1)
    with pytest.raises(ValueError):
        _gpm.Manager(max_channels=2**40)
    with pytest.raises(TypeError):
        _gpm.Manager(arch=3)
    with pytest.raises(TypeError):
        _gpm.Manager(bogus=1)


def test_manager_is_final():
    with pytest.raises(TypeError):
        type("Sub", (_gpm.Manager,), {})


def test_allocate_channel_ids(m):
    ids = [m.allocate_channel() for _ in range(5)]
    assert len(set(ids)) == 5
    assert all(i > 0 for i in ids)
    named = m.allocate_channel("named")
    assert m.lookup("named") == named
    # Keyword form and a callback.
    cid = m.allocate_channel(name="kw", callback=lambda c, d: None)
    assert m.lookup("kw") == cid
    assert m.stats()["channels"] == 7


def test_allocate_channel_errors(m):
    m.allocate_channel("dup")
    with pytest.raises(_gpm.Error) as info:
        m.allocate_channel("dup")
    assert error_code(info) == _gpm.EEXIST
    with pytest.raises(_gpm.Error) as info:
        m.allocate_channel("")
    assert error_code(info) == _gpm.EINVAL
    with pytest.raises(_gpm.Error) as info:
        m.allocate_channel("x" * 256)
    assert error_code(info) == _gpm.ENAMETOOLONG
    m.allocate_channel("x" * 255)
    with pytest.raises(TypeError):
        m.allocate_channel("cb", 42)
    with pytest.raises(ValueError):
        m.allocate_channel("nul\0name")


def test_max_channels():
    m = _gpm.Manager(max_channels=2)
    m.allocate_channel()
    m.allocate_channel()
    with pytest.raises(_gpm.Error) as info:
        m.allocate_channel()
    assert error_code(info) == _gpm.ENOSPC


def test_lookup_unknown_is_enoent(m):
    with pytest.raises(_gpm.Error) as info:
        m.lookup("ghost")
    assert error_code(info) == _gpm.ENOENT


def test_write_read_pending(m):
    cid = m.allocate_channel("c")
    assert m.pending(cid) == (0, 0)
    m.write(cid, b"hello")
    m.write(cid, bytearray(b" world"))
    m.write(cid, memoryview(b"!!"))
    m.write(cid, b"")  # accepted and ignored
    assert m.pending(cid) == (13, 3)
    assert m.read(cid, 3) == b"hel"
    assert m.pending(cid) == (10, 3)
    assert m.read(cid, 100) == b"lo"
    assert m.read(cid, 100) == b" world"
    assert m.read(cid, 0) == b""
    assert m.read(cid, 2**40) == b"!!"
    assert m.read(cid, 10) == b""
    assert m.pending(cid) == (0, 0)
    with pytest.raises(ValueError):
        m.read(cid, -1)
    with pytest.raises(TypeError):
        m.write(cid, "text")


def test_partial_reads_keep_order(m):
    cid = m.allocate_channel()
    msgs = [bytes([i]) * (i + 5) for i in range(10)]
    for msg in msgs:
        m.write(cid, msg)
    out = bytearray()
    while True:
        piece = m.read(cid, 3)
        if not piece:
            break
        out += piece
    assert bytes(out) == b"".join(msgs)


def test_bad_ids(m):
    for bad in (0, 999, -1, 2**32, 2**70):
        for call in (lambda: m.write(bad, b"x"), lambda: m.read(bad, 1),
                     lambda: m.pending(bad), lambda: m.started(bad),
                     lambda: m.close(bad)):
            with pytest.raises(_gpm.Error) as info:
                call()
            assert error_code(info) == _gpm.EBADF
    with pytest.raises(TypeError):
        m.write("1", b"x")
    with pytest.raises(TypeError):
        m.pending(1.0)


def test_started_and_close(m):
    cid = m.allocate_channel("s")
    assert m.started(cid) is False
    m.write(cid, b"dropped")
    m.close(cid)
    with pytest.raises(_gpm.Error):
        m.lookup("s")
    with pytest.raises(_gpm.Error) as info:
        m.close(cid)
    assert error_code(info) == _gpm.EBADF
    # Ids are not reused.
    assert m.allocate_channel("s") != cid
    assert m.stats()["queued_bytes"] == 0


def test_queue_limits():
    m = _gpm.Manager(queue_limit=1000, total_queue_limit=1500)
    a, b = m.allocate_channel(), m.allocate_channel()
    m.write(a, b"x" * 600)
    with pytest.raises(_gpm.Error) as info:
        m.write(a, b"x" * 600)
    assert error_code(info) == _gpm.ENOSPC
    m.write(b, b"y" * 600)
    with pytest.raises(_gpm.Error) as info:
        m.write(b, b"y" * 300)
    assert error_code(info) == _gpm.ENOSPC
    with pytest.raises(_gpm.Error) as info:
        m.write(b, b"y" * 2000)
    assert error_code(info) == _gpm.EMSGSIZE
    assert m.pending(a) == (600, 1)
    assert m.pending(b) == (600, 1)
    # Draining makes room again.
    assert m.read(a, 1000) == b"x" * 600
    m.write(b, b"y" * 300)


def test_stats_keys(m):
    s = m.stats()
    assert set(s) == {"hypercalls", "not_ours", "guest_errors",
                      "bytes_to_guest", "bytes_from_guest", "queued_bytes",
                      "channels", "callback_errors", "refused",
                      "protocol_errors"}
    assert all(isinstance(v, int) and v == 0 for v in s.values())


def test_set_event_callback(m):
    m.set_event_callback(None)
    m.set_event_callback(print)
    with pytest.raises(TypeError):
        m.set_event_callback(3)


def test_add_guest_plugin(m, tmp_path):
    path = make_plugin_elf(str(tmp_path / "tplug"), "tplug")
    got = []
    cid = m.add_guest_plugin("tplug", str(tmp_path / "tplug"),
                             lambda c, d: got.append(d))
    assert m.lookup("tplug") == cid
    daemon = m.lookup(_gpm.DAEMON_CHANNEL)
    nbytes, nmsgs = m.pending(daemon)
    size = (tmp_path / "tplug").stat().st_size
    assert nmsgs >= 1 and nbytes > size  # a LOAD frame holding the binary
    with pytest.raises(_gpm.Error) as info:
        m.add_guest_plugin("tplug", path)
    assert error_code(info) == _gpm.EEXIST
    assert m.pending(daemon) == (nbytes, nmsgs)  # nothing more queued


def test_add_guest_plugin_errors(m, tmp_path):
    with pytest.raises(_gpm.Error) as info:
        m.add_guest_plugin("surely_not_a_plugin_7")
    assert error_code(info) == _gpm.ENOENT
    assert "surely_not_a_plugin_7" in info.value.message
    with pytest.raises(TypeError):
        m.add_guest_plugin("x", None, 5)
    with pytest.raises(TypeError):
        m.add_guest_plugin()


def test_module_functions():
    info = _gpm.arch_info("x86_64")
    assert info["word_bits"] == 64 and info["elf_machine"] == 62
    assert len(info["hc_regs"]) == 5
    assert _gpm.arch_info("ppc")["big_endian"] is True
    assert _gpm.HC_MAGIC == 0x1337C0D3
    assert _gpm.HC_OP_GET_CHANNEL == 7
    assert _gpm.HC_NOT_FOUND == -1
    assert _gpm.API_VERSION >= 1
    assert len(_gpm.ARCHES) == 9
    assert _gpm.ARCHES[-1] == "mips64el"
    assert _gpm.arch_info("mips64el")["big_endian"] is False
    assert _gpm.arch_info("mips64")["big_endian"] is True


def test_inventory_functions(tmp_path):
    d = tmp_path / "plugins"
    (d / "arm").mkdir(parents=True)
    make_plugin_elf(str(d / "alpha"), "alpha", "2.0", "first")
    make_plugin_elf(str(d / "arm" / "alpha"), "alpha", arch="arm")
    info = _gpm.inspect_plugin(str(d / "alpha"))
    assert info["name"] == "alpha" and info["version"] == "2.0"
    assert info["description"] == "first" and info["arch"] == "x86_64"
    assert _gpm.find_plugin("alpha", "arm", str(d))["arch"] == "arm"
    assert _gpm.find_plugin("alpha", explicit_dir=str(d))["version"] == "2.0"
    names = {(p["name"], p["arch"]) for p in _gpm.list_plugins(str(d))}
    assert {("alpha", "x86_64"), ("alpha", "arm")} <= names
    with pytest.raises(_gpm.Error) as info:
        _gpm.find_plugin("beta", "x86_64", str(d))
    assert info.value.code == _gpm.ENOENT
    assert str(d) in info.value.message  # every path tried is listed
    with pytest.raises(_gpm.Error) as info:
        _gpm.find_plugin("alpha", "vax")
    assert info.value.code == _gpm.EINVAL


def test_add_plugin_dir(tmp_path):
    make_plugin_elf(str(tmp_path / "gamma_x"), "gamma_x")
    with pytest.raises(_gpm.Error):
        _gpm.find_plugin("gamma_x")
    _gpm.add_plugin_dir(str(tmp_path))
    assert _gpm.find_plugin("gamma_x")["path"] == str(tmp_path / "gamma_x")
    with pytest.raises(_gpm.Error):
        _gpm.add_plugin_dir("")


def test_clear_plugin_dirs(tmp_path):
    # In a child process: clearing is global and other tests rely on the
    # package's directories.
    import subprocess
    import sys

    make_plugin_elf(str(tmp_path / "delta_x"), "delta_x")
    code = (
        "import sys, pandagpm._gpm as g\n"
        "g.add_plugin_dir(sys.argv[1])\n"
        "g.find_plugin('delta_x')\n"
        "g.clear_plugin_dirs()\n"
        "try:\n"
        "    g.find_plugin('delta_x')\n"
        "except g.Error as e:\n"
        "    print(e.name)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                         capture_output=True, text=True, timeout=60,
                         cwd=root)
    assert out.stdout.strip() == "GPM_ENOENT", out.stderr


def test_set_callback_on_guest_channel(m):
    import weakref

    from pandagpm.testing import FakeGuest

    guest = FakeGuest(m)
    anon = guest.get_manager()
    assert guest.write(anon, b"x") == _gpm.HC_EPIPE  # no receiver yet

    class CB(list):
        def __call__(self, cid, data):
            self.append(data)

    first = CB()
    ref = weakref.ref(first)
    m.set_callback(anon, first)
    assert guest.write(anon, b"one") == 3
    assert first == [b"one"]
    del first
    m.set_callback(anon, None)  # releases the old callback
    assert ref() is None
    assert guest.write(anon, b"x") == _gpm.HC_EPIPE
    with pytest.raises(_gpm.Error) as info:
        m.set_callback(4242, print)
    assert error_code(info) == _gpm.EBADF
    with pytest.raises(TypeError):
        m.set_callback(anon, 1)


def test_search_passes_over_other_arches(tmp_path):
    """One search path holding two arches' builds: each arch finds its
    own; an arch with only another arch's binary gets WrongArchitecture
    (EARCH) naming that binary, not "not found"."""
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.mkdir()
    arm.mkdir()
    make_plugin_elf(str(x86 / "mixed_p"), "mixed_p", arch="x86_64")
    make_plugin_elf(str(arm / "mixed_p"), "mixed_p", arch="arm")
    make_plugin_elf(str(x86 / "only_x"), "only_x", arch="x86_64")
    _gpm.add_plugin_dir(str(x86))
    _gpm.add_plugin_dir(str(arm))
    assert _gpm.find_plugin("mixed_p", "x86_64")["path"] == str(x86 / "mixed_p")
    assert _gpm.find_plugin("mixed_p", "arm")["path"] == str(arm / "mixed_p")
    with pytest.raises(_gpm.Error) as e:
        _gpm.find_plugin("only_x", "arm")
    assert e.value.code == _gpm.EARCH
    assert str(x86 / "only_x") in str(e.value)
