"""The stock-QEMU host, shaped like pypanda's ``Panda`` object.

A script written for pypanda ports by changing one import line::

    from pandare import Panda        # PANDA
    from pandagpm.host import Panda  # stock QEMU through its gdbstub

``Panda(generic="x86_64")`` builds or reuses the generic image; ``run()``
boots it from its ``root`` snapshot and runs the functions queued with
``@panda.queue_blocking`` one after another on a worker thread; as with
pypanda, emulation goes on until something calls ``end_analysis()``.

Hypercalls are served in C on the gdbstub host's I/O thread; Python runs
only in channel callbacks. ``load_guest_plugin`` injects the guest daemon
with linjector on first use after each revert, then asks it to start the
plugin.
"""

import concurrent.futures
import os
import sys
import threading
import time
import traceback

from . import _gpm, _paths
from . import image as _image
from . import wire as _wire
from . import qemu as _qemu
from .errors import (CalledFromCallback, DaemonLost, GpmError, Timeout,
                     from_code, wrap)
from .manager import OWNER_ANY, OWNER_PENDING, GuestPluginManager

__all__ = ["Panda", "InjectionFailed", "PluginStartFailed"]

# How long linjector waits for a process to enter a system call.
DEFAULT_INJECT_TIMEOUT = 30.0
# How long the injected daemon may take to say HELLO.
DEFAULT_DAEMON_TIMEOUT = 30.0
# After this long without a target, Enter is pressed on the console.
NUDGE_AFTER = 0.5
# How long a daemon believed alive has to answer a PING (or to take any
# queued byte) before it is taken for lost.
PING_TIMEOUT = 5.0
# While a load waits, the daemon is PINGed after this long without a word.
PING_PERIOD = 1.0
# Waits are cut into slices this long, to notice a lost emulator quickly.
WAIT_SLICE = 0.05
# Guest time: a PING wait is extended by the time the guest is seen
# stopped (a callback that takes long), by this much at most.
STOPPED_GRACE = 60.0
# How long load_guest_plugin waits for the daemon's STARTED or FAILED.
DEFAULT_START_TIMEOUT = 30.0
# How often the emulator watcher checks that QEMU still runs.
WATCH_PERIOD = 0.2
# Lines of one kind of guest event logged per second at most.
LOG_BURST = 5
# A PING frame of the daemon protocol (gpm/wire.h, gpm/daemon_proto.h).
_PING = _wire.daemon_frame(_wire.DFRAME_PING)
# GPM_DSTAGE_LOST: the host failed a load because its daemon was lost.
_DSTAGE_LOST = _wire.DSTAGE_LOST



def rings_wanted(rings=None):
    """Whether to offer the guest channel rings: @rings if given, else
    ``PANDAGPM_RINGS`` ("0" turns them off; default on)."""
    if rings is not None:
        return bool(rings)
    return os.environ.get("PANDAGPM_RINGS", "1") != "0"

class InjectionFailed(GpmError):
    """linjector could not start the guest daemon; ``.log`` says why."""

    default_code = _gpm.ECANCELED

    def __init__(self, message=None, code=None, log=()):
        super().__init__(message, code)
        self.log = list(log)


class PluginStartFailed(GpmError):
    """The guest daemon reported that a plugin could not start."""

    default_code = _gpm.ENOEXEC

    def __init__(self, message=None, code=None, err=0, stage=0):
        super().__init__(message, code)
        self.err = err
        self.stage = stage


