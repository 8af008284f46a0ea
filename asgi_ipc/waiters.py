"""Who is blocked waiting for which channels (pure: no locks, no sockets).

Theory of operation
-------------------
A process about to block takes a waiter slot, lists the channel records it waits on in the
slot, and sets its bit in each of those channels' waiter bitmaps (256 bits per channel record).
A sender that links a message into a channel whose bitmap is non-zero picks ONE slot that is
still ``WAITING``, marks it ``NOTIFIED``, clears its bits everywhere, and (after releasing the
lock) rings that process's doorbell. Waking one waiter per message avoids a thundering herd;
a receiver that takes a message and sees more left for other waiters passes the wake on
(``Layer`` does this), so no message waits while a willing receiver sleeps. A sender killed
between the pick and the ring leaves its receiver ``NOTIFIED`` but unrung: the receiver notices
at its next periodic check (see "Crash-safe wake-ups" in layer.py).

A slot waiting on more channels than it can list is registered as "any": it is woken by every
send. Slots of processes that died are reclaimed when a sender finds their doorbell gone or when
the table runs out. Everything here is rebuildable: recovery frees all slots of dead processes
and recomputes the bitmaps from the slots of live ones.
"""

from __future__ import annotations

import struct
from typing import Iterable

from .errors import SegmentCorrupt, TableFull
from .layout import (
    H_ANY_AT,
    HEADER,
    WAIT_ANY,
    WAIT_CHANNELS,
    WAITER,
    WAITER_RECORD,
    W_FREE,
    W_NOTIFIED,
    W_WAITING,
    Layout,
)
from .store import Store

__all__ = ["Waiters", "H_ANY_AT"]

_ANY = HEADER.run("any_waiters")  # bitmap of slots registered as "any", at H_ANY_AT
_ANY_WORDS = len(_ANY.unpack(bytes(_ANY.size)))
_NO_ANY = bytes(_ANY.size)
_U32 = struct.Struct("<I")
_FREE_AT = HEADER.at("waiter_free")  # head of the free slots (slot + 1)
_IDS_AT = WAITER_RECORD.at("channels")  # WAITER covers the fields before it


