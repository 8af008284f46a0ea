"""Heartbeat pipe between a child and the supervisor.

Theory of operation: before forking a child the supervisor creates a pipe and passes the write end
as ``PROCMAN_HEARTBEAT_FD``. The child writes short ASCII lines to it:

``ready``                 booted (imports done, layer attached, about to serve)
``beat [<requests>]``     still alive; ``<requests>`` is how many messages it has handled so far
``retire <reason>``       please replace me (``--max-requests`` reached); keeps serving until TERM
``booterror <summary>``   one-line reason, sent just before exiting with ``BOOT_ERROR``

Beats are written from the child's *main loop* (never from a helper thread), so a child whose loop
is stuck stops beating and the supervisor kills and replaces it. The write end is non-blocking: a
beat that does not fit in the pipe is dropped rather than stalling the child. When the supervisor
dies the read end closes, the next write fails with ``EPIPE``, and :meth:`HeartbeatSender.beat`
returns ``False`` so the child can exit instead of lingering as an orphan.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass

__all__ = [
    "ENV_FD",
    "ENV_SUPERVISOR_PID",
    "HeartbeatSender",
    "HeartbeatReader",
    "HeartbeatEvent",
    "exit_with_parent",
]

#: Environment variable naming the heartbeat pipe's write end in a child.
ENV_FD = "PROCMAN_HEARTBEAT_FD"
#: Environment variable holding the supervisor's pid (a child's expected parent).
ENV_SUPERVISOR_PID = "PROCMAN_SUPERVISOR_PID"

_MAX_LINE = 512


class HeartbeatSender:
    """The child's end: report readiness, liveness and counters to the supervisor.

    :param fd: the write end of the heartbeat pipe, or ``None`` when not supervised (every method
        is then a no-op that returns ``True``).
    :param interval: minimum seconds between two ``beat`` lines (extra calls are free).
    """

    def __init__(self, fd: int | None, interval: float = 1.0) -> None:
        self.fd = fd
        self.interval = interval
        self._last = 0.0
        self.supervisor_alive = True
        if fd is not None:
            os.set_blocking(fd, False)

    @classmethod
    def from_env(cls, interval: float = 1.0) -> "HeartbeatSender":
        """Build from ``PROCMAN_HEARTBEAT_FD``; unsupervised (no-op) if it is not set.

        :raises ValueError: the variable is set but is not a usable file descriptor number.
        """
        raw = os.environ.get(ENV_FD)
        if not raw:
            return cls(None, interval)
        try:
            fd = int(raw)
            os.fstat(fd)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{ENV_FD}={raw!r} is not an open file descriptor: {exc}") from None
        return cls(fd, interval)

    @property
    def supervised(self) -> bool:
        """True when a supervisor is listening on the other end."""
        return self.fd is not None

    def _send(self, line: str) -> bool:
        if self.fd is None:
            return True
        if not self.supervisor_alive:
            return False
        data = (line.replace("\n", " ")[: _MAX_LINE - 1] + "\n").encode("utf-8", "replace")
        try:
            os.write(self.fd, data)
        except BlockingIOError:
            pass  # pipe full: the supervisor is busy; this beat is dropped, the next one counts
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF):
                self.supervisor_alive = False
                return False
            raise
        return True

    def ready(self) -> bool:
        """Tell the supervisor this child booted. Returns False if the supervisor is gone."""
        self._last = time.monotonic()
        return self._send("ready")

    def beat(self, requests: int | None = None, force: bool = False) -> bool:
        """Report liveness (at most once per ``interval`` unless ``force``).

        :param requests: total messages handled so far by this child (None: not counted).
        :returns: False once the supervisor is gone (the child should then exit).
        """
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return self.supervisor_alive
        self._last = now
        return self._send("beat" if requests is None else f"beat {int(requests)}")

    def retire(self, reason: str) -> bool:
        """Ask to be replaced (new child first, then this one gets SIGTERM)."""
        return self._send(f"retire {reason}")

    def boot_error(self, summary: str) -> bool:
        """Send the one-line reason for a boot failure (call just before exiting with BOOT_ERROR)."""
        return self._send(f"booterror {summary}")


@dataclass
class HeartbeatEvent:
    """One parsed line from a child: ``kind`` is ready/beat/retire/booterror."""

    kind: str
    requests: int | None = None
    text: str = ""


class HeartbeatReader:
    """The supervisor's end of one child's pipe: non-blocking reads, parsed into events.

    :param fd: the read end (made non-blocking; closed by :meth:`close`).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._buffer = b""
        self.eof = False

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[HeartbeatEvent]:
        """Read whatever is available and return the complete lines as events (unknown lines are
        ignored: a child cannot confuse the supervisor by writing garbage)."""
        events: list[HeartbeatEvent] = []
        while not self.eof:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self._buffer += chunk
            if len(self._buffer) > 64 * _MAX_LINE and b"\n" not in self._buffer:
                self._buffer = b""  # garbage without newlines: drop it
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            event = _parse(raw.decode("utf-8", "replace").strip())
            if event is not None:
                events.append(event)
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _parse(line: str) -> HeartbeatEvent | None:
    kind, _, rest = line.partition(" ")
    if kind == "ready":
        return HeartbeatEvent("ready")
    if kind == "beat":
        try:
            return HeartbeatEvent("beat", requests=max(0, int(rest)) if rest else None)
        except ValueError:
            return None
    if kind in ("retire", "booterror"):
        return HeartbeatEvent(kind, text=rest)
    return None


def exit_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """:func:`asgi_ipc.stop_signals.stop_with_parent` for a child of the supervisor: the expected
    parent defaults to ``PROCMAN_SUPERVISOR_PID`` from the environment (if set)."""
    from asgi_ipc.stop_signals import stop_with_parent

    if parent is None:
        expected = os.environ.get(ENV_SUPERVISOR_PID)
        parent = int(expected) if expected and expected.isdigit() else None
    stop_with_parent(sig, parent)
