"""pandagpm errors: the code table, narrowing of _gpm.Error, and each code
class raised by a real call into the core."""

import pickle

import pytest

import pandagpm
from pandagpm import _gpm, errors
from pandagpm.testing import make_plugin_elf

EXPECTED = {
    "EPERM": errors.PermissionDenied,
    "ENOENT": errors.NotFound,
    "EIO": errors.EmulatorError,
    "EBADF": errors.ChannelClosed,
    "EAGAIN": errors.TryAgain,
    "ENOMEM": errors.OutOfMemory,
    "EACCES": errors.PermissionDenied,
    "EFAULT": errors.GuestMemoryFault,
    "EBUSY": errors.Busy,
    "EEXIST": errors.NameInUse,
    "EINVAL": errors.InvalidArgument,
    "ENOSPC": errors.QueueFull,
    "EROFS": errors.GuestPageReadOnly,
    "EPIPE": errors.PeerClosed,
    "ENAMETOOLONG": errors.NameTooLong,
    "ENOSYS": errors.NotSupported,
    "EMSGSIZE": errors.MessageTooLong,
    "EPROTO": errors.ProtocolError,
    "ENOEXEC": errors.NotExecutable,
    "ECONNRESET": errors.EmulatorConnectionLost,
    "ETIMEDOUT": errors.Timeout,
    "ECANCELED": errors.Cancelled,
    "EARCH": errors.WrongArchitecture,
    "EDESC": errors.BadDescriptor,
}


