"""Receiving inside an event loop: Twisted's reactor and asyncio, with no polling.

Theory of operation
-------------------
One ``EventReceiver`` per layer instance and loop owns one doorbell and at most one waiter
slot. Pending receive requests (each a list of channel keys plus a Deferred or Future) are
served together: ``serve`` takes messages for the union of their channels and hands each to the
oldest request that asked for that channel; when nothing is left it registers the waiter for the
union *in the same critical section* as the last empty check, so a send can never slip in
between. The loop watches the doorbell's fd; a ring runs ``serve`` again. A message is only
taken from shared memory for a request that is still pending, which makes cancellation safe.
While requests are pending, a check every ``CHECK_INTERVAL`` serves again if the waiter slot was
notified or the lock looks taken (a sender may have died before its ring: see layer.py), and
a ring from ``layer.wake()`` ends every pending request with ``(None, None)``.

``TwistedReceiver`` and ``AsyncioReceiver`` are thin shells wiring the core to each loop.
"""

from __future__ import annotations

from typing import Any

from .doorbell import Doorbell
from .errors import SegmentError
from .layer import CHECK_INTERVAL
from .names import non_local_name

__all__ = ["EventReceiver", "twisted_receiver", "asyncio_receiver"]


class _Request:
    __slots__ = ("keys", "waiter", "timer")

    def __init__(self, keys: list[str], waiter: Any) -> None:
        self.keys = keys
        self.waiter = waiter  # Deferred or Future
        self.timer = None


