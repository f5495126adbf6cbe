"""pandagpm on pypanda: guest plugins from a ``pandare.Panda`` script.

::

    from pandare import Panda
    import pandagpm

    panda = Panda(generic="x86_64")

    @pandagpm.channel_recv
    def on_count(channel_id: int, msg: bytes):
        print(int.from_bytes(msg, "little"))

    pandagpm.load_guest_plugin(panda, "etc_count", on_count)

:func:`load_guest_plugin` takes either a pypanda ``Panda`` or pandagpm's
stock-QEMU host object (anything with a ``load_guest_plugin`` method or a
``manager`` attribute), so the same script runs on both.

How it works on PANDA
---------------------
:class:`PandaHost` registers the extension's C hypercall handler as PANDA's
``guest_hypercall`` callback (``_gpm.panda_hc_install()``): a hypercall runs
no Python. The C code reads registers at offsets into ``CPUArchState``
taken from pandare's cffi types (register numbers are GDB's, mapped per
architecture by :func:`register_map`) and reaches memory through libpanda's
``panda_virtual_memory_read_external``/``_write_external``. In x86_64 long
mode every access is first checked by a page walk: kernel pages are never
read or written for the guest, and the zero page and copy-on-write pages
are never written (the guest then write-touches its buffer and retries).
Without C functions from libpanda, or with PANDAGPM_PYTHON_HYPERCALLS set,
a Python callback does the same through :class:`PandaCPU`. Callbacks run
on PANDA's emulation thread.

Starting the guest daemon (``inject=``): by default the extension's own C
injector (``csrc/python/py_panda_inject.c``, registered through pandare's
ffi on syscalls2 and PANDA's start_block_exec; no plugin of ours needs to
be compiled into PANDA); or pandagpm's ``linjector`` PANDA plugin if this
PANDA has it (``inject="plugin"``); or nothing (``inject="none"``, then
:func:`start_guest_daemon`). See docs/panda.md.
"""

import os
import shutil
import tempfile
import threading
import warnings
import weakref

from . import _gpm
from .manager import GuestPluginManager, arch_info, find_plugin

__all__ = [
    "PandaHost", "PandaCPU", "attach", "load_guest_plugin",
    "start_guest_daemon", "is_pandare", "x86_64_check_user_write",
    "x86_64_check_user_read",
    "register_map",
]

#: The names our callbacks are registered under in pandare.
CALLBACK_NAME = "pandagpm_guest_hypercall"
LOADVM_CALLBACK_NAME = "pandagpm_after_loadvm"
INJ_BLOCK_NAME = "pandagpm_inject_block"

#: The PANDA plugins the injector needs.
_OSI_PLUGINS = ("syscalls2", "osi", "osi_linux")

_HOST_ATTR = "_pandagpm_host"

def register_map(arch):
    """GDB register number -> (field path, index) in ``CPUArchState``.

    ``index`` is None for a scalar field. Covers the general-purpose
    registers and the program counter: what the core uses. The layout is
    the arch backend's (``_gpm.arch_info(arch)``, csrc/arch); arches
    without a backend yet keep their map here.
    """
    try:
        info = _gpm.arch_info(arch)
    except (_gpm.Error, ValueError):
        info = {}
    if info.get("backend") and info.get("env_gpr_field"):
        field = (info["env_gpr_field"],)
        regs = {n: (field, q) for n, q in enumerate(info["env_gpr_index"])}
        if info["env_pc_field"]:
            regs[info["pc_reg"]] = ((info["env_pc_field"],), None)
    elif arch == "i386":
        regs = {n: (("regs",), n) for n in range(8)}
        regs[8] = (("eip",), None)
    elif arch in ("mips", "mipsel", "mips64", "mips64el"):
        regs = {n: (("active_tc", "gpr"), n) for n in range(32)}
        regs[37] = (("active_tc", "PC"), None)
    elif arch == "ppc":
        regs = {n: (("gpr",), n) for n in range(32)}
        regs[64] = (("nip",), None)
    else:
        raise ValueError(f"pandagpm has no register map for {arch!r}")
    return regs


