"""The event-loop receivers' timers (``reactor_receive``), on Twisted's in-memory clock.

A ``TwistedReceiver`` on a ``Clock`` (plus no-op reader registration: the doorbell is served by
calling ``doRead`` as the reactor would) shows that request timeouts need one timer for the
earliest deadline, not one per request, and still end each request at its own deadline.
"""

from __future__ import annotations

import asyncio
import select

import pytest
from twisted.internet.task import Clock

from asgi_ipc.layout import W_WAITING
from asgi_ipc.reactor_receive import TwistedReceiver


class ClockReactor(Clock):
    """An in-memory reactor: the clock, and reader registration that only records."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set = set()

    def addReader(self, reader) -> None:
        self.readers.add(reader)

    def removeReader(self, reader) -> None:
        self.readers.discard(reader)


@pytest.fixture
def receiver(make_layer):
    layer = make_layer(receive_timeout=5)
    clock = ClockReactor()
    receiver = TwistedReceiver(layer, clock)
    yield receiver
    receiver.close()


def _results(deferreds) -> list:
    out = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def test_each_request_times_out_at_its_own_deadline(receiver, impl):
    clock, layer = receiver.reactor, receiver.layer
    first = _results([receiver.receive(["a"])])  # deadline 5
    clock.advance(2)
    layer.receive_timeout = 1
    second = _results([receiver.receive(["a"])])  # deadline 3: earlier than the first's
    clock.advance(0.9)
    assert first == [] and second == []
    clock.advance(0.2)  # t = 3.1
    assert second == [(None, None)] and first == []
    clock.advance(1.8)  # t = 4.9
    assert first == []
    clock.advance(0.2)  # t = 5.1
    assert first == [(None, None)]
    assert receiver.pending == [] and receiver.bell.wid == -1  # the waiter slot is given back


def test_served_requests_cost_no_timer_each(receiver, impl):
    clock, layer = receiver.reactor, receiver.layer
    got = []
    for n in range(200):
        layer.send("p!x", {"n": n})
        receiver.receive(["p!"]).addCallback(got.append)
    assert got == [("p!x", {"n": n}) for n in range(200)]
    waiting = _results([receiver.receive(["p!"])])
    assert len(clock.getDelayedCalls()) <= 2  # the lock/slot check and one deadline
    layer.send("p!y", {"last": True})
    assert select.select([receiver.bell.sock], [], [], 5)[0], "the send did not ring"
    receiver.doRead()
    assert waiting == [("p!y", {"last": True})]
    clock.advance(10)  # the stale deadline timer fires once and ends nothing
    assert waiting == [("p!y", {"last": True})]
    assert clock.getDelayedCalls() == []


def test_a_cancelled_request_takes_nothing(receiver, impl):
    layer = receiver.layer
    d = receiver.receive(["c"])
    d.addErrback(lambda failure: None)
    d.cancel()
    layer.send("c", {"kept": True})
    assert layer.receive(["c"]) == ("c", {"kept": True})


def test_asyncio_receive_times_out_and_is_served(make_layer, impl):
    layer = make_layer(receive_timeout=0.2)

    async def scenario():
        empty = await layer.receive_async(["q"])
        layer.send("q", {"n": 1})
        served = await layer.receive_async(["q"])
        return empty, served

    assert asyncio.run(scenario()) == ((None, None), ("q", {"n": 1}))


def test_a_timed_out_or_cancelled_last_request_gives_its_slot_back(receiver, impl):
    """Else a sender would pick the idle slot and spend its one wake-up here."""
    clock = receiver.reactor
    _results([receiver.receive(["s"])])
    assert receiver.bell.wid >= 0
    clock.advance(6)
    assert receiver.bell.wid == -1
    d = receiver.receive(["s"])
    d.addErrback(lambda failure: None)
    assert receiver.bell.wid >= 0
    d.cancel()
    assert receiver.bell.wid == -1


def test_a_served_receiver_keeps_its_slot_unregistered(receiver, impl):
    """The slot is reused by the next request (no free and allocate per reply), yet a send
    while nothing is pending rings nobody here: the wake-up goes to a receiver that waits."""
    layer = receiver.layer
    waiting = _results([receiver.receive(["k!"])])
    wid = receiver.bell.wid
    layer.send("k!a", {"n": 1})
    assert select.select([receiver.bell.sock], [], [], 5)[0]
    receiver.doRead()
    assert waiting == [("k!a", {"n": 1})]
    assert receiver.bell.wid == wid
    assert layer.attachment.waiters.slot(wid)[0] != W_WAITING
    layer.send("k!b", {"n": 2})
    assert select.select([receiver.bell.sock], [], [], 0)[0] == []
    assert _results([receiver.receive(["k!"])]) == [("k!b", {"n": 2})]
