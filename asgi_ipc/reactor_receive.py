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
a ring from ``layer.wake()`` ends every pending request with ``(None, None)``. A request not
served within ``receive_timeout`` ends with ``(None, None)``; one timer, for the earliest
deadline, serves all of them.

The receiver drives the layer only through its public interface: ``layer.take`` (the critical
section "take, or register as waiter", see ``critical.py``), ``layer.release_waiter``,
``layer.count_foreign``, ``layer.interrupts``, ``layer.attachment`` and ``layer.loop_receivers``.

``TwistedReceiver`` and ``AsyncioReceiver`` are thin shells wiring the core to each loop.
"""

from __future__ import annotations

from typing import Any

from .doorbell import Doorbell
from .errors import SegmentError
from .layout import W_WAITING
from .layer import CHECK_INTERVAL
from .names import non_local_name

__all__ = ["EventReceiver", "twisted_receiver", "asyncio_receiver"]


class _Request:
    __slots__ = ("keys", "waiter", "deadline")

    def __init__(self, keys: list[str], waiter: Any, deadline: float) -> None:
        self.keys = keys
        self.waiter = waiter  # Deferred or Future
        self.deadline = deadline  # on the loop's clock


class EventReceiver:
    """The loop-independent core: pending requests served through one doorbell.

    Timeouts cost no timer per request: one timer is armed for the earliest deadline among
    the pending requests, and when it fires it ends those that are due and re-arms for the
    next, so a request served before its deadline (the usual case) costs no timer operation.
    """

    def __init__(self, layer) -> None:
        self.layer = layer
        self.att = layer.attachment
        self.bell = Doorbell(self.att.segment.name)  # bell.wid: the waiter slot, -1 for none
        self.pending: list[_Request] = []
        self.interrupts = layer.interrupts
        self.check_timer = None
        self.timeout_timer = None
        self.timeout_at = 0.0

    def rung(self) -> bool:
        """The doorbell is readable: drain it; return whether to serve (a genuine ring).

        A ``wake()`` since the last ring ends every pending request with ``(None, None)``."""
        genuine = self.bell.drain()
        if self.bell.foreign:
            self.layer.count_foreign(self.bell)
        if self.layer.interrupts != self.interrupts:
            self.interrupts = self.layer.interrupts
            ended, self.pending = self.pending, []
            self._release_slot()
            for request in ended:
                self._end(request, (None, None))
            return False
        return genuine > 0

    # -- overridden by the shells --------------------------------------------------------------
    def _end(self, request: _Request, result) -> None:
        """Complete ``request`` with ``result`` unless it is already done."""
        raise NotImplementedError

    def _fail(self, request: _Request, exc: BaseException) -> None:
        """Fail ``request`` with ``exc`` unless it is already done."""
        raise NotImplementedError

    def _call_later(self, delay: float, call):
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    def _is_live(self, request: _Request) -> bool:
        return True

    def _update_reader(self) -> None:
        raise NotImplementedError

    # -- timers --------------------------------------------------------------------------------
    def _arm(self) -> None:
        """Keep the lock/slot check and the earliest deadline's timer scheduled while requests
        are pending (called after every change of ``pending``)."""
        if not self.pending:
            return
        if self.check_timer is None:
            self.check_timer = self._call_later(CHECK_INTERVAL, self._check)
        if self.timeout_timer is None:
            self.timeout_at = min(request.deadline for request in self.pending)
            self.timeout_timer = self._call_later(
                max(0.0, self.timeout_at - self._now()), self._timeouts)
        elif self.pending[-1].deadline < self.timeout_at:  # a shorter receive_timeout since
            self.timeout_timer.cancel()
            self.timeout_timer = None
            self._arm()

    def _check(self) -> None:
        self.check_timer = None
        if self.pending and self.att.stalled(self.bell.wid):
            self._serve()
        self._arm()

    def _timeouts(self) -> None:
        """End the requests whose deadline has come with ``(None, None)`` (or ``SegmentLost``
        if the segment is gone), then re-arm for the next deadline."""
        self.timeout_timer = None
        now = self._now()
        due = [request for request in self.pending if request.deadline <= now]
        if due:
            self.pending = [request for request in self.pending if request.deadline > now]
            self._forget()
            try:
                self.att.segment.check_linked()
            except SegmentError as exc:
                for request in due:
                    self._fail(request, exc)
            else:
                for request in due:
                    self._end(request, (None, None))
        self._arm()

    # -- serving -------------------------------------------------------------------------------
    def serve(self) -> list[tuple[_Request, tuple[str, dict]]]:
        """Take messages for pending requests; register for the rest. Return what was served."""
        served = []
        pending = self.pending
        if len(pending) > 1 or (pending and not self._is_live(pending[0])):
            pending = self.pending = [r for r in pending if self._is_live(r)]
        take, bell = self.layer.take, self.bell
        while pending:
            if len(pending) == 1:
                keys = pending[0].keys
            else:  # in order, without duplicates: linear, as one pump per channel may wait
                keys = list(dict.fromkeys(key for request in pending for key in request.keys))
            got = take(keys, bell)
            if got is None:
                break
            key = non_local_name(got[0])
            for request in pending:
                if key in request.keys:
                    pending.remove(request)
                    served.append((request, got))
                    break
        if not pending:
            # A take from the segment left the slot allocated but unregistered, ready for the
            # next request; only a slot still registered (a message came from this process's
            # local queue) is given back, so no sender spends a wake-up on an idle receiver.
            wid = bell.wid
            if wid >= 0 and self.att.waiter_state(wid) == W_WAITING:
                self._release_slot()
        return served

    def _serve(self) -> None:
        """``serve`` and complete what it served; a lost or corrupt segment fails every
        pending request."""
        try:
            served = self.serve()
        except Exception as exc:  # every waiter must hear of it
            failed, self.pending = self.pending, []
            self._update_reader()
            for request in failed:
                self._fail(request, exc)
            return
        self._update_reader()
        end = self._end
        for request, result in served:
            end(request, result)

    def _release_slot(self) -> None:
        self.layer.release_waiter(self.bell)

    def _forget(self) -> None:
        """After requests left unserved (timed out, cancelled): with none left, give the waiter
        slot back at once - a sender would otherwise pick it and its wake-up be spent here,
        while another receiver of the channel sleeps on until its next check."""
        if not self.pending:
            self._release_slot()
        self._update_reader()

    def close(self) -> None:
        for timer in (self.check_timer, self.timeout_timer):
            if timer is not None:
                timer.cancel()
        self.check_timer = self.timeout_timer = None
        try:
            self._release_slot()
        except (SegmentError, ValueError, TypeError):
            pass
        self.bell.close()


class TwistedReceiver(EventReceiver):
    """``receive_twisted``: the doorbell is an ``IReadDescriptor`` on the reactor."""

    def __init__(self, layer, reactor) -> None:
        from twisted.internet.defer import Deferred  # not at import time: Twisted is optional

        super().__init__(layer)
        self.reactor = reactor
        self.reading = False
        self._deferred = Deferred

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
        if not request.waiter.called:
            request.waiter.callback(result)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        if not request.waiter.called:
            request.waiter.errback(exc)

    def _call_later(self, delay: float, call):
        return self.reactor.callLater(delay, call)

    def _now(self) -> float:
        return self.reactor.seconds()

    def _is_live(self, request: _Request) -> bool:
        return not request.waiter.called

    def receive(self, keys: list[str]):
        request = _Request(keys, None, self.reactor.seconds() + self.layer.receive_timeout)
        request.waiter = self._deferred(canceller=lambda d: self._drop(request))
        self.pending.append(request)
        self._serve()
        return request.waiter

    def _drop(self, request: _Request) -> None:
        if request in self.pending:
            self.pending.remove(request)
            self._forget()

    def _update_reader(self) -> None:
        # The reader stays registered once added: without pending requests the waiter slot is
        # released, so nobody rings, and re-adding it per request cost two epoll_ctl calls.
        if self.pending and not self.reading:
            self.reactor.addReader(self)
            self.reading = True
        self._arm()

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
        request = _Request(keys, future, self.loop.time() + self.layer.receive_timeout)
        self.pending.append(request)
        try:
            self._serve()
            return await future
        finally:
            if request in self.pending:  # cancelled: nothing was taken for it
                self.pending.remove(request)
                self._forget()

    def _on_ring(self) -> None:
        if self.rung():
            self._serve()

    def _end(self, request: _Request, result) -> None:
        if not request.waiter.done():
            request.waiter.set_result(result)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        if not request.waiter.done():
            request.waiter.set_exception(exc)

    def _call_later(self, delay: float, call):
        return self.loop.call_later(delay, call)

    def _now(self) -> float:
        return self.loop.time()

    def _update_reader(self) -> None:
        # Stays registered once added (see TwistedReceiver._update_reader).
        if self.pending and not self.reading:
            self.loop.add_reader(self.bell.fileno(), self._on_ring)
            self.reading = True
        self._arm()

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
