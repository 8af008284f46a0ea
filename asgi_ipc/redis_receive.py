"""Blocking receives of the Redis layer: one state machine, three drivers (select, asyncio, Twisted).

Theory of operation
-------------------
A blocking receive first tries the ``POP`` script on each shard that holds one of its channels.
If nothing is there it starts a *round*: on each of those shards a dedicated connection sends
``BLPOP <queues> <remaining seconds>``, and the receive waits until one of the connections'
sockets is readable. The server wakes exactly one blocked client per pushed message, so an idle
receiver costs nothing and is woken without polling.

The round then ends in a way that can never lose a message:

* the connection that became readable is read; a popped entry is settled with ``SETTLE take``
  (counted as received, or dropped if its deadline passed while it travelled);
* every other connection of the round is released from its ``BLPOP`` with ``CLIENT UNBLOCK``
  sent on another connection, and then *read* - the reply is either "nothing" or an entry the
  server popped just before the unblock, which ``SETTLE return`` puts back at the head of its
  queue (so single-reader channels keep their order).

A blocking pop is never abandoned half-way: cancelling a receive (asyncio ``CancelledError``, a
Twisted ``Deferred.cancel``) runs the same ending, so a message popped for a cancelled receive
goes back to Redis instead of into the void. That is the failure ``channels_redis`` had to patch
(``_brpop_with_clean``); unblocking and reading the reply removes the race instead.

Drivers
-------
``BlockingReceive`` knows nothing about waiting: ``poll()`` returns a message, ``None`` (timed
out) or the list of pending pops whose sockets to watch; ``ready(pop)`` ends the round. The
drivers only wait: ``select.select`` for the synchronous ``receive(block=True)``,
``loop.add_reader`` for ``receive_async`` and ``reactor.addReader`` for ``receive_twisted``. None
of them starts a thread, and the asyncio and Twisted drivers run their Redis calls on the loop's
thread: the short request/reply commands (the pop script, ``CLIENT ID``, the reply of a readable
socket) block the loop for one loopback round trip each, as the shared-memory layer's lock does.

Why not ``redis.asyncio`` for asyncio and a second Redis client for Twisted? Because the hard
part - ending a round without losing a popped message - would then exist in three copies over
three clients, and Twisted has no maintained Redis client for today's Python (``txredisapi`` is
unmaintained). One synchronous redis-py client plus three ten-line waits keeps one copy.
"""

from __future__ import annotations

import functools
import select
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .redis import RedisChannelLayer, _Shard

__all__ = ["BlockingReceive", "receive_blocking", "receive_async", "receive_twisted"]

_GRACE = 1.0  # seconds a driver waits beyond BLPOP's own timeout before giving up on the server


class _Pop:
    """One ``BLPOP`` in flight on a dedicated connection of one shard."""

    __slots__ = ("shard", "conn", "client_id")

    def __init__(self, shard: "_Shard", queues: list[str], timeout: float) -> None:
        self.shard = shard
        self.conn = shard.pool.get_connection()
        try:
            self.conn.send_command("CLIENT", "ID")
            self.client_id = int(self.conn.read_response())
            self.conn.send_command("BLPOP", *queues, f"{timeout:.3f}")
        except BaseException:
            self._drop()
            raise

    def fileno(self) -> int:
        """The socket to watch; redis-py keeps it as ``_sock`` on its connections."""
        return self.conn._sock.fileno()

    def read(self) -> list[bytes] | None:
        """The ``BLPOP`` reply (``[queue, entry]`` or ``None``); the connection is released."""
        try:
            reply = self.conn.read_response()
        except BaseException:
            self._drop()
            raise
        self.shard.pool.release(self.conn)
        return reply

    def cancel(self) -> list[bytes] | None:
        """End the ``BLPOP`` now and return whatever it popped (see the module docstring)."""
        try:
            self.shard.client.client_unblock(self.client_id)
        except BaseException:
            self._drop()
            raise
        return self.read()

    def _drop(self) -> None:
        self.conn.disconnect()
        self.shard.pool.release(self.conn)


class BlockingReceive:
    """The loop-independent state of one blocking receive (see the module docstring)."""

    def __init__(self, layer: "RedisChannelLayer", keys: list[str]) -> None:
        self.layer = layer
        self.keys = keys
        self.deadline = time.monotonic() + layer.receive_timeout
        self.pops: list[_Pop] = []
        self.got: tuple[str, dict] | None = None

    def poll(self) -> tuple[str, dict] | None | list[_Pop]:
        """A message, ``None`` once the receive timed out, or the pops to wait on."""
        if self.got is not None:
            return self.got
        got = self.layer._take_now(self.keys)
        if got is not None:
            return got
        remaining = self.deadline - time.monotonic()
        if remaining < 0.001:
            return None
        for shard, queues in self.layer._blocking_plan(self.keys):
            with self.layer._guard(shard):
                self.pops.append(_Pop(shard, queues, remaining))
        return self.pops

    def wait_limit(self) -> float:
        """Longest a driver should wait for a readable pop before calling ``ready(None)``."""
        return max(0.0, self.deadline - time.monotonic()) + _GRACE

    def ready(self, pop: _Pop | None) -> None:
        """End the round: read ``pop`` (the readable one, or None if the driver gave up),
        take its entry, and give back what the others popped. Call ``poll`` next."""
        try:
            if pop is not None:
                self.pops.remove(pop)
                with self.layer._guard(pop.shard):
                    reply = pop.read()
                if reply is not None:
                    self.got = self.layer._settle(pop.shard, reply, "take")
        except BaseException:
            self.close()
            raise
        try:
            self.close()
        except Exception:
            if self.got is None:
                raise
            # A message is in hand: deliver it; the failing server is reported by the next call.
        if pop is None:  # the server did not answer within its own timeout plus a grace
            self.deadline = 0.0

    def close(self) -> None:
        """Release every pop still in flight, returning popped entries to their queues."""
        pops, self.pops = self.pops, []
        failure: BaseException | None = None
        for pop in pops:
            try:
                with self.layer._guard(pop.shard):
                    reply = pop.cancel()
                    if reply is not None:
                        self.layer._settle(pop.shard, reply, "return")
            except BaseException as exc:  # release the rest first, then report
                failure = failure or exc
        if failure is not None:
            raise failure


