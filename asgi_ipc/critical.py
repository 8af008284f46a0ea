"""The layer's two critical sections, defined once: "append and pick a waiter" and "take, or
register as a waiter".

Theory of operation
-------------------
Everything a sender or a receiver does to the segment under the lock is one of two sections:

- ``append``: link one entry (a message, or one group fan-out entry) at the tail of a queue and
  pick ONE waiter of that queue (mark it ``NOTIFIED``);
- ``take``: pop the head of the first non-empty queue among the receiver's keys (in a rotating
  order) and pass the wake on to a waiter of any of those queues with messages left; or, if
  every queue is empty and the receiver has a doorbell, register its waiter slot on the queues
  in the SAME lock hold, so a send can never slip between the empty check and the sleep.

Each runs in C (``_fastpath``) in one lock hold when the case is common; whatever the C code
declines (a queue record to create, a full queue, an expired head, no free block or waiter slot,
more channels than a slot lists, a bad reference) it declines before changing anything, and the
whole section runs here in Python on the pure modules (``store``, ``waiters``), which are the
reference. Both keep the commit order that crash repair relies on (see ``recovery.py``).

Picked waiters are rung after the lock is released (see "Crash-safe wake-ups" in
``layer.py``); a waiter whose doorbell is gone has its slot freed and another waiter of its
queue is picked, and its process is handed to ``on_dead`` (the layer reclaims what it left).

``Sections`` is bound to one process's ``Attachment``; ``IPCChannelLayer`` makes one per
attachment and every caller - the layer's ``send``/``receive``/``send_group`` and the event-loop
receivers of ``reactor_receive`` through the layer's public ``take``/``release_waiter`` - goes
through it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol

from .attachment import OWNERDEAD, SLOW, TIMEOUT, Attachment
from .errors import SegmentError
from .layout import W_FREE
from .segment import is_alive
from .store import Popped

__all__ = ["Sections", "Bell"]

#: A picked waiter to ring: ``(wid, pid, nonce, cid)``.
Pick = tuple[int, int, int, int]
#: A waiter whose doorbell was found gone: ``(wid, pid, cid)``.
Gone = tuple[int, int, int]


class Bell(Protocol):
    """What ``take`` needs of a receiver's doorbell: its identity and its waiter slot."""

    pid: int
    nonce: int
    wid: int  # the waiter slot this doorbell answers to, -1 for none yet


