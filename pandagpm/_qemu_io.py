"""The stock-QEMU host's text channels: the serial console and QMP.

:mod:`pandagpm.qemu` drives them (and re-exports the errors, its public
API); this module holds the byte-level parts: :class:`_Serial`, one reader
thread and a bounded buffer per console, and :class:`_QMP`, the monitor's
JSON protocol. Any thread may call them; each serialises its own I/O.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from typing import Any, Callable


class QemuError(Exception):
    """Something went wrong talking to, or running, QEMU."""


try:
    from .errors import EmulatorConnectionLost as _ConnectionLost
except ImportError:  # the extension is not built (e.g. building an image)
    class _ConnectionLost(Exception):
        pass


class QemuGone(_ConnectionLost, QemuError):
    """QEMU exited (or its console or monitor closed) under a call.

    Both a :exc:`QemuError` and a
    :class:`pandagpm.errors.EmulatorConnectionLost`.
    """


class QemuStartError(QemuError):
    """QEMU did not start; the message includes QEMU's stderr."""


class SerialTimeout(QemuError, TimeoutError):
    """The guest did not answer on the serial console in time.

    ``output`` holds what the console printed meanwhile.
    """

    def __init__(self, msg: str, output: str = ""):
        if output:
            msg += f"; the console's last output: {output[-300:]!r}"
        super().__init__(msg)
        self.output = output


class GuestCommandError(QemuError):
    """A guest shell command exited with a non-zero status."""

    def __init__(self, cmd: str, status: int, output: str):
        super().__init__(f"guest command {cmd!r} exited with status "
                         f"{status}: {output[-500:]!r}")
        self.cmd = cmd
        self.status = status
        self.output = output


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


def _quote(s: str) -> str:
    """Quote ``s`` for the guest's POSIX shell."""
    return "'" + s.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------
# Serial console.
# --------------------------------------------------------------------------

class _Serial:
    """The guest's serial console: one reader thread, one buffer.

    Unconsumed output is capped at :attr:`MAX_BUFFER` bytes (the oldest
    is dropped) and the transcript in ``serial.log`` at :attr:`MAX_LOG`,
    so a guest that floods the console cannot exhaust host memory.
    """

    MAX_BUFFER = 1 << 20
    MAX_LOG = 16 << 20

    def __init__(self, sock: socket.socket, log_path: str | None = None):
        self._sock = sock
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._closed = False
        self._log = open(log_path, "ab") if log_path else None
        self._logged = 0
        self._thread = threading.Thread(target=self._reader, daemon=True,
                                        name="pandagpm-serial")
        self._thread.start()

    def _reader(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._closed = True
                    self._cond.notify_all()
                    return
                self._buf += data
                if len(self._buf) > self.MAX_BUFFER:
                    del self._buf[:len(self._buf) - self.MAX_BUFFER]
                if self._log is not None and self._logged < self.MAX_LOG:
                    try:
                        self._log.write(data)
                        self._log.flush()
                        self._logged += len(data)
                    except (OSError, ValueError):
                        pass
                self._cond.notify_all()

    def write(self, data: bytes, timeout: float = 60) -> None:
        """Send ``data``; raise :exc:`SerialTimeout` if the guest does not
        take it within ``timeout`` seconds (its input is full)."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = self._sock.send(view, socket.MSG_DONTWAIT)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except OSError as err:
                raise QemuError(f"serial console write failed: {err}") from err
            left = deadline - time.monotonic()
            if left <= 0:
                raise SerialTimeout("the guest stopped reading the serial "
                                    f"console for {timeout} s", self.tail())
            select.select([], [self._sock], [], min(left, 0.5))

    def discard(self) -> None:
        """Forget everything received so far."""
        with self._cond:
            self._buf.clear()

    def wait_for(self, pattern: re.Pattern[bytes], timeout: float,
                 alive: Callable[[], bool]) -> re.Match[bytes]:
        """Wait until ``pattern`` matches the buffer; consume up to its end.

        Raises :exc:`SerialTimeout` (with the text seen) after ``timeout``
        seconds, or :exc:`QemuError` if the console closes or QEMU exits.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = pattern.search(self._buf)
                if m is not None:
                    # Return a match over an immutable copy, then drop it.
                    data = bytes(self._buf[:m.end()])
                    del self._buf[:m.end()]
                    return pattern.search(data)  # type: ignore[return-value]
                if self._closed:
                    raise QemuGone("the serial console closed (QEMU exited?)"
                                    f"; last output: {self.tail()!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SerialTimeout(
                        f"no answer on the serial console within {timeout} s",
                        self.tail())
                if not alive():
                    raise QemuGone("QEMU exited while waiting on the serial "
                                    f"console; last output: {self.tail()!r}")
                # Short enough to notice QEMU's exit well within a second.
                self._cond.wait(min(left, 0.2))

    def tail(self, n: int = 2000) -> str:
        return bytes(self._buf[-n:]).decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=2)
        if self._log is not None:
            self._log.close()


# --------------------------------------------------------------------------
# QMP.
# --------------------------------------------------------------------------

class _QMP:
    """A minimal synchronous QMP client (events are kept, not acted on)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._file = sock.makefile("rb")
        self._lock = threading.Lock()
        self.events: list[dict] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QemuError(f"unexpected QMP greeting: {greeting!r}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        try:
            line = self._file.readline()
        except OSError as err:  # e.g. ECONNRESET when QEMU quits or dies
            raise QemuError(f"the QMP monitor failed: {err} "
                            "(QEMU exited?)") from err
        if not line:
            raise QemuGone("the QMP monitor closed (QEMU exited?)")
        if not line.endswith(b"\n"):
            # QEMU closed the monitor in the middle of a reply (on quit).
            raise QemuGone("the QMP monitor closed mid-reply (QEMU exited?)")
        try:
            return json.loads(line)
        except ValueError as err:
            raise QemuError(f"the QMP monitor sent garbage: {line[:200]!r}"
                            ) from err

    def execute(self, cmd: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        with self._lock:
            try:
                self._sock.sendall(json.dumps(msg).encode() + b"\n")
            except OSError as err:
                raise QemuError(f"QMP write failed: {err}") from err
            while True:
                reply = self._read()
                if "event" in reply:
                    self.events.append(reply)
                    del self.events[:-100]
                    continue
                if "error" in reply:
                    e = reply["error"]
                    raise QemuError(f"QMP {cmd}: {e.get('class')}: "
                                    f"{e.get('desc')}")
                return reply.get("return")

    def close(self) -> None:
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# The machine.
# --------------------------------------------------------------------------