class EventReceiver:
    """The loop-independent core: pending requests served through one doorbell."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.att = layer.attachment
        self.bell = Doorbell(self.att.segment.name)  # bell.wid: the waiter slot, -1 for none
        self.pending: list[_Request] = []
        self.interrupts = layer.interrupts
        self.check_timer = None

    def rung(self) -> bool:
        """The doorbell is readable: drain it; return whether to serve (a genuine ring).

        A ``wake()`` since the last ring ends every pending request with ``(None, None)``."""
        genuine = self.bell.drain()
        self.layer.count_foreign(self.bell)
        if self.layer.interrupts != self.interrupts:
            self.interrupts = self.layer.interrupts
            ended, self.pending = self.pending, []
            self._release_slot()
            for request in ended:
                self._end(request, (None, None))
            return False
        return genuine > 0

    def _end(self, request: _Request, result) -> None:  # overridden by shells
        raise NotImplementedError

    def _call_later(self, delay: float, call):  # overridden by shells
        raise NotImplementedError

    def _arm_check(self) -> None:
        """Keep one lock/slot check scheduled while requests are pending."""
        if self.pending and self.check_timer is None:
            self.check_timer = self._call_later(CHECK_INTERVAL, self._check)

    def _check(self) -> None:
        self.check_timer = None
        if self.pending and self.att.stalled(self.bell.wid):
            self._serve()
        self._arm_check()

    def _is_live(self, request: _Request) -> bool:  # overridden by shells
        return True

    def serve(self) -> list[tuple[_Request, tuple[str, dict]]]:
        """Take messages for pending requests; register for the rest. Return what was served."""
        served = []
        self.pending = [r for r in self.pending if self._is_live(r)]
        while self.pending:
            # in order, without duplicates: linear, as one pump per channel may be pending
            keys = list(dict.fromkeys(key for request in self.pending for key in request.keys))
            got = self.layer.take(keys, self.bell)
            if got is None:
                break
            key = non_local_name(got[0])
            for request in self.pending:
                if key in request.keys:
                    self.pending.remove(request)
                    served.append((request, got))
                    break
        if not self.pending:
            self._release_slot()
        return served

    def _release_slot(self) -> None:
        self.layer.release_waiter(self.bell)

    def close(self) -> None:
        if self.check_timer is not None:
            self.check_timer.cancel()
            self.check_timer = None
        try:
            self._release_slot()
        except (SegmentError, ValueError, TypeError):
            pass
        self.bell.close()


class TwistedReceiver(EventReceiver):
    """``receive_twisted``: the doorbell is an ``IReadDescriptor`` on the reactor."""

    def __init__(self, layer, reactor) -> None:
        super().__init__(layer)
        self.reactor = reactor
        self.reading = False

    # IReadDescriptor
    def fileno(self) -> int:
        return self.bell.fileno()

    def logPrefix(self) -> str:
        return "asgi_ipc"

    def connectionLost(self, reason) -> None:
        self.reading = False

    def doRead(self) -> None:
        if self.rung():
            self._serve()

    def _end(self, request: _Request, result) -> None:
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        if not request.waiter.called:
            request.waiter.callback(result)

    def _call_later(self, delay: float, call):
        return self.reactor.callLater(delay, call)

    def _is_live(self, request: _Request) -> bool:
        return not request.waiter.called

    def receive(self, keys: list[str]):
        from twisted.internet.defer import Deferred

        request = _Request(keys, None)
        request.waiter = Deferred(canceller=lambda d: self._drop(request))
        self.pending.append(request)
        request.timer = self.reactor.callLater(self.layer.receive_timeout, self._timeout, request)
        self._serve()
        return request.waiter

    def _drop(self, request: _Request) -> None:
        if request in self.pending:
            self.pending.remove(request)
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        self._update_reader()

    def _timeout(self, request: _Request) -> None:
        request.timer = None
        if request in self.pending:
            self.pending.remove(request)
            self._update_reader()
            try:
                self.att.segment.check_linked()
            except SegmentError as exc:
                request.waiter.errback(exc)
                return
            request.waiter.callback((None, None))

    def _serve(self) -> None:
        try:
            served = self.serve()
        except Exception as exc:  # a lost or corrupt segment: every waiter must hear of it
            failed, self.pending = self.pending, []
            self._update_reader()
            for request in failed:
                if request.timer is not None and request.timer.active():
                    request.timer.cancel()
                request.waiter.errback(exc)
            return
        self._update_reader()
        for request, result in served:
            if request.timer is not None and request.timer.active():
                request.timer.cancel()
            request.waiter.callback(result)

    def _update_reader(self) -> None:
        # The reader stays registered once added: without pending requests the waiter slot is
        # released, so nobody rings, and re-adding it per request cost two epoll_ctl calls.
        if self.pending and not self.reading:
            self.reactor.addReader(self)
            self.reading = True
        self._arm_check()

    def close(self) -> None:
        if self.reading:
            self.reactor.removeReader(self)
            self.reading = False
        super().close()


class AsyncioReceiver(EventReceiver):
    """``receive_async``: the doorbell fd is watched with ``loop.add_reader``."""

    def __init__(self, layer, loop) -> None:
        super().__init__(layer)
        self.loop = loop
        self.reading = False

    def _is_live(self, request: _Request) -> bool:
        return not request.waiter.done()

    async def receive(self, keys: list[str]):
        future = self.loop.create_future()
        request = _Request(keys, future)
        self.pending.append(request)
        request.timer = self.loop.call_later(self.layer.receive_timeout, self._timeout, request)
        try:
            self._serve()
            return await future
        finally:
            request.timer.cancel()
            if request in self.pending:  # cancelled: nothing was taken for it
                self.pending.remove(request)
                self._update_reader()

    def _on_ring(self) -> None:
        if self.rung():
            self._serve()

    def _end(self, request: _Request, result) -> None:
        if not request.waiter.done():
            request.waiter.set_result(result)

    def _call_later(self, delay: float, call):
        return self.loop.call_later(delay, call)

    def _timeout(self, request: _Request) -> None:
        if request in self.pending and not request.waiter.done():
            self.pending.remove(request)
            self._update_reader()
            try:
                self.att.segment.check_linked()
            except SegmentError as exc:
                request.waiter.set_exception(exc)
                return
            request.waiter.set_result((None, None))

    def _serve(self) -> None:
        try:
            served = self.serve()
        except Exception as exc:
            failed, self.pending = self.pending, []
            self._update_reader()
            for request in failed:
                if not request.waiter.done():
                    request.waiter.set_exception(exc)
            return
        self._update_reader()
        for request, result in served:
            request.waiter.set_result(result)

    def _update_reader(self) -> None:
        # Stays registered once added (see TwistedReceiver._update_reader).
        if self.pending and not self.reading:
            self.loop.add_reader(self.bell.fileno(), self._on_ring)
            self.reading = True
        self._arm_check()

    def close(self) -> None:
        if self.reading and not self.loop.is_closed():
            self.loop.remove_reader(self.bell.fileno())
            self.reading = False
        super().close()


def twisted_receiver(layer) -> TwistedReceiver:
    """The layer's receiver for the global Twisted reactor (made on first use)."""
    receivers = layer.loop_receivers()
    receiver = receivers.get("twisted")
    if receiver is None:
        from twisted.internet import reactor

        receiver = receivers["twisted"] = TwistedReceiver(layer, reactor)
    return receiver


def asyncio_receiver(layer) -> AsyncioReceiver:
    """The layer's receiver for the running asyncio loop (one per loop)."""
    import asyncio

    receivers = layer.loop_receivers()
    loop = asyncio.get_running_loop()
    key = f"asyncio-{id(loop)}"
    receiver = receivers.get(key)
    if receiver is None or receiver.loop is not loop or loop.is_closed():
        if receiver is not None:
            receiver.close()
        # Receivers of loops closed since then (async_to_sync may run every call on a new
        # loop) would keep a socket and maybe a waiter slot each: close them now.
        for other_key, other in list(receivers.items()):
            if other_key.startswith("asyncio-") and other.loop.is_closed():
                other.close()
                del receivers[other_key]
        receiver = receivers[key] = AsyncioReceiver(layer, loop)
    return receiver