class Sections:
    """The critical sections on one process's attachment (C fast path first, then Python)."""

    def __init__(self, att: Attachment, on_dead: Callable[[list[int]], None]) -> None:
        """``on_dead(pids)`` is called (lock released) with processes whose doorbell was gone
        when rung; it should reclaim what they left if they are really dead."""
        self.att = att
        self.on_dead = on_dead
        self._rotation = 0  # where the next take starts among its keys (fairness)

    # -- append ----------------------------------------------------------------------------
    def append(self, key: bytes, name: bytes, payload: bytes, deadline: float, t: float,
               capacity: int, extra: bytes = b"", kind: int = 0) -> None:
        """Append one entry (full channel ``name``, ``payload``, fan-out ``extra``/``kind``) to
        the queue ``key`` and wake one receiver waiting on it.

        Raises ``ChannelFull`` at ``capacity`` (``ArenaFull`` without memory, ``TableFull``
        without a free channel record). Also amortises the expiry sweep over sends.
        """
        att = self.att
        fast = att.fast
        if fast is not None:
            result = fast.send(key, name, payload, deadline, t, capacity, extra, kind)
            if result is None or type(result) is list:
                att.fast_sends += 1
                if att.fast_sends % 32 == 0:  # the sweep, amortised over fast sends
                    with att.lock:
                        att.store.sweep_step(t, budget=64)
                if result:
                    self.ring((), result)
                return
            self._fast_failed(result)
        store = att.store
        pick = None
        with att.lock:
            cid = store.find_or_create(key)
            store.enqueue(cid, name, payload, deadline, t, capacity, extra=extra, kind=kind)
            store.sweep_step(t)
            if att.waiters.has_waiters(cid):
                pick = att.waiters.pick(cid)
        if pick is not None:
            self.ring([(*pick, cid)])

    # -- take --------------------------------------------------------------------------------
    def take(self, keys: tuple[bytes, ...], t: float, bell: Bell | None = None) -> tuple | None:
        """Pop the oldest unexpired entry of the first non-empty queue of ``keys`` and return
        it as a tuple whose first four items are ``Popped``'s fields, or return None. Each take
        starts one key further on than the last, so a busy queue cannot starve the others.

        With a ``bell``, its waiter slot (``bell.wid``; one is allocated if it is -1 and
        written back) is, in the same lock hold, registered on every queue of ``keys`` when
        they are all empty, and unregistered when an entry is taken. Queue records a waiter
        registers on are created; a ``prefix!`` queue records ``bell.pid`` as its reader.
        """
        att = self.att
        fast = att.fast
        n = len(keys)
        start = self._rotation % n if n > 1 else 0
        self._rotation += 1
        if fast is not None:
            if bell is None:
                result = fast.take(keys, start, t)
            else:
                result = fast.take(keys, start, t, bell.wid, bell.pid, bell.nonce)
            if type(result) is tuple:  # (name, payload, extra, kind, gone)
                if result[4]:
                    self.ring((), result[4])
                return result
            if result is None:
                return None
            if result >= 0:
                bell.wid = result  # type: ignore[union-attr]
                return None
            self._fast_failed(result)
        return self._take_python(keys, start, t, bell)

    def _take_python(self, keys: tuple[bytes, ...], start: int, t: float,
                     bell: Bell | None) -> Popped | None:
        """``take`` on the pure modules, under the lock (everything the C path declines)."""
        att = self.att
        store, waiters = att.store, att.waiters
        n = len(keys)
        popped = None
        picks: list[Pick] = []
        with att.lock:
            cids = []
            for i in range(n):
                key = keys[(start + i) % n]
                cid = store.find(key)
                if cid < 0:
                    if bell is None:
                        continue
                    cid = store.find_or_create(key)
                cids.append(cid)
                popped = store.pop(cid, t)
                if popped is not None:
                    break
            if popped is not None:
                if bell is not None and bell.wid >= 0:
                    waiters.unregister(bell.wid)
                # Pass the wake on: another receiver asleep on one of these queues while
                # entries are left there must not sleep through them.
                for key in keys:
                    other = store.find(key)
                    if other >= 0 and store.depth(other) and store.has_waiter_bits(other):
                        pick = waiters.pick(other)
                        if pick is not None:
                            picks.append((*pick, other))
            elif bell is not None:
                if bell.wid < 0:
                    bell.wid = waiters.alloc(bell.pid, bell.nonce, is_alive)
                else:
                    waiters.unregister(bell.wid)
                waiters.register(bell.wid, cids)
                for cid in cids:  # who reads a ``prefix!`` queue, for forget_process
                    store.set_owner(cid, bell.pid)
        if picks:
            self.ring(picks)
        return popped

    # -- waiter slots ------------------------------------------------------------------------
    def unregister(self, bell: Bell) -> None:
        """Stop ``bell``'s slot waiting (it stays allocated to the doorbell)."""
        if bell.wid >= 0:
            with self.att.lock:
                self.att.waiters.unregister(bell.wid)

    def release(self, bell: Bell) -> None:
        """Give ``bell``'s waiter slot back (``bell.wid`` becomes -1)."""
        if bell.wid >= 0:
            with self.att.lock:
                self.att.waiters.free(bell.wid)
            bell.wid = -1

    # -- after the lock ----------------------------------------------------------------------
    def ring(self, picks: Iterable[Pick], gone: Iterable[Gone] = ()) -> None:
        """Ring picked waiters - call with the lock released.

        A waiter whose doorbell is gone (``gone``, also as found by the C path) has its slot
        freed and another waiter of its queue is picked and rung; its process goes to
        ``on_dead``."""
        att = self.att
        dead: list[int] = []
        gone = list(gone)
        for _ in range(att.waiters.count + 1):
            gone += [(wid, pid, cid) for wid, pid, nonce, cid in picks
                     if not att.ringer.ring(pid, nonce)]
            if not gone:
                break
            picks = []
            with att.lock:
                for wid, pid, cid in gone:
                    state, slot_pid = att.waiters.slot(wid)[:2]
                    if state != W_FREE and slot_pid == pid:
                        att.waiters.free(wid)
                    pick = att.waiters.pick(cid)
                    if pick is not None:
                        picks.append((*pick, cid))
            dead += [pid for _wid, pid, _cid in gone]
            gone = []
        if dead:
            self.on_dead(dead)

    def _fast_failed(self, code: int) -> None:
        """Handle a non-success code of the C fast path (the Python path follows)."""
        if code == OWNERDEAD:  # we hold the lock of a dead holder: repair, then go on
            self.att.lock.adopt_owner_dead()
        elif code == TIMEOUT:
            self.att.lock.raise_timeout()
        elif code != SLOW:
            raise SegmentError(f"cannot take the segment lock (code {code})")