def test_every_c_code_has_a_class():
    assert set(_gpm.ERROR_NAMES.values()) == {f"GPM_{n}" for n in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_code_maps_to_class(name):
    code = getattr(_gpm, name)
    assert code < 0
    assert _gpm.err_name(code) == f"GPM_{name}"
    assert _gpm.strerror(code)
    err = errors.from_code(code, "detail")
    assert type(err) is EXPECTED[name]
    assert isinstance(err, errors.GpmError)
    assert isinstance(err, _gpm.Error)
    assert err.code == code
    assert err.name == f"GPM_{name}"
    assert err.message == "detail"
    assert str(err) == f"detail [GPM_{name}]"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_wrap_narrows_raw_error(name):
    code = getattr(_gpm, name)
    raw = _gpm.Error(code, _gpm.err_name(code), "raw message")
    with pytest.raises(EXPECTED[name]) as info:
        with errors.wrap():
            raise raw
    assert info.value.__cause__ is raw
    assert info.value.code == code
    assert info.value.message == "raw message"


def test_unknown_codes():
    assert _gpm.err_name(-4242) == "GPM_UNKNOWN"
    assert _gpm.strerror(-4242) == "unknown error"
    assert _gpm.strerror(2**80) == "unknown error"
    assert type(errors.from_code(-4242)) is errors.GpmError
    with pytest.raises(TypeError):
        _gpm.strerror("x")


def test_enoent_is_narrowed_by_context():
    assert type(errors.from_code(_gpm.ENOENT)) is errors.NotFound
    assert (type(errors.from_code(_gpm.ENOENT,
                                  not_found=errors.PluginNotFound))
            is errors.PluginNotFound)
    assert issubclass(errors.ChannelNotFound, LookupError)


def test_default_codes_and_messages():
    err = errors.GuestMemoryFault()
    assert err.code == _gpm.EFAULT
    assert err.message == _gpm.strerror(_gpm.EFAULT)
    assert errors.Timeout("late").code == _gpm.ETIMEDOUT
    assert isinstance(errors.InvalidArgument(), ValueError)
    assert isinstance(errors.OutOfMemory(), MemoryError)


def test_pickle_round_trip():
    err = errors.QueueFull("too much")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.QueueFull
    assert back.code == err.code
    assert (back.name, back.message) == (err.name, err.message)


def test_gpmerror_passes_wrap_unchanged():
    err = errors.Timeout("x")
    with pytest.raises(errors.Timeout) as info:
        with errors.wrap():
            raise err
    assert info.value is err


def test_wrapped_decorator():
    @errors.wrapped(errors.ChannelNotFound)
    def look(m):
        return m.lookup("nobody")

    with pytest.raises(errors.ChannelNotFound):
        look(_gpm.Manager())
    assert look.__name__ == "look"


def test_raw_error_attributes():
    m = _gpm.Manager()
    with pytest.raises(_gpm.Error) as info:
        m.lookup("nobody")
    assert info.value.code == _gpm.ENOENT
    assert info.value.name == "GPM_ENOENT"
    assert "nobody" in info.value.message
    assert "GPM_ENOENT" in str(info.value)


# Each class raised by a real call.


@pytest.fixture
def gpm():
    g = pandagpm.GuestPluginManager(queue_limit=1000, total_queue_limit=1500,
                                    max_channels=4)
    yield g
    g.close()


def test_real_channel_not_found(gpm):
    with pytest.raises(pandagpm.ChannelNotFound):
        gpm.get_channel_from_name("missing")


def test_real_channel_closed(gpm):
    cid = gpm.allocate_channel(lambda c, d: None)
    gpm.close_channel(cid)
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.channel_write(cid, b"x")
    with pytest.raises(pandagpm.ChannelClosed):
        gpm.channel_write(12345, b"x")


def test_real_queue_full_and_too_long(gpm):
    a = gpm.open_channel("a")
    b = gpm.open_channel("b")
    a.write(b"x" * 600)
    with pytest.raises(pandagpm.QueueFull):
        a.write(b"y" * 600)  # per-channel limit of 1000
    assert a.pending == (600, 1)
    b.write(b"z" * 600)
    with pytest.raises(pandagpm.QueueFull):
        b.write(b"w" * 300)  # total limit of 1500
    assert b.pending == (600, 1)
    with pytest.raises(pandagpm.MessageTooLong):
        b.write(b"v" * 1001)  # larger than a whole queue


def test_real_table_full(gpm):
    for _ in range(4):
        gpm.allocate_channel()
    with pytest.raises(pandagpm.QueueFull):
        gpm.allocate_channel()


def test_real_name_errors(gpm):
    gpm.allocate_channel(name="dup")
    with pytest.raises(pandagpm.NameInUse):
        gpm.allocate_channel(name="dup")
    with pytest.raises(pandagpm.NameTooLong):
        gpm.allocate_channel(name="n" * (_gpm.NAME_MAX + 1))
    with pytest.raises(pandagpm.InvalidArgument):
        gpm.allocate_channel(name="")


def test_real_bad_arch():
    with pytest.raises(pandagpm.InvalidArgument):
        pandagpm.GuestPluginManager(arch="vax")
    with pytest.raises(pandagpm.InvalidArgument):
        pandagpm.arch_info("vax")


def test_real_plugin_errors(gpm, tmp_path):
    with pytest.raises(pandagpm.PluginNotFound):
        gpm.load_guest_plugin("no_such_plugin_here_42")
    with pytest.raises(pandagpm.PluginNotFound):
        pandagpm.inspect_plugin(str(tmp_path / "absent"))
    text = tmp_path / "text"
    text.write_text("not an ELF\n")
    with pytest.raises(pandagpm.NotExecutable):
        pandagpm.inspect_plugin(str(text))
    with pytest.raises(pandagpm.NotExecutable):
        gpm.load_guest_plugin("text", path=str(text))
    bare = make_plugin_elf(str(tmp_path / "bare"), "bare", note=False)
    with pytest.raises(pandagpm.BadDescriptor):
        pandagpm.inspect_plugin(bare)
    future = make_plugin_elf(str(tmp_path / "future"), "future", desc_abi=99)
    with pytest.raises(pandagpm.BadDescriptor):
        pandagpm.inspect_plugin(future)
    armbin = make_plugin_elf(str(tmp_path / "armbin"), "armbin", arch="arm")
    with pytest.raises(pandagpm.WrongArchitecture) as info:
        gpm.load_guest_plugin("armbin", path=armbin)
    assert "arm" in info.value.message
    # Nothing was queued for the daemon by the failures.
    with pytest.raises(pandagpm.ChannelNotFound):
        gpm.get_channel_from_name("armbin")
