"""Channels and their message queues, in a segment buffer (pure: no locks, no processes).

Theory of operation
-------------------
A channel record (see ``layout``) is found through the channel index by its *key*: the
channel's name, or for process-specific channels its non-local part (``prefix!``), so all
``prefix!*`` messages share one queue and one capacity, as ASGI 1 requires. The queue is a
singly linked list of message blocks; ``head`` and the ``next`` link of the last message are the
commit points: a message becomes visible when it is linked, and is taken when ``head`` moves
past it. ``tail`` and ``depth`` are caches that recovery recomputes by walking from ``head``.

Every method assumes the caller holds the segment lock. Costs are O(message size): nothing on
the send/receive path walks a queue or a table; ``sweep_step`` visits a bounded number of
records per call, so expired messages in queues nobody reads are reclaimed without scans.

Records of single-reader (``?``) and process-specific (``!``) channels are released by the sweep
once they are empty and nobody waits on them (their counters are folded into the global totals);
plain channels keep their record, and so their statistics, while the table has room. Nothing on
the send/receive path releases a record, so those paths never touch the index but to read it.
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple

from .arena import Arena
from .errors import ArenaFull, ChannelFull, SegmentCorrupt, TableFull
from .index import HashIndex, name_hash
from .layout import (
    BM_ORDER,
    BM_TAG,
    BM_USED,
    CH_NAME_AT,
    CH_O_DEPTH,
    CH_O_EXPIRED,
    CH_O_FULL,
    CH_O_HASH,
    CH_O_HEAD,
    CH_O_KIND,
    CH_O_NAMELEN,
    CH_O_OWNER,
    CH_O_RECEIVED,
    CH_O_SENT_RATE,
    CH_O_TAIL,
    CH_O_USED,
    CH_O_WAITERS,
    CHANNEL_RECORD,
    CHANNEL_SIZE,
    COUNTERS,
    HEADER,
    KIND_PLAIN,
    KIND_PROCESS,
    KIND_SINGLE,
    MESSAGE,
    MSG,
    NAME_MAX,
    UNIT,
    Layout,
)

__all__ = ["Store", "Popped", "channel_kind", "now"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HTD = CHANNEL_RECORD.run("head", "tail", "depth")  # at CH_O_HEAD
_TD = CHANNEL_RECORD.run("tail", "depth")  # at CH_O_TAIL
_SENT = CHANNEL_RECORD.run("rate_second", "sent", "sent_this_second", "sent_last_second")
_FULL = CHANNEL_RECORD.run("full", "full_this_second", "full_last_second")  # at CH_O_FULL
_WAITERS = CHANNEL_RECORD.run("waiters")  # at CH_O_WAITERS: one bit per waiter slot
_WAITERS_SIZE = _WAITERS.size
_NO_WAITERS = bytes(_WAITERS_SIZE)
_COUNTER_AT = {name: HEADER.at("counters") + HEADER["counters"].item_size * i
               for i, name in enumerate(COUNTERS)}
_CURSOR_AT = HEADER.at("sweep_cursor")
_CH_FREE_AT = HEADER.at("channel_free")  # head of the free channel-record list
_M_NEXT = MESSAGE.at("next")
# positions in an unpacked MSG (the hot paths unpack it whole, in MESSAGE's field order)
_MSG_SENT_AT, _MSG_NEXT, _MSG_PAYLOADLEN, _MSG_EXTRALEN, _MSG_NAMELEN = (
    MESSAGE.position(name) for name in ("sent_at", "next", "payload_len", "extra_len", "name_len"))
_WAITER_WORD = CHANNEL_RECORD["waiters"].item_size  # bytes of one word of the bitmap
_MSG_unpack = MSG.unpack_from
_MSG_pack = MSG.pack_into


class Popped(NamedTuple):
    """A message taken from a queue: full channel name, payload, fan-out names, kind."""

    name: bytes
    payload: bytes
    extra: bytes
    kind: int


def channel_kind(key: bytes) -> int:
    """The kind of a channel key (``KIND_PLAIN``, ``KIND_SINGLE`` or ``KIND_PROCESS``)."""
    if key.endswith(b"!"):
        return KIND_PROCESS
    if b"?" in key:
        return KIND_SINGLE
    return KIND_PLAIN


def now() -> float:
    """The clock every deadline uses (wall clock: deadlines cross processes)."""
    return time.time()


class Store:
    """Operations on the channel records and message queues of one segment buffer."""

    def __init__(self, buf, layout: Layout) -> None:
        self.buf = buf
        self.layout = layout
        self.arena = Arena(buf, layout)
        self.channel_count = layout.sizes.channels
        self.index = HashIndex(buf, layout.channel_index_at, layout.channel_index_slots,
                               self.channel_count)
        self.on_expired = None  # callback(name: bytes, extra: bytes, kind) set by the layer
        self._arena_at = layout.arena_at
        self._channels_at = layout.channels_at
        self._map_at = layout.blockmap_at
        self._units = layout.sizes.unit_count
        self._cache: dict[bytes, int] = {}  # key -> record id, validated on every use

    # -- counters ------------------------------------------------------------------------------
    def bump(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a global counter."""
        at = _COUNTER_AT[counter]
        _U64.pack_into(self.buf, at, _U64.unpack_from(self.buf, at)[0] + n)

    def counters(self) -> dict[str, int]:
        """Global counters: those kept in the header plus the sums over live channel records."""
        out = {name: _U64.unpack_from(self.buf, at)[0] for name, at in _COUNTER_AT.items()}
        for cid in self.used_channels():
            at = self._channels_at + cid * CHANNEL_SIZE
            out["sent"] += _SENT.unpack_from(self.buf, at + CH_O_SENT_RATE)[1]
            out["received"] += _U64.unpack_from(self.buf, at + CH_O_RECEIVED)[0]
            out["expired"] += _U64.unpack_from(self.buf, at + CH_O_EXPIRED)[0]
            out["channel_full"] += _U64.unpack_from(self.buf, at + CH_O_FULL)[0]
        return out

    # -- channel records -----------------------------------------------------------------------
    def find(self, key: bytes) -> int:
        """Record id of the channel with this key, or -1."""
        cid = self._cache.get(key)
        buf = self.buf
        if cid is not None:
            at = self._channels_at + cid * CHANNEL_SIZE
            n = len(key)
            if buf[at] and buf[at + CH_O_NAMELEN] == n and \
                    buf[at + CH_NAME_AT:at + CH_NAME_AT + n] == key:
                return cid
            del self._cache[key]
        n = len(key)
        channels_at = self._channels_at

        def same(rid: int) -> bool:
            at = channels_at + rid * CHANNEL_SIZE
            return buf[at + CH_O_NAMELEN] == n and buf[at + CH_NAME_AT:at + CH_NAME_AT + n] == key

        cid = self.index.lookup(name_hash(key), same)
        if cid >= 0:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = cid
        return cid

    def find_or_create(self, key: bytes) -> int:
        """Record id of the channel with this key, creating the record if needed."""
        cid = self.find(key)
        if cid >= 0:
            return cid
        cid = self._take_free_record()
        at = self.record_offset(cid)
        buf = self.buf
        buf[at:at + CHANNEL_SIZE] = bytes(CHANNEL_SIZE)
        h = name_hash(key)
        buf[at + CH_O_KIND] = channel_kind(key)
        buf[at + CH_O_NAMELEN] = len(key)
        _U32.pack_into(buf, at + CH_O_HASH, h)
        buf[at + CH_NAME_AT:at + CH_NAME_AT + len(key)] = key
        buf[at + CH_O_USED] = 1  # commit
        self.index.insert(h, cid)
        self._cache[key] = cid
        return cid

    def _take_free_record(self) -> int:
        head = _U32.unpack_from(self.buf, _CH_FREE_AT)[0]
        if not head:
            self._recycle_idle_plain()
            head = _U32.unpack_from(self.buf, _CH_FREE_AT)[0]
            if not head:
                raise TableFull(
                    f"all {self.channel_count} channel records are in use; raise the layer's "
                    "'channels' size or drain the queues")
        cid = head - 1
        if cid >= self.channel_count:
            raise SegmentCorrupt(f"channel free list points at record {cid}")
        at = self.record_offset(cid)
        if self.buf[at + CH_O_USED]:
            raise SegmentCorrupt(f"channel free list holds record {cid}, which is in use")
        _U32.pack_into(self.buf, _CH_FREE_AT, _U32.unpack_from(self.buf, at + CH_O_HEAD)[0])
        return cid

    def _release_record(self, cid: int) -> None:
        at = self.record_offset(cid)
        buf = self.buf
        # keep the global totals whole: fold this record's counters into the header
        sent = _SENT.unpack_from(buf, at + CH_O_SENT_RATE)[1]
        for counter, value in (
            ("sent", sent),
            ("received", _U64.unpack_from(buf, at + CH_O_RECEIVED)[0]),
            ("expired", _U64.unpack_from(buf, at + CH_O_EXPIRED)[0]),
            ("channel_full", _U64.unpack_from(buf, at + CH_O_FULL)[0]),
        ):
            if value:
                self.bump(counter, value)
        h = _U32.unpack_from(buf, at + CH_O_HASH)[0]
        buf[at + CH_O_USED] = 0  # commit
        self.index.remove(h, cid)
        _HTD.pack_into(buf, at + CH_O_HEAD, _U32.unpack_from(buf, _CH_FREE_AT)[0], 0, 0)
        _U32.pack_into(buf, _CH_FREE_AT, cid + 1)

    def _recycle_idle_plain(self) -> None:
        """When the table is full, release channels that are empty and unwatched."""
        released = 0
        for cid in self.used_channels():
            if self._idle(self.record_offset(cid)):
                self._release_record(cid)
                released += 1
                if released >= 64:
                    return

    def _idle(self, at: int) -> bool:
        return (_U32.unpack_from(self.buf, at + CH_O_HEAD)[0] == 0
                and self.buf[at + CH_O_WAITERS:at + CH_O_WAITERS + _WAITERS_SIZE] == _NO_WAITERS)

    def release_if_idle(self, cid: int) -> None:
        """Release an ephemeral (``?``/``!``) channel record that is empty and unwatched."""
        at = self._channels_at + cid * CHANNEL_SIZE
        if self.buf[at + CH_O_KIND] != KIND_PLAIN and self._idle(at):
            self._release_record(cid)

    def key_of(self, cid: int) -> bytes:
        """The key (name) of a used channel record."""
        at = self.record_offset(cid)
        n = self.buf[at + CH_O_NAMELEN]
        if n > NAME_MAX:
            raise SegmentCorrupt(f"channel record {cid} has a name of {n} bytes")
        return bytes(self.buf[at + CH_NAME_AT:at + CH_NAME_AT + n])

    def record_offset(self, cid: int) -> int:
        if not 0 <= cid < self.channel_count:
            raise SegmentCorrupt(f"channel record {cid} out of range")
        return self._channels_at + cid * CHANNEL_SIZE

    def set_owner(self, cid: int, pid: int) -> None:
        """Record ``pid`` as the reader of process-local channel ``cid`` (others: no-op)."""
        at = self.record_offset(cid)
        if self.buf[at + CH_O_KIND] == KIND_PROCESS and _U32.unpack_from(self.buf, at + CH_O_OWNER)[0] != pid:
            _U32.pack_into(self.buf, at + CH_O_OWNER, pid)

    def owned_by(self, pid: int) -> list[int]:
        """Ids of the process-local channel records whose reader is ``pid`` (an O(table) walk)."""
        buf = self.buf
        return [cid for cid in self.used_channels()
                if buf[self.record_offset(cid) + CH_O_KIND] == KIND_PROCESS
                and _U32.unpack_from(buf, self.record_offset(cid) + CH_O_OWNER)[0] == pid]

    def used_channels(self) -> list[int]:
        """Ids of all used channel records (an O(table) walk: statistics and tools only)."""
        buf, base = self.buf, self._channels_at
        return [cid for cid in range(self.channel_count) if buf[base + cid * CHANNEL_SIZE]]

    # -- queues --------------------------------------------------------------------------------
    def depth(self, cid: int) -> int:
        return _U32.unpack_from(self.buf, self._channels_at + cid * CHANNEL_SIZE + CH_O_DEPTH)[0]

    def enqueue(self, cid: int, name: bytes, payload: bytes, deadline: float, now: float,
                capacity: int, extra: bytes = b"", kind: int = 0) -> None:
        """Append a message to channel ``cid``.

        Raises ``ChannelFull`` when the queue holds ``capacity`` messages and ``ArenaFull``
        when no block is free even after reclaiming expired messages.
        """
        buf = self.buf
        at = self._channels_at + cid * CHANNEL_SIZE
        head, tail, depth = _HTD.unpack_from(buf, at + CH_O_HEAD)
        if tail and (tail > self._units or buf[self._map_at + tail - 1] & BM_TAG != BM_USED
                     or not head):
            raise SegmentCorrupt(f"channel record {cid} has a bad tail reference {tail}")
        if depth >= capacity:
            if head:
                self.expire_head(cid, now)  # expired messages do not count against capacity
                head, tail, depth = _HTD.unpack_from(buf, at + CH_O_HEAD)
            if depth >= capacity:
                self._count_full(at, now)
                raise ChannelFull(name.decode("ascii"))
        size = MSG.size + len(name) + len(extra) + len(payload)
        unit = self.arena.alloc(size)
        if unit < 0:
            self.sweep_step(now, budget=self.channel_count)
            unit = self.arena.alloc(size)
            if unit < 0:
                self.bump("arena_full")
                raise ArenaFull(
                    f"no room in shared memory for a {size}-byte message to "
                    f"{name.decode('ascii')!r} ({self.arena.free_bytes()} bytes free); consumers "
                    "are not keeping up or message_memory is too small")
        off = self._arena_at + unit * UNIT
        _MSG_pack(buf, off, deadline, now, 0, len(payload), len(extra), len(name), kind)
        p = off + MSG.size
        buf[p:p + len(name)] = name
        p += len(name)
        if extra:
            buf[p:p + len(extra)] = extra
            p += len(extra)
        buf[p:p + len(payload)] = payload
        # Commit: link the message in. Before this write it is unreachable (recovery frees it).
        if tail:
            _U32.pack_into(buf, self._arena_at + (tail - 1) * UNIT + _M_NEXT, unit + 1)
        else:
            _U32.pack_into(buf, at + CH_O_HEAD, unit + 1)
        _TD.pack_into(buf, at + CH_O_TAIL, unit + 1, depth + 1)
        sec = int(now)
        r_sec, sent, r_cur, r_prev = _SENT.unpack_from(buf, at + CH_O_SENT_RATE)
        if r_sec != sec:
            r_prev = r_cur if sec - r_sec == 1 else 0
            r_cur = 0
        _SENT.pack_into(buf, at + CH_O_SENT_RATE, sec, sent + 1, r_cur + 1, r_prev)

    def _message(self, ref: int) -> tuple[int, tuple]:
        """Validate message reference ``ref`` (unit + 1); return its offset and header."""
        unit = ref - 1
        if not 0 <= unit < self._units:
            raise SegmentCorrupt(f"message reference to unit {unit} of {self._units}")
        tag = self.buf[self._map_at + unit]
        if tag & BM_TAG != BM_USED:
            raise SegmentCorrupt(f"unit {unit} does not start an allocated block (map {tag:#x})")
        off = self._arena_at + unit * UNIT
        header = _MSG_unpack(self.buf, off)
        nlen = header[_MSG_NAMELEN]
        if MSG.size + nlen + header[_MSG_EXTRALEN] + header[_MSG_PAYLOADLEN] > \
                UNIT << (tag & BM_ORDER) or nlen > NAME_MAX:
            raise SegmentCorrupt(f"message at unit {unit} overruns its "
                                 f"{UNIT << (tag & BM_ORDER)}-byte block")
        return off, header

    def pop(self, cid: int, now: float) -> Popped | None:
        """Take the oldest unexpired message of channel ``cid`` (dropping expired ones)."""
        buf = self.buf
        at = self._channels_at + cid * CHANNEL_SIZE
        for _ in range(self._units + 1):
            head, tail, depth = _HTD.unpack_from(buf, at + CH_O_HEAD)
            if not head:
                return None
            off, (deadline, _sent, nxt, plen, elen, nlen, kind) = self._message(head)
            # Commit: the message is taken.
            _HTD.pack_into(buf, at + CH_O_HEAD, nxt, tail if nxt else 0, depth - 1 if depth else 0)
            p = off + MSG.size
            name = bytes(buf[p:p + nlen])
            extra = bytes(buf[p + nlen:p + nlen + elen]) if elen else b""
            if deadline <= now:
                self.arena.free(head - 1)
                self._expired(at, name, extra, kind)
                continue
            p += nlen + elen
            payload = bytes(buf[p:p + plen])
            self.arena.free(head - 1)
            _U64.pack_into(buf, at + CH_O_RECEIVED, _U64.unpack_from(buf, at + CH_O_RECEIVED)[0] + 1)
            return Popped(name, payload, extra, kind)
        raise SegmentCorrupt("message queue does not end (a cycle in its links)")

    def drain(self, cid: int) -> int:
        """Drop every message of channel ``cid`` (for ``flush``); return how many."""
        buf = self.buf
        at = self.record_offset(cid)
        dropped = 0
        for _ in range(self._units + 1):
            head = _U32.unpack_from(buf, at + CH_O_HEAD)[0]
            if not head:
                break
            _off, header = self._message(head)
            nxt = header[_MSG_NEXT]
            _HTD.pack_into(buf, at + CH_O_HEAD, nxt, 0 if not nxt else
                           _U32.unpack_from(buf, at + CH_O_TAIL)[0],
                           max(0, _U32.unpack_from(buf, at + CH_O_DEPTH)[0] - 1))
            self.arena.free(head - 1)
            dropped += 1
        return dropped

    def _expired(self, at: int, name: bytes, extra: bytes, kind: int) -> None:
        _U64.pack_into(self.buf, at + CH_O_EXPIRED,
                       _U64.unpack_from(self.buf, at + CH_O_EXPIRED)[0] + 1)
        if self.on_expired is not None:
            self.on_expired(name, extra, kind)

    def expire_head(self, cid: int, now: float) -> int:
        """Drop expired messages at the head of channel ``cid``; return how many."""
        buf = self.buf
        at = self._channels_at + cid * CHANNEL_SIZE
        dropped = 0
        for _ in range(self._units + 1):
            head, tail, depth = _HTD.unpack_from(buf, at + CH_O_HEAD)
            if not head:
                break
            off, (deadline, _sent, nxt, _plen, elen, nlen, kind) = self._message(head)
            if deadline > now:
                break
            _HTD.pack_into(buf, at + CH_O_HEAD, nxt, tail if nxt else 0, depth - 1 if depth else 0)
            p = off + MSG.size
            name = bytes(buf[p:p + nlen])
            extra = bytes(buf[p + nlen:p + nlen + elen]) if elen else b""
            self.arena.free(head - 1)
            self._expired(at, name, extra, kind)
            dropped += 1
        return dropped

    def sweep_step(self, now: float, budget: int = 8) -> None:
        """Reclaim expired messages from the next ``budget`` channel records (round robin).

        Senders call this regularly, so every queue is visited without any operation ever
        scanning the whole table.
        """
        buf = self.buf
        cursor = _U32.unpack_from(buf, _CURSOR_AT)[0] % self.channel_count
        for _ in range(min(budget, self.channel_count)):
            at = self._channels_at + cursor * CHANNEL_SIZE
            if buf[at]:
                if _U32.unpack_from(buf, at + CH_O_HEAD)[0]:
                    self.expire_head(cursor, now)
                self.release_if_idle(cursor)
            cursor = (cursor + 1) % self.channel_count
        _U32.pack_into(buf, _CURSOR_AT, cursor)

    # -- statistics ----------------------------------------------------------------------------
    def _count_full(self, at: int, now: float) -> None:
        buf = self.buf
        sec = int(now)
        full, cur, prev = _FULL.unpack_from(buf, at + CH_O_FULL)
        r_sec = _SENT.unpack_from(buf, at + CH_O_SENT_RATE)[0]
        if r_sec != sec:  # roll both rate windows together (they share the second field)
            r_sec, sent, s_cur, s_prev = _SENT.unpack_from(buf, at + CH_O_SENT_RATE)
            gap = sec - r_sec
            _SENT.pack_into(buf, at + CH_O_SENT_RATE, sec, sent, 0, s_cur if gap == 1 else 0)
            prev, cur = (cur if gap == 1 else 0), 0
        _FULL.pack_into(buf, at + CH_O_FULL, full + 1, cur + 1, prev)

    @staticmethod
    def _per_second(now: float, sec: int, cur: int, prev: int) -> float:
        """Events per second over the last second: the previous whole second's count,
        blended with the current partial second."""
        now_sec = int(now)
        frac = now - now_sec
        if now_sec == sec:
            return prev * (1.0 - frac) + cur
        if now_sec == sec + 1:
            return cur * (1.0 - frac)
        return 0.0

    def channel_stats(self, cid: int, now: float) -> dict[str, float | int]:
        """ASGI statistics of one channel record."""
        buf = self.buf
        at = self.record_offset(cid)
        head, _tail, depth = _HTD.unpack_from(buf, at + CH_O_HEAD)
        sec, sent, s_cur, s_prev = _SENT.unpack_from(buf, at + CH_O_SENT_RATE)
        full, f_cur, f_prev = _FULL.unpack_from(buf, at + CH_O_FULL)
        max_age = 0.0
        if head:
            _off, header = self._message(head)
            max_age = max(0.0, now - header[_MSG_SENT_AT])
        return {
            "messages_count": sent,
            "messages_count_per_second": self._per_second(now, sec, s_cur, s_prev),
            "messages_pending": depth,
            "messages_max_age": max_age,
            "channel_full_count": full,
            "channel_full_count_per_second": self._per_second(now, sec, f_cur, f_prev),
            "messages_received": _U64.unpack_from(buf, at + CH_O_RECEIVED)[0],
            "messages_expired": _U64.unpack_from(buf, at + CH_O_EXPIRED)[0],
        }

    # -- waiter bitmaps ------------------------------------------------------------------------
    def waiters_of(self, cid: int) -> tuple[int, int, int, int]:
        return _WAITERS.unpack_from(self.buf, self.record_offset(cid) + CH_O_WAITERS)

    def has_waiter_bits(self, cid: int) -> bool:
        at = self._channels_at + cid * CHANNEL_SIZE + CH_O_WAITERS
        return self.buf[at:at + _WAITERS_SIZE] != _NO_WAITERS

    def set_waiter_bit(self, cid: int, wid: int, on: bool) -> None:
        at = self.record_offset(cid) + CH_O_WAITERS + _WAITER_WORD * (wid >> 6)
        word = _U64.unpack_from(self.buf, at)[0]
        bit = 1 << (wid & 63)
        _U64.pack_into(self.buf, at, (word | bit) if on else (word & ~bit))

    # -- whole segment -------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty every record and queue (initialisation)."""
        layout, buf = self.layout, self.buf
        step = 1 << 20
        for start in range(layout.channels_at, layout.blockmap_at, step):
            end = min(start + step, layout.blockmap_at)
            buf[start:end] = bytes(end - start)
        _U32.pack_into(buf, _CH_FREE_AT, 1 if self.channel_count else 0)
        for cid in range(self.channel_count):  # free list: each record links to the next
            nxt = cid + 2 if cid + 1 < self.channel_count else 0
            _U32.pack_into(buf, layout.channel(cid) + CH_O_HEAD, nxt)
        self.arena.rebuild_free({})
        self._cache.clear()

