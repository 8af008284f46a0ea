"""Open-addressing hash index of ``(hash, id + 1)`` entries, stored in a segment.

Linear probing with backward-shift deletion, so there are no tombstones and lookups stay short
whatever the history of inserts and deletes. The index only maps hashes to record ids; callers
compare the record's name themselves (``lookup`` takes a predicate). An index is derived data:
``recovery`` rebuilds it from the records after a crash.
"""

from __future__ import annotations

import zlib
from typing import Callable

from .errors import SegmentCorrupt
from .layout import INDEX_ENTRY

__all__ = ["HashIndex", "name_hash"]

_ENTRY = INDEX_ENTRY
_unpack = _ENTRY.unpack_from
_pack = _ENTRY.pack_into


def name_hash(name: bytes) -> int:
    """The 32-bit hash used by every index (never 0, so 0 can mean "empty")."""
    return zlib.crc32(name) or 1


class HashIndex:
    """A view of one index region: ``slots`` entries (a power of two) at ``offset``."""

    __slots__ = ("buf", "offset", "mask", "limit")

    def __init__(self, buf, offset: int, slots: int, limit: int) -> None:
        self.buf = buf
        self.offset = offset
        self.mask = slots - 1
        self.limit = limit  # record ids must be < limit

    def lookup(self, h: int, matches: Callable[[int], bool]) -> int:
        """Return the id whose entry has hash ``h`` and for which ``matches(id)``, or -1."""
        buf, offset, mask = self.buf, self.offset, self.mask
        slot = h & mask
        for _ in range(mask + 1):
            eh, ref = _unpack(buf, offset + slot * 8)
            if ref == 0:
                return -1
            if eh == h:
                rid = ref - 1
                if rid >= self.limit:
                    raise SegmentCorrupt(f"index entry points at record {rid} of {self.limit}")
                if matches(rid):
                    return rid
            slot = (slot + 1) & mask
        return -1

    def insert(self, h: int, rid: int) -> None:
        """Add an entry (the caller made sure the key is absent and the table has room)."""
        buf, offset, mask = self.buf, self.offset, self.mask
        slot = h & mask
        for _ in range(mask + 1):
            if _unpack(buf, offset + slot * 8)[1] == 0:
                _pack(buf, offset + slot * 8, h, rid + 1)
                return
            slot = (slot + 1) & mask
        raise SegmentCorrupt("hash index has no empty slot")

    def remove(self, h: int, rid: int) -> None:
        """Remove the entry for record ``rid`` (hash ``h``); absent entries are ignored."""
        buf, offset, mask = self.buf, self.offset, self.mask
        slot = h & mask
        for _ in range(mask + 1):
            eh, ref = _unpack(buf, offset + slot * 8)
            if ref == 0:
                return
            if ref == rid + 1:
                break
            slot = (slot + 1) & mask
        else:
            return
        # Backward shift: pull later entries of the probe run into the hole.
        hole = slot
        nxt = (hole + 1) & mask
        for _ in range(mask + 1):
            eh, ref = _unpack(buf, offset + nxt * 8)
            if ref == 0:
                break
            home = eh & mask
            # Move the entry if its home is not cyclically within (hole, nxt].
            if (nxt - home) & mask >= (nxt - hole) & mask:
                _pack(buf, offset + hole * 8, eh, ref)
                hole = nxt
            nxt = (nxt + 1) & mask
        _pack(buf, offset + hole * 8, 0, 0)

    def clear(self) -> None:
        """Empty the index."""
        size = (self.mask + 1) * 8
        self.buf[self.offset:self.offset + size] = bytes(size)
