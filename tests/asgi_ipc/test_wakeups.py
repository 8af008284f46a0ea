"""Crash-safe wake-ups: a sender killed anywhere never leaves a receiver asleep on a message.

Two ways in. Deterministically, the tracer of ``test_recovery`` stops a send (or a receive that
passes the wake on, or a send that meets a dead waiter first) after every executed line,
including the lines after the unlock and in the ring; the harness then does what the kernel and
the next locker would do - a 'process' stopped while holding the robust mutex gets it repaired
(``Attachment._repair``) - and asserts: if a message waits, a sleeping waiter was rung, or its
next check (``Attachment.stalled``, every ``CHECK_INTERVAL``) fires and its take gets the
message. With real processes, a sender is stopped (SIGSTOP, by the ``ASGI_IPC_TEST_STOP_AT_RING``
hook) at the very ``sendto`` of its ring, in the C and the Python path, and SIGKILLed there; the
receiver must get the message long before its ``receive_timeout``.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import time

import pytest

from asgi_ipc.doorbell import STOP_AT_RING, Doorbell
from asgi_ipc.layout import W_WAITING
from asgi_ipc.lock import _unlock
from tests.asgi_ipc.tracing import SHARDS, SWEEP_SEGMENT, kill_points, trace_lines

CTX = multiprocessing.get_context("fork")


class Killed(BaseException):
    """Raised by the tracer: the 'process' dies here."""


def rung(bell: Doorbell) -> bool:
    """Whether a ring is pending on ``bell`` (consumed)."""
    ready = select.select([bell.sock], [], [], 0)[0]
    return bool(ready) and bell.drain() > 0


def wakes(layer, bell: Doorbell, keys: list[str]) -> bool:
    """Whether the receiver sleeping on ``bell`` gets a waiting message: it was rung, or its
    next check finds it must look again; either way its take then returns the message."""
    if not (rung(bell) or layer.attachment.stalled(bell.wid)):
        return False
    return layer.take(keys, bell) is not None


def waiting_bell(layer, keys: list[str]) -> Doorbell:
    """A doorbell of this process registered as waiting on ``keys`` (as a blocked receive is)."""
    bell = Doorbell(layer.attachment.segment.name)
    assert layer.take(keys, bell) is None
    assert bell.wid >= 0
    return bell


def killed_after(n: int, layer, operation) -> bool:
    """Run ``operation`` stopped after ``n`` traced lines; return True if it completed.

    If it died holding the lock, the next locker would get EOWNERDEAD and repair: do that.
    (Whether it held the lock is noted at the kill: ``Killed`` unwinds through ``with`` blocks,
    which release it, where a real SIGKILL would not.)
    """
    att = layer._a()
    lock = att.lock
    depth = 0
    holding = False

    def acquire() -> None:
        nonlocal depth
        type(lock).acquire(lock)
        depth += 1

    def release() -> None:
        nonlocal depth
        depth -= 1
        type(lock).release(lock)

    def kill_at(line: int) -> None:
        nonlocal holding
        if line == n:
            holding = depth > 0
            raise Killed

    lock.acquire, lock.release = acquire, release
    try:
        trace_lines(operation, kill_at)
        return True
    except Killed:
        _unlock(lock.ptr)  # harmless EPERM if already released
        if holding:  # the next locker gets EOWNERDEAD and repairs
            with lock:
                att._repair()
                att.store._cache.clear()
        return False
    finally:
        del lock.acquire, lock.release


def sweep(layer, setup, operation, verify, shard: int) -> int:
    """Kill ``operation`` after every line of ``shard``'s kill points in turn (fresh state each
    time); return the point at which it completed (at most ``SHARDS - 1`` past its last line)."""
    att = layer._a()
    for n in kill_points(shard):
        layer.flush()
        with att.lock:  # the same arena shape every time, so line n is the same line
            att._repair()
            att.store._cache.clear()
        state = setup(layer)
        completed = killed_after(n, layer, lambda: operation(layer))
        verify(layer, state, completed)
        for bell in state:
            with att.lock:
                if att.waiters.slot(bell.wid)[1] == os.getpid():  # not freed as dead already
                    att.waiters.free(bell.wid)
            bell.close()
        if completed:
            return n
    raise AssertionError("operation never completed")


#: The tracer sees only Python lines: the sweeps run the pure-Python path (the C path's rings
#: are covered by the real-process test below).
pure = pytest.mark.parametrize("impl", ["pure"], indirect=True)

#: Each sweep test runs once per shard of its kill points (see ``tracing.kill_points``).
sharded = pytest.mark.parametrize("shard", range(SHARDS))


def queued(layer, channel: str) -> int:
    return layer.channel_statistics(channel)["messages_pending"]


@pure
@sharded
def test_killed_send_never_leaves_its_waiter_asleep(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify(layer, bells, completed):
        (bell,) = bells
        if completed:
            assert queued(layer, "q") == 1 and rung(bell)
        elif queued(layer, "q"):
            assert wakes(layer, bell, ["q"]), "a message waits and its waiter sleeps on"

    lines = sweep(layer, lambda l: [waiting_bell(l, ["q"])],
                  lambda l: l.send("q", {"id": "new"}), verify, shard)
    assert lines > 10


@pure
@sharded
def test_killed_send_past_a_dead_waiter_still_wakes_the_live_one(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def setup(layer):
        dead = waiting_bell(layer, ["q"])
        dead.sock.close()  # its doorbell is gone: the ring is refused
        return [dead, waiting_bell(layer, ["q"])]

    def verify(layer, bells, completed):
        if completed:
            assert rung(bells[1])
        elif queued(layer, "q"):
            assert wakes(layer, bells[1], ["q"]), "a message waits and the live waiter sleeps on"

    sweep(layer, setup, lambda l: l.send("q", {"id": "new"}), verify, shard)


@pure
@sharded
def test_killed_receive_passes_the_wake_on(make_layer, shard):
    """Two messages wait and two receivers sleep (a state a burst of sends can leave): a
    third receiver takes one; killed anywhere, the message left must have a rung waiter."""
    layer = make_layer(**SWEEP_SEGMENT)

    def setup(layer):
        bells = [waiting_bell(layer, ["q"]), waiting_bell(layer, ["q"])]
        att = layer._a()
        with att.lock:  # queue without waking, as if the senders' rings were consumed
            cid = att.store.find(b"q")
            for i in range(2):
                att.store.enqueue(cid, b"q", b"\x81\xa2id\x01", time.time() + 60, time.time(), 100)
        return bells

    def verify(layer, bells, completed):
        left = queued(layer, "q")
        if completed:
            assert left == 1 and any([rung(b) for b in bells])
        elif left == 1:  # one was taken: the other must not wait for a sleeping receiver
            assert any([wakes(layer, b, ["q"]) for b in bells]), "a message is left, all sleep"

    sweep(layer, setup, lambda l: l.receive(["q"]), verify, shard)


def _receiver(prefix: str, out) -> None:
    from asgi_ipc import IPCChannelLayer

    layer = IPCChannelLayer(prefix=prefix, create=False, receive_timeout=30)
    channel, message = layer.receive(["q"], block=True)
    out.send((channel, message, time.monotonic()))


def _stopping_sender(prefix: str) -> None:
    os.environ[STOP_AT_RING] = "1"
    from asgi_ipc import IPCChannelLayer

    layer = IPCChannelLayer(prefix=prefix, create=False)
    layer.send("q", {"id": "stuck"})
    os._exit(3)  # the ring must never return: the test kills us while stopped at it


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_sender_killed_at_its_ring_does_not_stall_the_receiver(make_layer, impl):
    layer = make_layer(receive_timeout=30)
    att = layer._a()
    here, there = CTX.Pipe(duplex=False)
    receiver = CTX.Process(target=_receiver, args=(layer.prefix, there))
    receiver.start()
    sender = None
    try:
        def receiver_waiting() -> bool:
            return any(att.waiters.slot(w)[0] == W_WAITING and att.waiters.slot(w)[1] == receiver.pid
                       for w in range(att.waiters.count))

        _wait_for(receiver_waiting, 10, "the receiver to block")
        sender = CTX.Process(target=_stopping_sender, args=(layer.prefix,))
        sender.start()
        _wait_for(lambda: _state(sender.pid) == "T", 10, "the sender to stop at its ring")
        stopped_at = time.monotonic()
        os.kill(sender.pid, signal.SIGKILL)  # dies at its ring: it never rings
        sender.join(5)
        assert sender.exitcode == -signal.SIGKILL
        assert here.poll(10), "the receiver slept through the message its killed sender queued"
        channel, message, got_at = here.recv()
        assert (channel, message) == ("q", {"id": "stuck"})
        waited = got_at - stopped_at
        # receive_timeout is 30 s: anything near it would mean the wake-up was lost
        assert waited < 10, f"the receiver waited {waited:.1f} s for the message"
        print(f"\n[{impl}] receiver got the message {waited * 1000:.0f} ms after its sender "
              "stopped at the ring (then was killed)")
    finally:
        for proc in (receiver, sender):
            if proc is not None and proc.is_alive():
                proc.kill()
            if proc is not None:
                proc.join(5)
    assert layer.check() == []