# QEMU's HF_LMA_MASK (long mode) and CR4.LA57 (5-level paging).
_HF_LMA = 1 << 14
_CR4_LA57 = 1 << 12


def x86_64_check_user_write(cr3, la57, va, length, phys_read):
    """May guest user mode write ``[va, va + length)``? (x86_64 paging)

    ``phys_read(paddr, n)`` returns ``n`` bytes of guest physical memory or
    None. Returns 0, ``_gpm.EFAULT`` (a page not present, a supervisor
    page, a non-canonical address) or ``_gpm.EROFS`` (present and user but
    read-only at some level: the zero page, copy-on-write). The one
    x86_64 walker of csrc/arch, through ``_gpm.mmu_check_user()``.
    """
    return _gpm.mmu_check_user("x86_64", (cr3, _CR4_LA57 if la57 else 0),
                               va, length, True, phys_read)


def x86_64_check_user_read(cr3, la57, va, length, phys_read):
    """May guest user mode read ``[va, va + length)``? 0 or ``_gpm.EFAULT``
    (``gpm_x86_64_check_user_read()``): libpanda translates kernel pages
    too, so without it a guest program could make the host read kernel
    memory."""
    return _gpm.mmu_check_user("x86_64", (cr3, _CR4_LA57 if la57 else 0),
                               va, length, False, phys_read)


class PandaCPU:
    """The CPU object ``Manager.dispatch()`` needs, over one ``CPUState``.

    ``panda`` needs only ``ffi`` (pandare's cffi types for the target) and
    ``libpanda`` (the ``*_external`` memory functions), so tests can pass a
    stand-in for libpanda. Call :meth:`bind` with the ``CPUState *`` of the
    stopped CPU before dispatching; the object is only valid while PANDA
    keeps that CPU stopped in a callback. Failures are returned as negative
    GPM_E* ints, which the extension passes to the core unchanged.
    """

    def __init__(self, panda, arch):
        self._ffi = panda.ffi
        self._lib = panda.libpanda
        self.arch = arch
        self._regs = register_map(arch)
        self._mask = (1 << _gpm.arch_info(arch)["word_bits"]) - 1
        self._x86_64 = arch == "x86_64"
        self.cpu = None
        self._env = None

    def bind(self, cpu):
        """Use ``cpu`` (a cffi ``CPUState *``) for the following calls."""
        self.cpu = cpu
        self._env = cpu.env_ptr

    def unbind(self):
        """Forget the CPU (it runs again)."""
        self.cpu = None
        self._env = None

    def _slot(self, regno):
        loc = self._regs.get(regno)
        if loc is None:
            return None, None
        path, index = loc
        obj = self._env
        for name in path[:-1]:
            obj = getattr(obj, name)
        return (obj, path[-1]) if index is None else \
            (getattr(obj, path[-1]), index)

    def read_reg(self, regno):
        obj, key = self._slot(regno)
        if obj is None:
            return _gpm.EINVAL
        value = getattr(obj, key) if isinstance(key, str) else obj[key]
        return int(value) & self._mask

    def write_reg(self, regno, value):
        obj, key = self._slot(regno)
        if obj is None:
            return _gpm.EINVAL
        value &= self._mask
        if isinstance(key, str):
            setattr(obj, key, value)
        else:
            obj[key] = value
        return 0

    def _in_range(self, addr, length):
        return 0 <= addr and addr + max(length, 1) - 1 <= self._mask

    def read_mem(self, addr, length):
        if length == 0:
            return b""
        if not self._in_range(addr, length):
            return _gpm.EFAULT
        if self._x86_64 and self._env.hflags & _HF_LMA:
            rc = x86_64_check_user_read(
                int(self._env.cr[3]), bool(self._env.cr[4] & _CR4_LA57),
                addr, length, self._phys_read)
            if rc:
                return rc
        buf = self._ffi.new("char[]", length)
        if self._lib.panda_virtual_memory_read_external(
                self.cpu, addr, buf, length) != 0:
            return _gpm.EFAULT
        return self._ffi.buffer(buf, length)[:]

    def _phys_read(self, paddr, length):
        buf = self._ffi.new("uint8_t[]", length)
        if self._lib.panda_physical_memory_read_external(paddr, buf,
                                                         length) != 0:
            return None
        return self._ffi.buffer(buf, length)[:]

    def write_mem(self, addr, data):
        length = len(data)
        if length == 0:
            return 0
        if not self._in_range(addr, length):
            return _gpm.EFAULT
        fail = _gpm.EROFS
        if self._x86_64 and self._env.hflags & _HF_LMA:
            rc = x86_64_check_user_write(
                int(self._env.cr[3]), bool(self._env.cr[4] & _CR4_LA57),
                addr, length, self._phys_read)
            if rc:
                return rc
            fail = _gpm.EFAULT  # checked: a failure now is not a retry
        buf = self._ffi.new("char[]", bytes(data))
        if self._lib.panda_virtual_memory_write_external(
                self.cpu, addr, buf, length) != 0:
            return fail
        return 0