def _kernel_profile(profile, arch="x86_64"):
    """The fields linjector and the task lookup need, from an image profile.

    Which kernel symbols to use is the arch backend's fact
    (``_gpm.arch_info(arch)``); their addresses and the struct offsets
    come from the image's profile.
    """
    info = _gpm.arch_info(arch)
    k = profile["kernel"]
    sym = k["symbols"]
    task = k["offsets"]["task_struct"]

    def symbol(name):
        if name not in sym:
            raise GpmError(f"the {arch} image profile has no address for "
                           f"{name!r} (rebuild the image?)", _gpm.ENOENT)
        return int(sym[name], 16)

    current = symbol(info["current_task_symbol"])
    base_reg = info["user_percpu_reg"]
    if base_reg is None:
        # No register holds the per-CPU base in user mode (i386): the
        # profile's __per_cpu_offset[0] is the constant base of the one
        # vCPU, and the hosts get the variable's address ("" register).
        try:
            current = (current + int(k["per_cpu_offset0"], 16)) & (
                (1 << info.get("word_bits", 64)) - 1)
        except KeyError:
            raise GpmError(f"the {arch} image profile has no "
                           "per_cpu_offset0 (rebuild the image?)",
                           _gpm.ENOENT) from None
        base_reg = ""
    bounce = {}
    if info.get("bounce_entry_symbol"):
        # An entry the injector cannot rewind (i386's sysenter): its calls
        # are bounced into the main entry (docs/arch.md).
        bounce = {"bounce_entry": symbol(info["bounce_entry_symbol"]),
                  "bounce_exit": symbol(info["bounce_exit_symbol"])}
    return {
        **bounce,
        # The entry symbol, and the alternatives this kernel has.
        "entry_syscall": [symbol(info["syscall_entry_symbols"][0])] + [
            int(sym[s], 16) for s in info["syscall_entry_symbols"][1:]
            if s in sym],
        "current_task": current,
        "task_base_reg": base_reg,
        "task_pid": task["pid"],
        "task_tgid": task["tgid"],
        "task_comm": task["comm"],
        "task_real_parent": task["real_parent"],
        "task_cred": task["cred"],
        "cred_uid": k["offsets"]["cred"]["uid"],
    }


def _mmu_inputs(profile, arch):
    """The page walk's constant inputs (``kernel.mmu_inputs``) of an arch
    whose walker reads no registers."""
    try:
        return [int(v, 16) for v in profile["kernel"]["mmu_inputs"]]
    except KeyError:
        raise GpmError(f"the {arch} image profile has no mmu_inputs "
                       "(rebuild the image?)", _gpm.ENOENT) from None