class Waiters:
    """Waiter slots of one segment buffer."""

    def __init__(self, buf, layout: Layout, store: Store) -> None:
        self.buf = buf
        self.layout = layout
        self.store = store
        self.count = layout.sizes.waiters

    def _w(self, wid: int) -> int:
        if not 0 <= wid < self.count:
            raise SegmentCorrupt(f"waiter reference {wid} out of range")
        return self.layout.waiter(wid)

    def slot(self, wid: int) -> tuple[int, int, int, int, int]:
        """``(state, pid, nonce, count, next_free)`` of a slot."""
        return WAITER.unpack_from(self.buf, self._w(wid))

    def alloc(self, pid: int, nonce: int, is_alive=None) -> int:
        """Take a free slot for ``pid``; reclaim dead processes' slots if none is free."""
        head = _U32.unpack_from(self.buf, _FREE_AT)[0]
        if not head and is_alive is not None:
            self.reclaim_dead(is_alive)
            head = _U32.unpack_from(self.buf, _FREE_AT)[0]
        if not head:
            raise TableFull(f"all {self.count} waiter slots are in use: too many threads or "
                            "processes blocked on this layer at once")
        wid = head - 1
        at = self._w(wid)
        state, _pid, _nonce, _count, nxt = WAITER.unpack_from(self.buf, at)
        if state != W_FREE:
            raise SegmentCorrupt(f"waiter free list holds slot {wid}, which is in use")
        _U32.pack_into(self.buf, _FREE_AT, nxt)
        WAITER.pack_into(self.buf, at, W_NOTIFIED, pid, nonce, 0, 0)
        return wid

    def register(self, wid: int, cids: list[int]) -> None:
        """Mark slot ``wid`` as waiting on channel records ``cids``."""
        at = self._w(wid)
        _state, pid, nonce, _count, _nxt = WAITER.unpack_from(self.buf, at)
        if len(cids) > WAIT_CHANNELS:
            WAITER.pack_into(self.buf, at, W_WAITING, pid, nonce, WAIT_ANY, 0)
            self._set_any(wid, True)
            return
        struct.pack_into(f"<{len(cids)}I", self.buf, at + _IDS_AT, *cids)
        for cid in cids:
            self.store.set_waiter_bit(cid, wid, True)
        WAITER.pack_into(self.buf, at, W_WAITING, pid, nonce, len(cids), 0)

    def _channels(self, wid: int, at: int, count: int) -> Iterable[int]:
        if count == WAIT_ANY or count == 0:
            return ()
        if count > WAIT_CHANNELS:
            raise SegmentCorrupt(f"waiter slot {wid} lists {count} channels")
        ids = struct.unpack_from(f"<{count}I", self.buf, at + _IDS_AT)
        for cid in ids:
            if cid >= self.store.channel_count:
                raise SegmentCorrupt(f"waiter slot {wid} lists channel record {cid}")
        return ids

    def unregister(self, wid: int) -> None:
        """Clear slot ``wid``'s registrations (it stays allocated, ``NOTIFIED``)."""
        at = self._w(wid)
        state, pid, nonce, count, _nxt = WAITER.unpack_from(self.buf, at)
        for cid in self._channels(wid, at, count):
            self.store.set_waiter_bit(cid, wid, False)
        if count == WAIT_ANY:
            self._set_any(wid, False)
        WAITER.pack_into(self.buf, at, W_NOTIFIED if state != W_FREE else W_FREE, pid, nonce, 0, 0)

    def free(self, wid: int) -> None:
        """Unregister and return slot ``wid`` to the free list."""
        self.unregister(wid)
        at = self._w(wid)
        WAITER.pack_into(self.buf, at, W_FREE, 0, 0, 0, _U32.unpack_from(self.buf, _FREE_AT)[0])
        _U32.pack_into(self.buf, _FREE_AT, wid + 1)

    def _set_any(self, wid: int, on: bool) -> None:
        words = list(_ANY.unpack_from(self.buf, H_ANY_AT))
        bit = 1 << (wid & 63)
        words[wid >> 6] = (words[wid >> 6] | bit) if on else (words[wid >> 6] & ~bit)
        _ANY.pack_into(self.buf, H_ANY_AT, *words)

    def pick(self, cid: int) -> tuple[int, int, int] | None:
        """Choose one waiting slot for channel ``cid``; mark it notified.

        Returns ``(wid, pid, nonce)`` to ring, or ``None`` if nobody waits. Stale bits (slots no
        longer waiting) are cleared on the way.
        """
        words = self.store.waiters_of(cid)
        anyw = _ANY.unpack_from(self.buf, H_ANY_AT)
        for w in range(_ANY_WORDS):
            word = words[w] | anyw[w]
            while word:
                low = word & -word
                wid = (w << 6) + low.bit_length() - 1
                word ^= low
                at = self._w(wid)
                state, pid, nonce, _count, _nxt = WAITER.unpack_from(self.buf, at)
                if state == W_WAITING:
                    self.unregister(wid)
                    return wid, pid, nonce
                if words[w] & low:
                    self.store.set_waiter_bit(cid, wid, False)
        return None

    def has_waiters(self, cid: int) -> bool:
        """Whether any slot may be waiting on channel ``cid`` (cheap; may be stale)."""
        return self.store.has_waiter_bits(cid) or self.buf[H_ANY_AT:H_ANY_AT + _ANY.size] != _NO_ANY

    def reclaim_dead(self, is_alive) -> int:
        """Free every slot whose process is gone; return how many."""
        freed = 0
        for wid in range(self.count):
            state, pid, _nonce, _count, _nxt = WAITER.unpack_from(self.buf, self._w(wid))
            if state != W_FREE and not is_alive(pid):
                self.free(wid)
                freed += 1
        return freed

    def reset_free_list(self) -> None:
        """Chain every free slot (all slots after a reset) into the free list."""
        head = 0
        for wid in range(self.count - 1, -1, -1):
            at = self._w(wid)
            state, pid, nonce, count, _ = WAITER.unpack_from(self.buf, at)
            if state == W_FREE:
                WAITER.pack_into(self.buf, at, W_FREE, 0, 0, 0, head)
                head = wid + 1
        _U32.pack_into(self.buf, _FREE_AT, head)