def is_pandare(obj):
    """True if ``obj`` is a pypanda ``Panda`` (without importing pandare)."""
    return any(c.__module__.split(".")[0] == "pandare" and c.__name__ ==
               "Panda" for c in type(obj).__mro__)


# CPUArchState's name per architecture in pandare's cffi definitions.
_ENV_TYPES = {"x86_64": "CPUX86State", "i386": "CPUX86State",
              "arm": "CPUARMState", "aarch64": "CPUARMState",
              "mips": "CPUMIPSState", "mipsel": "CPUMIPSState",
              "mips64": "CPUMIPSState", "mips64el": "CPUMIPSState",
              "ppc": "CPUPPCState"}


def _fn_address(ffi, fn):
    """The address of a C function (a cffi function or pointer)."""
    return int(ffi.cast("uintptr_t", fn))


def _arch_of(panda):
    arch = getattr(panda, "arch_name", None)
    if arch is None:
        raise ValueError(f"{panda!r} has no arch_name")
    return arch


class PandaHost:
    """pandagpm attached to one pypanda ``Panda``.

    Owns a :class:`~pandagpm.GuestPluginManager` (``.gpm``; ``.manager`` is
    its ``_gpm.Manager``, so this object is itself a host for
    GuestPluginManager) and registers the hypercall callback at once.

    ``inject``: "auto" uses the extension's C injector when this PANDA has
    syscalls2, osi and osi_linux (x86_64), else pandagpm's ``linjector``
    PANDA plugin if it is there, else warns; "extension" and "plugin"
    require theirs (``RuntimeError`` saying what is missing); "none" leaves
    starting the daemon to the caller (see :func:`start_guest_daemon`).
    ``daemon_path`` overrides the daemon found on the plugin search path;
    ``proc_name`` and ``require_root`` go to the injector.

    Use :func:`attach` rather than the constructor: one host per Panda.
    """

    def __init__(self, panda, *, inject="auto", daemon_path=None,
                 proc_name=None, require_root=False):
        if inject not in ("auto", "extension", "plugin", "none"):
            raise ValueError(f"inject must be auto, extension, plugin or "
                             f"none, not {inject!r}")
        self.panda = panda
        self.arch = _arch_of(panda)
        self.fast = False
        self.injector = None
        #: True when hypercalls carry the caller's tgid (channel ownership).
        self.ownership = False
        self._new_manager()
        self.cpu = PandaCPU(panda, self.arch)
        fn = self._hc_fn = self._install_c_hot_path()
        if fn is not None:
            # No Python per hypercall: PANDA calls the extension's C code.
            panda.register_callback(panda.callback.guest_hypercall, fn,
                                    CALLBACK_NAME)
            self.fast = True
        else:
            panda.cb_guest_hypercall(name=CALLBACK_NAME)(self._on_hypercall)
        panda.cb_after_loadvm(name=LOADVM_CALLBACK_NAME)(self._on_loadvm)
        if inject != "none":
            self._inject(inject, daemon_path, proc_name, require_root)

    def __repr__(self):
        return (f"<pandagpm.PandaHost arch={self.arch} "
                f"injector={self.injector}>")

    def _new_manager(self):
        self.gpm = GuestPluginManager(arch=self.arch)
        self.manager = self.gpm.manager
        # The daemon looks its channel up as soon as it starts.
        self.manager.daemon_channel()
        if self.fast:
            self._install_c_hot_path()
            self._enable_ownership()

    def _install_c_hot_path(self):
        """Points the extension's C hypercall callback at this manager.

        Offsets come from pandare's own cffi types and the memory functions
        are libpanda's; returns the callback as a cffi function pointer, or
        None (the Python path is used) if anything needed is missing or
        PANDAGPM_PYTHON_HYPERCALLS is set.
        """
        if os.environ.get("PANDAGPM_PYTHON_HYPERCALLS"):
            return None
        ffi, lib = self.panda.ffi, self.panda.libpanda
        names = ("panda_virtual_memory_read_external",
                 "panda_virtual_memory_write_external",
                 "panda_physical_memory_read_external")
        # Only libpanda's own C functions will do (not a stand-in's).
        if not all(isinstance(getattr(lib, n, None), ffi.CData)
                   for n in names):
            return None
        try:
            env = _ENV_TYPES[self.arch]
            regs = {}
            for regno, (path, index) in register_map(self.arch).items():
                fields = path + ((index,) if index is not None else ())
                regs[regno] = ffi.offsetof(env, *fields)
            x86_64 = self.arch == "x86_64"
            addr = _gpm.panda_hc_install(
                self.manager, ffi.offsetof("CPUState", "env_ptr"), regs,
                arch_info(self.arch)["word_bits"] // 8,
                _fn_address(ffi, lib.panda_virtual_memory_read_external),
                _fn_address(ffi, lib.panda_virtual_memory_write_external),
                _fn_address(ffi, lib.panda_physical_memory_read_external),
                ffi.offsetof(env, "cr", 3) if x86_64 else None,
                ffi.offsetof(env, "cr", 4) if x86_64 else None,
                ffi.offsetof(env, "hflags") if x86_64 else None)
        except (AttributeError, KeyError, TypeError, ffi.error) as err:
            warnings.warn(f"pandagpm: hypercalls go through Python ({err})",
                          RuntimeWarning, stacklevel=3)
            return None
        return ffi.cast("bool(*)(CPUState *)", addr)

    def _on_loadvm(self, cpu):
        """A snapshot was loaded (a revert, ``-loadvm``, replay start).

        If the guest had talked to us, that guest state is gone: start over
        with a new manager (and close the old channels), as the stock-QEMU
        host does after a revert. Plugins loaded before the guest's first
        hypercall (e.g. before ``run()``) are kept.
        """
        if self.injector == "extension":
            # Every restored guest state gets a daemon.
            _gpm.panda_inj_restart()
        if self.gpm.stats()["hypercalls"] == 0:
            return
        old = self.gpm
        self._new_manager()
        old.close()

    def _on_hypercall(self, cpu):
        c = self.cpu
        c.bind(cpu)
        try:
            return self.gpm.dispatch(c)
        finally:
            c.unbind()

    def daemon_path(self):
        """The guest daemon binary for this guest's architecture."""
        return find_plugin("guest_daemon", self.arch).path

    def _plugin_file(self, name):
        return os.path.join(self.panda.get_plugin_path(), f"panda_{name}.so")

    def _inject(self, mode, daemon_path, proc_name, require_root):
        if mode == "extension" or (mode == "auto" and self.fast
                                   and self.arch == "x86_64"
                                   and all(os.path.exists(self._plugin_file(p))
                                           for p in _OSI_PLUGINS)):
            self._inject_extension(daemon_path, proc_name, require_root)
            return
        so = self._plugin_file("linjector")
        if not os.path.exists(so):
            msg = (f"pandagpm: {so} not found, so nothing will start the "
                   "guest daemon; build pandagpm's PANDA plugins (make "
                   "panda-plugins PANDA_PATH=..., docs/panda.md) or call "
                   "pandagpm.panda_host.start_guest_daemon(panda) from a "
                   "@panda.queue_blocking function")
            if mode == "plugin":
                raise RuntimeError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
            return
        # "-n": linjector detaches the daemon itself, no fork needed.
        args = {"guest_binary": daemon_path or self.daemon_path(),
                "args": "-n"}
        if proc_name:
            args["proc_name"] = proc_name
        if require_root:
            args["require_root"] = "true"
        self.panda.load_plugin("linjector", args=args)
        self.injector = "linjector"

    def _require_plugins(self):
        """Loads syscalls2, osi and osi_linux, or raises what to do.

        PANDA aborts the whole process when a plugin fails to load, so
        every precondition is checked here first.
        """
        p = self.panda
        missing = [n for n in _OSI_PLUGINS
                   if not os.path.exists(self._plugin_file(n))]
        if missing:
            raise RuntimeError(
                f"pandagpm: this PANDA has no {', '.join(missing)} plugin "
                f"in {p.get_plugin_path()}; the injector needs syscalls2, "
                "osi and osi_linux")
        if not p._plugin_loaded("syscalls2") and not getattr(p, "os", None):
            raise RuntimeError(
                "pandagpm: syscalls2 needs an OS profile: make the Panda "
                "with os_version=... (e.g. pandagpm.pypanda.Panda(), which "
                "sets it for pandagpm's images)")
        if not p._plugin_loaded("osi_linux"):
            raise RuntimeError(
                "pandagpm: load osi_linux with a kernel profile before the "
                "injector (panda.load_plugin('osi', {'disable-autoload': "
                "'true'}) then panda.load_plugin('osi_linux', "
                "{'kconf_file': ..., 'kconf_group': ...}); "
                "pandagpm.pypanda.Panda() does this for pandagpm's images)")
        for n in _OSI_PLUGINS:
            if not p._plugin_loaded(n):
                p.load_plugin(n)

    def _inject_extension(self, daemon_path, proc_name, require_root):
        """Start the daemon with the extension's C injector (no plugin of
        ours in PANDA): syscalls2's on_all_sys_enter and an instruction
        hook on the kernel's SYSCALL entry, all in C."""
        if not self.fast:
            raise RuntimeError("pandagpm: the C injector needs the C "
                               "hypercall path (unset "
                               "PANDAGPM_PYTHON_HYPERCALLS)")
        if self.arch != "x86_64":
            raise RuntimeError(f"pandagpm: injection on {self.arch} under "
                               "PANDA is not supported yet")
        self._require_plugins()
        p, ffi = self.panda, self.panda.ffi
        osi = p.plugins["osi"]
        with open(daemon_path or self.daemon_path(), "rb") as f:
            elf = f.read()
        layout = {
            "thread_tid": ffi.offsetof("OsiThread", "tid"),
            "thread_pid": ffi.offsetof("OsiThread", "pid"),
            "proc_ppid": ffi.offsetof("OsiProc", "ppid"),
            "proc_name": ffi.offsetof("OsiProc", "name"),
            "proc_pages": ffi.offsetof("OsiProc", "pages"),
            "pid_bytes": ffi.sizeof("target_pid_t"),
        }
        cbs = _gpm.panda_inj_callbacks()
        self._inj_cbs = {
            "sys_enter": ffi.cast("on_all_sys_enter_t",
                                  cbs["on_all_sys_enter"]),
            "block": ffi.cast("void(*)(CPUState *, TranslationBlock *)",
                              cbs["start_block_exec"]),
        }
        # Enabled by the C code only for the block after a hijacked SYSCALL.
        p.register_callback(p.callback.start_block_exec,
                            self._inj_cbs["block"], INJ_BLOCK_NAME,
                            enabled=False)
        reg = p.registered_callbacks[INJ_BLOCK_NAME]
        lib = p.libpanda
        _gpm.panda_inj_install(
            elf, ["-n"],
            _fn_address(ffi, ffi.addressof(osi, "get_current_thread")),
            _fn_address(ffi, ffi.addressof(osi, "get_current_process")),
            layout, _fn_address(ffi, lib.panda_enable_callback_helper),
            _fn_address(ffi, lib.panda_disable_callback_helper),
            int(ffi.cast("uintptr_t", reg["handle"])),
            reg["callback"].number, int(ffi.cast("uintptr_t", reg["pcb"])),
            proc_name, bool(require_root))
        p.plugins["syscalls2"].ppp_add_cb_on_all_sys_enter(
            self._inj_cbs["sys_enter"])
        self.injector = "extension"
        self._enable_ownership()

    def _enable_ownership(self):
        """Tell the C path how to read each hypercall's caller, so channel
        ownership is enforced (docs/security.md): on pandagpm's images the
        profile names CPU 0's current task and task_struct.tgid (one
        vCPU). Only with the extension's injector, which hands the daemon
        channel to the process it starts; elsewhere callers stay unknown
        and the original, unchecked behaviour applies."""
        img = getattr(self.panda, "pandagpm_image", None)
        if not (self.fast and self.injector == "extension" and img):
            self.ownership = False
            return
        k = img.profile["kernel"]
        slot = int(k["per_cpu_offset0"], 16) + int(k["symbols"]["current_task"], 16)
        _gpm.panda_hc_set_task(slot, int(k["offsets"]["task_struct"]["tgid"]))
        self.ownership = True

    def injection_status(self):
        """The C injector's state: a dict with ``state`` ("none",
        "waiting", "running", "done" or "failed"), ``tgid`` and ``child``
        of the last success, ``attempts``, ``failed`` and ``last_error``."""
        return _gpm.panda_inj_status()

    def load_guest_plugin(self, name, callback=None, path=None, **kwargs):
        """:meth:`pandagpm.GuestPluginManager.load_guest_plugin`."""
        return self.gpm.load_guest_plugin(name, callback, path, **kwargs)

    def close(self):
        """Unregister the hypercall callback and close every channel."""
        if self.injector == "extension":
            _gpm.panda_inj_uninstall()
            try:
                self.panda.plugins["syscalls2"].ppp_remove_cb_on_all_sys_enter(
                    self._inj_cbs["sys_enter"])
                self.panda.delete_callback(INJ_BLOCK_NAME)
            except Exception:  # PANDA is shutting down
                pass
            self.injector = None
        if self.fast:
            _gpm.panda_hc_uninstall()
        try:
            self.panda.delete_callback(CALLBACK_NAME)
            self.panda.delete_callback(LOADVM_CALLBACK_NAME)
        finally:
            self.gpm.close()
            if getattr(self.panda, _HOST_ATTR, None) is self:
                delattr(self.panda, _HOST_ATTR)


