"""Consumer atomicity: sends made inside a consumer are held until the consumer finishes.

A worker thread arms its outbox on ``consumer_started`` and flushes it on ``consumer_finished``
(even when the consumer raised), so a consumer's messages appear only after it - and the outbound
half of its decorators, such as saving the channel session - has completed. Outside a consumer
(management commands, tests, plain views) the outbox is not armed and sends go out at once.

Flushing retries a send that hits ``ChannelFull`` for a bounded time (:data:`FLUSH_RETRY_SECONDS`)
and then raises :class:`OutboxFull`, naming the channel and what to do about it; the messages after
the failing one are still attempted, so one full channel does not swallow unrelated replies.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from .signals import consumer_finished, consumer_started

__all__ = ["OutboxFull", "outbox", "send_with_retry", "FLUSH_RETRY_SECONDS", "RETRY_INTERVAL"]

logger = logging.getLogger("django_glue.outbox")

#: How long a buffered send keeps retrying a full channel before giving up.
FLUSH_RETRY_SECONDS = 2.0
#: Pause between two attempts on a full channel.
RETRY_INTERVAL = 0.05


class OutboxFull(RuntimeError):
    """A buffered send could not be delivered because its destination stayed full."""


def send_with_retry(
    send: Callable[[], None], full_exc: type[BaseException], timeout: float, what: str
) -> None:
    """Call ``send()``; on ``full_exc`` retry every :data:`RETRY_INTERVAL` for up to ``timeout`` s.

    Raises :class:`OutboxFull` (chained to the last ``full_exc``) when the time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            send()
            return
        except full_exc as exc:
            if time.monotonic() >= deadline:
                raise OutboxFull(
                    f"{what} stayed full for {timeout:.1f}s; raise its capacity "
                    "(CHANNEL_LAYERS[...]['CONFIG']['channel_capacity']), run more workers, "
                    "or send with immediately=True to handle ChannelFull yourself"
                ) from exc
            time.sleep(RETRY_INTERVAL)


class Outbox(threading.local):
    """Per-thread buffer of pending sends; ``None`` when no consumer is running on this thread."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[], None], type[BaseException], str]] | None = None

    @property
    def armed(self) -> bool:
        """True while a consumer runs on this thread (sends are then buffered)."""
        return self.pending is not None

    def arm(self, **kwargs: Any) -> None:
        """Start buffering (connected to ``consumer_started``). Drops anything left over."""
        self.pending = []

    def add(self, send: Callable[[], None], full_exc: type[BaseException], what: str) -> None:
        """Buffer ``send`` (a zero-argument callable doing one layer send)."""
        assert self.pending is not None, "Outbox.add called while not armed"
        self.pending.append((send, full_exc, what))

    def add_call(self, call: Callable[[], None], what: str) -> None:
        """Buffer an action to run after the sends buffered before it (e.g. a session update)."""
        self.add(call, _NeverRaised, what)

    def flush(self, **kwargs: Any) -> None:
        """Send everything buffered, in order, then disarm (connected to ``consumer_finished``).

        Every item is attempted even if an earlier one failed; the first failure (an
        :class:`OutboxFull` for a destination that stayed full, or whatever a send raised, such
        as ``MessageTooLarge``) is raised at the end.
        """
        pending, self.pending = self.pending, None
        if not pending:
            return
        first_error: Exception | None = None
        for send, full_exc, what in pending:
            try:
                send_with_retry(send, full_exc, FLUSH_RETRY_SECONDS, what)
            except Exception as exc:
                logger.error("dropping buffered %s: %r", what, exc)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error


class _NeverRaised(Exception):
    """Placeholder "full" exception for buffered actions that are not sends."""


outbox = Outbox()
consumer_started.connect(outbox.arm, dispatch_uid="django_glue.outbox.arm")
consumer_finished.connect(outbox.flush, dispatch_uid="django_glue.outbox.flush")