def receive_blocking(layer: "RedisChannelLayer", keys: list[str]) -> tuple[Any, Any]:
    """``receive(channels, block=True)``: wait on the pops' sockets with ``select``."""
    receive = BlockingReceive(layer, keys)
    try:
        while True:
            state = receive.poll()
            if not isinstance(state, list):
                return state if state is not None else (None, None)
            readable, _, _ = select.select(state, [], [], receive.wait_limit())
            receive.ready(readable[0] if readable else None)
    finally:
        receive.close()


async def receive_async(layer: "RedisChannelLayer", keys: list[str]) -> tuple[Any, Any]:
    """``await receive_async(channels)``: wait with the running loop's ``add_reader``.

    The only suspension point is the wait; a cancellation there ends the round through
    ``BlockingReceive.close``, which returns any popped entry to Redis.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    receive = BlockingReceive(layer, keys)
    try:
        while True:
            state = receive.poll()
            if not isinstance(state, list):
                return state if state is not None else (None, None)
            waiter = loop.create_future()

            def wake(pop: _Pop | None, waiter: Any = waiter) -> None:
                if not waiter.done():
                    waiter.set_result(pop)

            timer = loop.call_later(receive.wait_limit(), wake, None)
            fds = []
            try:
                for pop in state:
                    fds.append(pop.fileno())
                    loop.add_reader(fds[-1], wake, pop)
                ready = await waiter
            finally:
                timer.cancel()
                for fd in fds:
                    loop.remove_reader(fd)
            receive.ready(ready)
    finally:
        receive.close()


@functools.lru_cache(maxsize=None)
def _reader_class() -> type:
    """The reactor's view of a pending pop (an ``IReadDescriptor``), made once Twisted is used."""
    from twisted.internet.interfaces import IReadDescriptor
    from zope.interface import implementer

    @implementer(IReadDescriptor)
    class PopReader:
        def __init__(self, pop: _Pop, on_readable: Callable[[_Pop], None]) -> None:
            self.pop = pop
            self.fd = pop.fileno()
            self.on_readable = on_readable

        def fileno(self) -> int:
            return self.fd

        def doRead(self) -> None:
            self.on_readable(self.pop)

        def connectionLost(self, reason: object) -> None:
            pass  # the pop's own read reports a lost connection

        def logPrefix(self) -> str:
            return "RedisChannelLayer"

    return PopReader


def receive_twisted(layer: "RedisChannelLayer", keys: list[str]):
    """``receive_twisted(channels)``: a Deferred driven by ``reactor.addReader``.

    ``Deferred.cancel()`` ends the round through ``BlockingReceive.close`` (nothing is lost).
    """
    from twisted.internet import defer, reactor
    from twisted.python import log
    from twisted.python.failure import Failure

    receive = BlockingReceive(layer, keys)
    readers: list[Any] = []
    timers: list[Any] = []

    def stop_waiting() -> None:
        for reader in readers:
            reactor.removeReader(reader)
        readers.clear()
        for timer in timers:
            if timer.active():
                timer.cancel()
        timers.clear()

    def cancel(_deferred: defer.Deferred) -> None:
        stop_waiting()
        try:
            receive.close()
        except Exception:  # Redis went away: nothing to give back; the Deferred is cancelled
            log.err(None, "RedisChannelLayer: ending a cancelled receive_twisted failed")

    deferred: defer.Deferred = defer.Deferred(cancel)

    def step(pop: _Pop | None, first: bool = False) -> None:
        try:
            if not first:
                receive.ready(pop)
            state = receive.poll()
        except BaseException:
            failure = Failure()
            stop_waiting()
            try:
                receive.close()
            except BaseException:
                pass  # the first error is the one to report
            deferred.errback(failure)
            return
        if isinstance(state, list):
            for waiting in state:
                readers.append(_reader_class()(waiting, wake))
                reactor.addReader(readers[-1])
            timers.append(reactor.callLater(receive.wait_limit(), wake, None))
            return
        receive.close()
        deferred.callback(state if state is not None else (None, None))

    def wake(pop: _Pop | None) -> None:
        """A pop's socket is readable (or, with None, the server overran its timeout)."""
        stop_waiting()
        step(pop)

    step(None, first=True)
    return deferred