def _make_host(panda, kwargs):
    host = getattr(panda, _HOST_ATTR, None)
    if host is None:
        host = PandaHost(panda, **kwargs)
        setattr(panda, _HOST_ATTR, host)
    return host


def attach(panda, timeout=60, **kwargs):
    """The :class:`PandaHost` of ``panda``, made on first use.

    ``kwargs`` go to :class:`PandaHost` and only count the first time.
    Called while the guest runs (from a ``@panda.queue_blocking``
    function), the host is made on PANDA's main loop, between two slices
    of guest execution, because registering callbacks and loading the
    linjector plugin must not race the CPU thread; this waits up to
    ``timeout`` seconds for it.
    """
    host = getattr(panda, _HOST_ATTR, None)
    if host is not None:
        return host
    running = getattr(panda, "running", None)
    if (running is None or not running.is_set()
            or threading.current_thread() is threading.main_thread()):
        return _make_host(panda, kwargs)
    done = threading.Event()
    box = {}

    def make():
        try:
            box["host"] = _make_host(panda, kwargs)
        except BaseException as err:  # handed to the waiting thread
            box["err"] = err
        finally:
            done.set()

    panda.queue_main_loop_wait_fn(make)
    if not done.wait(timeout):
        raise TimeoutError(f"pandagpm: PANDA's main loop did not run within "
                           f"{timeout} s to attach the host")
    if "err" in box:
        raise box["err"]
    return box["host"]