class Panda:
    """A generic image under stock QEMU, with pypanda's shape.

    Threads: ``run()`` blocks its caller; queued functions run on one
    worker thread; channel callbacks run on the gdbstub host's I/O thread
    and must not wait for the guest: the calls that would
    (``load_guest_plugin``, ``ensure_daemon``, ``revert_sync``,
    ``run_serial_cmd``) raise CalledFromCallback there at once;
    ``load_guest_plugin_async`` is the form for callbacks.

    Channel ownership (docs/security.md): the daemon channel only takes
    hypercalls from the daemon this object injected, and a plugin's main
    channel only from that plugin's process. ``compat_channels=True``
    turns the checks off, for guest binaries built with the original
    channel library.
    """

    def __init__(self, generic="x86_64", *, snapshot="root", verbose=True,
                 inject_timeout=DEFAULT_INJECT_TIMEOUT, doorbell=True,
                 compat_channels=False, rings=None):
        self.arch_name = generic
        self.snapshot = snapshot
        self.verbose = verbose
        self.inject_timeout = inject_timeout
        # False makes waiting guest code poll with hypercalls (benchmarks).
        self.doorbell = doorbell
        # Shared-memory channel rings (docs/rings.md): None follows
        # PANDAGPM_RINGS (default on; "0" turns them off).
        self.rings = rings_wanted(rings)
        self.compat_channels = compat_channels
        self.image = _image.get_image(generic, progress=verbose)
        self.machine = None
        self.gdb = None
        self.gpm = None
        self._queue = []
        self._ended = threading.Event()
        self._daemon_ready = threading.Event()
        self._loads = {}  # plugin name -> [threading.Event, Event or None]
        self._daemon_pid = None
        self._injected = False
        self._lock = threading.RLock()
        self.last_injection = None
        self.emulator_lost = threading.Event()
        self._last_word = 0.0  # monotonic time of the daemon's last frame
        self._log_window = {}  # kind -> (window start, shown, hidden)

    def __repr__(self):
        state = "running" if self.machine is not None else "stopped"
        return f"<pandagpm.host.Panda {self.arch_name} {state}>"

    def _log(self, msg):
        if self.verbose:
            print(f"[pandagpm] {msg}", file=sys.stderr, flush=True)

    # Emulation.

    def queue_blocking(self, func):
        """Decorator: run ``func`` on the worker thread during ``run()``."""
        self._queue.append(func)
        return func

    def start(self):
        """Boots the image from its snapshot and attaches the host."""
        with self._lock:
            if self.machine is None:
                self.machine = _qemu.QemuMachine(self.image,
                                                 snapshot=self.snapshot)
                self.machine.start()
                self._attach()
                self.emulator_lost.clear()
                threading.Thread(target=self._watch, args=(self.machine,),
                                 daemon=True, name="pandagpm-watch").start()
        return self

    def _watch(self, machine):
        """Ends every channel once QEMU is gone, so no reader waits forever.

        Runs until the machine stops or dies; a machine stopped by close()
        is not a loss.
        """
        while machine.is_running():
            time.sleep(WATCH_PERIOD)
        if self.machine is not machine:
            return  # closed on purpose
        self._log("QEMU is gone: every call in flight fails")
        gpm = self.gpm
        if gpm is not None:
            gpm.lose_all_channels(_qemu.QemuGone(
                "QEMU exited; revert_sync() starts a new one"))
        self.emulator_lost.set()

    def _attach(self):
        """A fresh manager and gdbstub host for the current guest state."""
        self.gpm = GuestPluginManager(arch=self.arch_name)
        self.gpm.on_event(self._on_event)
        _paths.register()
        if self.compat_channels:
            self.gpm.manager.set_ownership(False)
        # The daemon looks this channel up as soon as it starts.
        self.gpm.manager.daemon_channel()
        with wrap():
            self.gdb = _gpm.GdbHost(self.gpm.manager,
                                    self.machine.gdb_socket_path,
                                    self.machine.ram_path,
                                    self.machine.ram_size, self.arch_name,
                                    ram_base=getattr(self.machine, "ram_base",
                                                     0))
            self.gdb.start()
            # Lets waiting guest code sleep without hypercalls.
            doorbell = self.image.profile["guest"].get("doorbell_phys", 0)
            if doorbell and self.doorbell:
                self.gdb.enable_doorbell(doorbell)
            # Channel bytes through memory, without stopping the guest.
            guest = self.image.profile["guest"]
            if self.rings and guest.get("ring_size"):
                self.gdb.enable_rings(guest["ring_phys"], guest["ring_size"])
            # Which guest process makes each hypercall (channel ownership).
            k = _kernel_profile(self.image.profile, self.arch_name)
            self.gdb.set_task_profile(k["task_base_reg"], k["current_task"],
                                      k["task_tgid"])
            # A walker that reads no registers (MIPS) takes the image's
            # constants.
            if _gpm.arch_info(self.arch_name).get("mmu_inputs_const"):
                self.gdb.set_mmu_inputs(_mmu_inputs(self.image.profile,
                                                    self.arch_name))
        self._daemon_ready.clear()
        self._daemon_pid = None
        self._injected = False

    def _detach(self):
        if self.gdb is not None:
            self.gdb.close()
            self.gdb = None
        if self.gpm is not None:
            self.gpm.close()
            self.gpm = None

    def _on_event(self, ev):
        if ev.type in ("DAEMON_READY", "PLUGIN_STARTED", "PLUGIN_EXITED",
                       "PLUGIN_FAILED"):
            self._last_word = time.monotonic()
        if ev.type == "DAEMON_READY":
            self._daemon_pid = ev.pid
            self._daemon_ready.set()
        if ev.type in ("PLUGIN_STARTED", "PLUGIN_FAILED"):
            waiter = self._loads.get(ev.name)
            if waiter is not None:
                waiter[1] = ev
                waiter[0].set()
        if ev.type in ("PLUGIN_FAILED", "PROTOCOL_ERROR", "GUEST_ERROR"):
            self._log_limited(
                ev.type, f"{ev.type}: {ev.name or ''} {ev.text or ''}".strip())

    def _log_limited(self, kind, msg):
        """Logs at most LOG_BURST lines of one kind a second: any guest
        process can make GUEST_ERROR events as fast as it likes."""
        now = time.monotonic()
        start, shown, hidden = self._log_window.get(kind, (now, 0, 0))
        if now - start >= 1.0:
            if hidden:
                self._log(f"({hidden} more {kind} events not shown)")
            start, shown, hidden = now, 0, 0
        if shown < LOG_BURST:
            shown += 1
            self._log(msg)
        else:
            hidden += 1
        self._log_window[kind] = (start, shown, hidden)

    @property
    def manager(self):
        """The ``_gpm.Manager`` of the current guest state."""
        return self.gpm.manager if self.gpm is not None else None

    def run(self, timeout=None):
        """Boots the guest and runs the queued functions; blocks.

        Returns when something (a queued function, a channel callback)
        calls ``end_analysis()``, or raises Timeout after ``timeout``
        seconds. An exception in a queued function ends the analysis and
        is raised here.
        """
        self._ended.clear()
        errors = []

        def worker():
            try:
                while self._queue and not self._ended.is_set():
                    self._queue.pop(0)()
            except BaseException as err:  # reported to run()'s caller
                errors.append(err)
                traceback.print_exc()
                self._ended.set()

        self.start()
        t = threading.Thread(target=worker, name="pandagpm-queue",
                             daemon=True)
        t.start()
        try:
            if not self._ended.wait(timeout):
                raise Timeout(f"analysis still running after {timeout} s")
            t.join(5)
        finally:
            self.close()
        if errors:
            raise errors[0]

    def end_analysis(self):
        """Ends ``run()``; safe from any thread, callbacks included."""
        self._ended.set()

    def close(self):
        """Detaches and stops QEMU; idempotent."""
        with self._lock:
            self._detach()
            # Forget it first: the watcher must not take this for a loss.
            machine, self.machine = self.machine, None
            if machine is not None:
                machine.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # pypanda's guest helpers.

    def _not_in_callback(self, what):
        """Raises CalledFromCallback on the emulator's thread."""
        mgr = self.manager
        if mgr is not None and mgr.in_callback():
            raise CalledFromCallback(
                f"{what}() waits for the guest, but was called from a "
                "channel or event callback, which runs while the guest is "
                "stopped; use load_guest_plugin_async(), or call it from "
                "another thread")

    def _check_emulator(self):
        """Raises EmulatorConnectionLost (a QemuGone) once QEMU is gone."""
        if self.emulator_lost.is_set() or (
                self.machine is not None and not self.machine.is_running()):
            raise _qemu.QemuGone(
                "QEMU exited; revert_sync() starts a new one")

    def _guest_stopped(self):
        """Whether the guest is stopped now (e.g. a long callback runs), or
        a callback of a ring message is running (the rings wait for it)."""
        gdb = self.gdb
        try:
            st = gdb.stats() if gdb is not None else None
        except _gpm.Error:
            return False
        if st and st.get("connected") and not st.get("running"):
            return True
        # A slow callback of a ring message holds up every ring (the
        # daemon's too) while the guest runs: the host is not listening.
        try:
            return bool(self.gpm.manager.stats().get("ring_delivering"))
        except _gpm.Error:
            return False

    def _wait(self, event, timeout):
        """Waits for ``event`` up to ``timeout`` s of guest time; False on
        timeout. Time the guest spends stopped (a long callback) does not
        count, up to STOPPED_GRACE s, so a daemon is not taken for dead
        because the host held the CPU.

        Raises EmulatorConnectionLost as soon as QEMU is gone.
        """
        now = time.monotonic()
        deadline = now + timeout
        grace = STOPPED_GRACE
        while not event.is_set():
            self._check_emulator()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            t = time.monotonic()
            event.wait(min(left, WAIT_SLICE))
            if grace > 0 and self._guest_stopped():
                spent = time.monotonic() - t
                deadline += spent
                grace -= spent
        return True

    def revert_sync(self, snapshot="root"):
        """Reverts the guest to ``snapshot`` and waits for its shell.

        Channels and plugins of the previous guest state are gone. If QEMU
        died, a new one is started and the session goes on.
        """
        self._not_in_callback("revert_sync")
        with self._lock:
            if self.machine is not None and (
                    self.emulator_lost.is_set()
                    or not self.machine.is_running()):
                self._log("QEMU is gone: starting a new one")
                self.close()
        self.start()
        with self._lock:
            self._detach()
            t0 = time.monotonic()
            self.machine.revert(snapshot)
            self._attach()
            self._log(f"reverted to {snapshot!r} in "
                      f"{time.monotonic() - t0:.2f} s")

    def run_serial_cmd(self, cmd, timeout=30, no_timeout=False):
        """Runs ``cmd`` on the guest's serial console; returns its output.

        Raises EmulatorConnectionLost (a QemuGone) if QEMU is gone or
        exits meanwhile.
        """
        self._not_in_callback("run_serial_cmd")
        self._check_emulator()
        self.start()
        before = self._cpu_stats()
        try:
            return self.machine.run_serial_cmd(
                cmd, timeout=None if no_timeout else timeout)
        except _qemu.SerialTimeout as err:
            exc = _qemu.SerialTimeout(
                f"{err.args[0]}; {self._cpu_report(before)}")
            exc.output = err.output
            raise exc from err

    def _cpu_stats(self):
        """The gdbstub host's counters, or None without one."""
        try:
            return self.gdb.stats() if self.gdb is not None else None
        except _gpm.Error:
            return None

    def _cpu_report(self, before):
        """What the guest CPU did since ``before`` (for timeouts)."""
        now = self._cpu_stats()
        if not now or not before:
            return "no gdbstub host: the CPU's state is unknown"
        state = "running" if now.get("running") else "stopped"
        spent = (now["handler_ns"] - before["handler_ns"]) / 1e9
        return (f"the guest CPU is {state}; meanwhile the host counted "
                f"{now['stops'] - before['stops']} stops and "
                f"{now['hypercalls'] - before['hypercalls']} hypercalls "
                f"({spent:.2f} s handling them)")

    # Guest plugins.

    def ensure_daemon(self, timeout=None, proc_name=None, require_root=True,
                      nudge=True):
        """Injects the guest daemon once per boot or revert.

        linjector needs a process that enters a system call, and an idle
        guest makes none: its shell sits blocked in read(). With ``nudge``
        Enter is pressed on the serial console if the injection has not
        finished after half a second, which wakes the shell; a busy guest
        never needs it. Raises InjectionFailed with linjector's log, or
        Timeout if no matching process made a system call in time.

        A daemon that no longer answers is replaced, never joined by a
        second one: what was queued for it is dropped and the loads it
        owed fail (DaemonLost); the new daemon kills any older one before
        it starts serving, and the host accepts frames only from the
        process it injected.
        """
        self._not_in_callback("ensure_daemon")
        self._check_emulator()
        self.start()
        with self._lock:
            mgr = self.gpm.manager
            if self._injected:
                if self._daemon_answers():
                    return self._daemon_pid
                self._log(f"the guest daemon (pid {self._daemon_pid}) does "
                          "not answer; injecting a new one")
                self._injected = False
            # Nothing queued for an earlier daemon may reach the next one.
            with wrap():
                mgr.daemon_reset(OWNER_PENDING)
            self._daemon_ready.clear()
            timeout = self.inject_timeout if timeout is None else timeout
            info = self.gpm.find_plugin("guest_daemon")
            with open(info.path, "rb") as f:
                elf = f.read()
            self._log(f"injecting guest_daemon ({len(elf)} bytes)")
            t0 = time.monotonic()
            done = threading.Event()
            if nudge:
                threading.Thread(target=self._nudge, args=(done,),
                                 daemon=True, name="pandagpm-nudge").start()
            try:
                with wrap():
                    res = _gpm.inject(self.gdb, elf,
                                      _kernel_profile(self.image.profile,
                                                      self.arch_name),
                                      proc_name=proc_name,
                                      require_root=require_root,
                                      argv=["-n", "-r"], timeout=timeout)
            finally:
                done.set()
            self.last_injection = res
            for line in res["log"]:
                self._log(line)
            if res["state"] != "done":
                self._check_emulator()
                if res["state"] == "waiting" and res["code"] not in (
                        0, _gpm.ETIMEDOUT):
                    # linjector could not even start, e.g. QEMU is gone
                    # (ECONNRESET): that is not a timeout.
                    raise from_code(res["code"], "no injection: "
                                    f"{_gpm.strerror(res['code'])}")
                if res["state"] == "waiting":
                    who = "a root process" if require_root else "a process"
                    if proc_name:
                        who += f" named {proc_name!r}"
                    raise Timeout(
                        f"no injection: {who} made no system call within "
                        f"{timeout:g} s ({res['stops']} syscalls seen)")
                raise InjectionFailed(
                    f"linjector failed: {res['error'] or res['code_name']}",
                    log=res["log"])
            # Only the injected process may speak for the daemon.
            child = res.get("child", -1)
            with wrap():
                mgr.set_owner(mgr.daemon_channel(),
                              child if child and child > 0 else OWNER_ANY)
            if not self._wait(self._daemon_ready, DEFAULT_DAEMON_TIMEOUT):
                raise Timeout("the injected guest daemon did not say HELLO "
                              f"within {DEFAULT_DAEMON_TIMEOUT:g} s")
            self._injected = True
            self._log(f"guest daemon ready (pid {self._daemon_pid}) in "
                      f"{time.monotonic() - t0:.2f} s")
            return self._daemon_pid

    def _daemon_answers(self, timeout=PING_TIMEOUT):
        """PINGs the daemon; True if it says HELLO within ``timeout``.

        The PING is repeated every PING_PERIOD: a reply that a half frame
        of garbage swallowed is recovered once the next one arrives.
        """
        self._daemon_ready.clear()
        mgr = self.gpm.manager
        deadline = time.monotonic() + timeout
        while True:
            with wrap():
                mgr.write(mgr.daemon_channel(), _PING)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._wait(self._daemon_ready, min(left, PING_PERIOD)):
                return True

    def _nudge(self, done):
        """Presses Enter on the console once if the injection lingers."""
        if done.wait(NUDGE_AFTER):
            return
        try:
            self.machine.send_serial(b"\n")
            self._log("no system call yet: pressed Enter on the console")
        except Exception as err:  # the machine may be going away
            self._log(f"could not nudge the guest: {err}")

    def _daemon_lost(self, name, why):
        """Forgets a daemon that stopped answering; returns DaemonLost."""
        with self._lock:
            if self._injected:
                self._injected = False
                mgr = self.manager
                if mgr is not None:
                    with wrap():
                        mgr.daemon_reset(OWNER_PENDING)
        return DaemonLost(f"the guest daemon {why} while {name!r} was being "
                          "loaded; the request was dropped (loading again "
                          "injects a new daemon)")

    def _wait_started(self, name, waiter, start_timeout):
        """Waits for the daemon's answer about ``name``.

        Returns the event, or raises Timeout, EmulatorConnectionLost or
        DaemonLost (the daemon went quiet: no frame and no byte taken from
        its queue for PING_TIMEOUT after a PING).
        """
        mgr = self.gpm.manager
        daemon = mgr.daemon_channel()
        t0 = progress = time.monotonic()
        pending = mgr.pending(daemon)
        ping_at = None
        grace = STOPPED_GRACE
        while not waiter[0].wait(WAIT_SLICE):
            self._check_emulator()
            now = time.monotonic()
            if grace > 0 and self._guest_stopped():
                # The host holds the CPU: the daemon cannot answer.
                grace -= WAIT_SLICE
                progress += WAIT_SLICE
                if ping_at is not None:
                    ping_at += WAIT_SLICE
            if now - t0 > start_timeout:
                raise Timeout(f"the guest daemon did not start {name!r} "
                              f"within {start_timeout:g} s")
            with wrap():
                queued = mgr.pending(daemon)
            if queued != pending or self._last_word > progress:
                # The daemon reads its queue or talks: it is alive.
                pending, progress, ping_at = queued, now, None
            if ping_at is None and now - progress > PING_PERIOD:
                with wrap():
                    mgr.write(daemon, _PING)
                    pending = mgr.pending(daemon)
                ping_at = now
            elif ping_at is not None and now - ping_at > PING_TIMEOUT:
                raise self._daemon_lost(
                    name, f"did not answer for {PING_TIMEOUT:g} s")
        ev = waiter[1]
        if ev.type == "PLUGIN_FAILED" and ev.stage == _DSTAGE_LOST:
            raise self._daemon_lost(name, "was replaced")
        return ev

    def load_guest_plugin(self, name, callback=None, path=None, *,
                          wait=True, start_timeout=DEFAULT_START_TIMEOUT,
                          **kwargs):
        """Runs guest plugin ``name``; returns its Channel.

        Injects the daemon first if this guest state has none, or if the
        one it had no longer answers. With ``wait`` this returns once the
        daemon reports the plugin started, and raises PluginStartFailed
        (with the guest's errno and stage), DaemonLost (the daemon stopped
        answering meanwhile, noticed within seconds), EmulatorConnectionLost
        (QEMU exited; within a second) or Timeout otherwise; the plugin's
        channel is then closed. Must not be called from a callback (see
        :meth:`load_guest_plugin_async`).
        """
        self._not_in_callback("load_guest_plugin")
        self.ensure_daemon()
        waiter = [threading.Event(), None]
        if wait:
            self._loads[name] = waiter
        try:
            chan = self.gpm.load_guest_plugin(name, callback, path, **kwargs)
            if not wait:
                return chan
            try:
                ev = self._wait_started(name, waiter, start_timeout)
            except BaseException:
                self._close_quietly(chan)
                raise
            if ev.type == "PLUGIN_FAILED":
                self._close_quietly(chan)
                raise PluginStartFailed(
                    f"the guest could not start {name!r}: {ev.text} "
                    f"(errno {ev.err}, stage {ev.stage})", err=ev.err,
                    stage=ev.stage)
            chan.pid = ev.pid
            return chan
        finally:
            if self._loads.get(name) is waiter:
                self._loads.pop(name, None)

    def _close_quietly(self, chan):
        gpm = self.gpm
        try:
            if gpm is not None:
                gpm.close_channel(chan.id)
            else:
                chan.close()
        except GpmError:
            pass

    def load_guest_plugin_async(self, name, callback=None, path=None,
                                **kwargs):
        """:meth:`load_guest_plugin` on a thread of its own.

        Returns a ``concurrent.futures.Future`` whose result is the Channel
        (or whose exception is what load_guest_plugin raised). Safe to call
        from a channel or event callback: it never waits for the guest.
        """
        fut = concurrent.futures.Future()

        def run():
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(self.load_guest_plugin(name, callback, path,
                                                      **kwargs))
            except BaseException as err:  # handed to the future's owner
                fut.set_exception(err)

        threading.Thread(target=run, daemon=True,
                         name=f"pandagpm-load-{name}").start()
        return fut

    def add_guest_plugin(self, name, path=None, callback=None):
        """The original API: loads ``name``; returns its channel id."""
        return self.load_guest_plugin(name, callback, path).id

    def channel_write(self, channel_id, data):
        self.gpm.channel_write(channel_id, data)

    def get_channel_from_name(self, name):
        return self.gpm.get_channel_from_name(name)

    def allocate_channel(self, callback=None, name=None):
        return self.gpm.allocate_channel(callback, name)

