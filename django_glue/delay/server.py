"""The delay server's loop: store requests from ``asgi.delay``, send what is due, in order.

Theory of operation
-------------------
One asyncio loop and one database thread (Django's ORM is synchronous; one thread keeps one
connection). The loop knows ``wake``, the earliest time anything stored can be sent, and waits
for the first of: a request on ``asgi.delay`` (a blocking receive: the layer's doorbell wakes it
the moment one arrives), ``wake`` arriving, or a stop. So it never polls: while idle the only
activity is the layer's receive returning empty every ``receive_timeout``, with no query.

* Requests received together are validated (:func:`~.protocol.parse_request`; an invalid one is
  logged and dropped, the server carries on) and stored in one transaction; ``wake`` moves
  earlier if one of them is due sooner.
* At ``wake`` every due row is sent in ``(due_date, id)`` order; the rows sent are deleted together
  afterwards (so a crash in between sends them again after a restart: at least once, never lost). A full destination
  channel (or a full layer) holds back that channel's rows - later ones too, to keep their order
  - and is retried ``retry_after`` seconds later; the other channels carry on.
* Lateness: a row is sent one query and one send after its due time (a few ms on an idle
  machine); rows that fell due while the server was down are sent as soon as it starts.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable

from django.db import connections, transaction
from django.db.models import Min
from django.utils import timezone

from asgi_ipc.stop_signals import StopSignals

from ..exitcodes import EXIT_FAST
from .models import DelayedMessage
from .protocol import DELAY_CHANNEL, InvalidDelayRequest, parse_request

__all__ = ["DelayServer", "earliest"]

logger = logging.getLogger("django_glue.delay")


def earliest(*times: datetime | None) -> datetime | None:
    """The earliest of ``times`` that is not None (None if all are)."""
    present = [t for t in times if t is not None]
    return min(present) if present else None


class DelayServer:
    """Runs the delay protocol on ``layer`` (a django_glue layer wrapper or a raw layer).

    :param batch: most requests stored, or rows sent, per database round.
    :param retry_after: seconds before a full channel is tried again.
    :param on_sent: called with ``(channel, message)`` after each delivery (logging, tests).
    """

    def __init__(
        self,
        layer: Any,
        batch: int = 100,
        retry_after: float = 1.0,
        on_sent: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.layer = layer
        self.batch = batch
        self.retry_after = timedelta(seconds=retry_after)
        self.on_sent = on_sent
        #: channel -> time it may be tried again after it was full
        self.blocked: dict[str, datetime] = {}
        self._transient = tuple(
            exc for exc in (getattr(layer, "ChannelFull", None), getattr(layer, "ArenaFull", None)) if exc
        )
        self._undeliverable = tuple(exc for exc in (getattr(layer, "MessageTooLarge", None), TypeError) if exc)

    # ===== database side (runs in the database thread) ===========================================
    def store(self, messages: list[Any]) -> datetime | None:
        """Validate and store requests; returns the earliest due time among them."""
        now = timezone.now()
        rows = []
        for message in messages:
            try:
                rows.append(DelayedMessage.from_request(parse_request(message), now))
            except InvalidDelayRequest as exc:
                logger.error("ignoring an invalid message on %s: %s", DELAY_CHANNEL, exc)
            except TypeError as exc:  # content the layer could carry but we cannot pack (never expected)
                logger.error("ignoring a message on %s that cannot be stored: %s", DELAY_CHANNEL, exc)
        if rows:
            with transaction.atomic():
                DelayedMessage.objects.bulk_create(rows)
        return earliest(*(row.due_date for row in rows))

    def deliver_due(self) -> datetime | None:
        """Send every due row (in order) that is not held back; returns the next wake time."""
        now = timezone.now()
        self.blocked = {name: until for name, until in self.blocked.items() if until > now}
        rows = list(DelayedMessage.objects.filter(due_date__lte=now)
                    .exclude(channel_name__in=list(self.blocked))[: self.batch])
        done: list[int] = []
        try:
            for row in rows:
                if row.channel_name in self.blocked:
                    continue  # an earlier row for it did not fit: keep the channel's order
                try:
                    message = row.message()
                    self.layer.send(row.channel_name, message)
                except self._transient as exc:
                    self.blocked[row.channel_name] = now + self.retry_after
                    logger.warning("channel %s is full (%s); retrying in %ss", row.channel_name,
                                   type(exc).__name__, self.retry_after.total_seconds())
                    continue
                except self._undeliverable as exc:
                    logger.error("dropping a delayed message for %s that cannot be sent: %s", row.channel_name, exc)
                else:
                    if self.on_sent is not None:
                        self.on_sent(row.channel_name, message)
                done.append(row.pk)
        finally:
            # One delete (one commit) per round, not per row: a burst of due messages is not
            # slowed down by a database commit between each two sends.
            if done:
                DelayedMessage.objects.filter(pk__in=done).delete()
        if len(rows) == self.batch:
            return now  # more may be due: come straight back
        upcoming = (DelayedMessage.objects.exclude(channel_name__in=list(self.blocked))
                    .aggregate(Min("due_date"))["due_date__min"])
        return earliest(upcoming, *self.blocked.values())

    # ===== the loop ==============================================================================
    def run(self) -> int:
        """Serve until a stop signal (the table of :mod:`asgi_ipc.stop_signals`); returns the exit
        code (0). Graceful (SIGTERM, a first SIGINT): the loop returns between two rounds; fast (a
        SIGINT during it, or SIGQUIT): exit at once with ``EXIT_FAST`` (what is stored stays stored)."""
        return asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = StopSignals(stop.set, call=loop.call_soon_threadsafe, announce=logger.info,
                              fast_exit_code=EXIT_FAST).install()
        try:
            await self.serve(stop)
        finally:
            signals.restore()
        return 0

    async def serve(self, stop: asyncio.Event) -> None:
        """The loop (see the module docstring); returns once ``stop`` is set."""
        loop = asyncio.get_running_loop()
        database = ThreadPoolExecutor(1, thread_name_prefix="delay-db")

        def in_db(func: Callable[..., Any], *args: Any) -> Any:
            return loop.run_in_executor(database, func, *args)

        try:
            wake = await in_db(self.deliver_due)
            while not stop.is_set():
                timeout = None if wake is None else (wake - timezone.now()).total_seconds()
                if timeout is not None and timeout <= 0:
                    wake = await in_db(self.deliver_due)
                    continue
                requests = await self.receive(timeout, stop)
                if requests:
                    wake = earliest(wake, await in_db(self.store, requests))
        finally:
            await in_db(connections.close_all)  # resolved in the database thread: its own connection
            database.shutdown(wait=True)

    async def receive(self, timeout: float | None, stop: asyncio.Event) -> list[Any]:
        """Requests waiting on ``asgi.delay`` (up to ``batch``), after waiting at most
        ``timeout`` seconds (None: the layer's receive timeout) for the first; [] if none came."""
        receiving = asyncio.ensure_future(self.layer.receive_async([DELAY_CHANNEL]))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({receiving, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not receiving.done():
            receiving.cancel()  # the layer guarantees a cancelled receive loses no message
            try:
                await receiving
            except asyncio.CancelledError:
                return []
        channel, message = receiving.result()
        if channel is None:
            return []
        found = [message]
        while len(found) < self.batch:
            channel, message = self.layer.receive([DELAY_CHANNEL], block=False)
            if channel is None:
                break
            found.append(message)
        return found