def load_guest_plugin(host, name, callback=None, path=None, **kwargs):
    """Run guest plugin ``name`` on ``host``; returns its Channel.

    ``host`` is a pypanda ``Panda`` (attached with :func:`attach` on first
    use), an object with its own ``load_guest_plugin(name, callback, path,
    **kwargs)`` (pandagpm's stock-QEMU host), or any host a
    :class:`~pandagpm.GuestPluginManager` accepts. ``callback(channel_id,
    msg)`` receives what the plugin writes (see
    :func:`pandagpm.channel_recv`); it runs on the emulator thread.
    """
    if is_pandare(host):
        return attach(host).load_guest_plugin(name, callback, path, **kwargs)
    own = getattr(host, "load_guest_plugin", None)
    if callable(own):
        return own(name, callback, path, **kwargs)
    return _manager_for(host).load_guest_plugin(name, callback, path,
                                                **kwargs)


# One GuestPluginManager per host object that cannot carry an attribute
# (slots, C types): kept as long as the host lives, so its channels keep
# getting events and see end of file.
_MANAGERS = weakref.WeakKeyDictionary()
_MANAGERS_BY_ID = {}


def _manager_for(host):
    gpm = getattr(host, "_pandagpm_gpm", None)
    if gpm is not None:
        return gpm
    try:
        gpm = _MANAGERS.get(host)
    except TypeError:  # not weakly referenceable: keep it by identity
        gpm = _MANAGERS_BY_ID.get(id(host), (None, None))[1]
    if gpm is not None:
        return gpm
    gpm = GuestPluginManager(host)
    try:
        setattr(host, "_pandagpm_gpm", gpm)
    except AttributeError:
        try:
            _MANAGERS[host] = gpm
        except TypeError:
            _MANAGERS_BY_ID[id(host)] = (host, gpm)
    return gpm


def start_guest_daemon(panda, path=None, guest_dir="pandagpm_daemon"):
    """Start the guest daemon through the serial console (no linjector).

    Blocking: call it from a ``@panda.queue_blocking`` function after
    ``revert_sync``. Copies the daemon in with pandare's ``copy_to_guest``
    (an ISO on the CD drive) and runs it detached. Returns the shell output.
    """
    host = attach(panda, inject="none")
    src = path or host.daemon_path()
    tmp = tempfile.mkdtemp(prefix="pandagpm-")
    try:
        stage = os.path.join(tmp, guest_dir)
        os.mkdir(stage)
        shutil.copy2(src, os.path.join(stage, "guest_daemon"))
        panda.copy_to_guest(stage, iso_name=os.path.join(tmp, "d.iso"))
        return panda.run_serial_cmd(
            f"chmod +x {guest_dir}/guest_daemon && "
            f"(setsid {guest_dir}/guest_daemon </dev/null >/dev/null 2>&1 &)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
