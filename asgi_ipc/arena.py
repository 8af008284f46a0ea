"""Buddy allocator over the segment's arena, with lazy coalescing.

The arena is ``unit_count`` units of ``UNIT`` bytes, split into top-level blocks of
``2**max_order`` units. A block of order ``k`` spans ``2**k`` units, starts at a multiple of
``2**k`` and its buddy starts at ``unit ^ 2**k``. The *block map* (one byte per unit) says
which units start a free or an allocated block and of which order, so the allocator never
trusts bytes inside a block to tell it what the block is.

Free blocks of each order form a singly linked list (the link is the block's first 4 bytes).
``alloc`` takes the smallest free block that fits, splitting larger ones; ``free`` pushes the
block on its order's list without merging, so the steady state of same-sized messages is O(1)
for both. Only when no block is large enough does ``coalesce`` rebuild the free lists with
every buddy merged, which is O(arena) and happens under memory pressure only.

Free lists and the map entries of free blocks are derived data: ``rebuild_free`` recomputes
them from the set of allocated blocks (what recovery finds reachable from the queues).
"""

from __future__ import annotations

import bisect
import re
import struct

from .errors import SegmentCorrupt
from .layout import BM_FREE, BM_USED, H_FREE_AT, UNIT, Layout

__all__ = ["Arena"]

_U32 = struct.Struct("<I")
_USED_TAG = re.compile(rb"[\x80-\xbf]")
_FREE_TAG = re.compile(rb"[\x40-\x7f]")


class Arena:
    """Allocate and free blocks of units in a segment buffer."""

    __slots__ = ("buf", "layout", "units", "max_order", "map_at", "arena_at")

    def __init__(self, buf, layout: Layout) -> None:
        self.buf = buf
        self.layout = layout
        self.units = layout.sizes.unit_count
        self.max_order = layout.sizes.max_order
        self.map_at = layout.blockmap_at
        self.arena_at = layout.arena_at

    def _push(self, unit: int, order: int) -> None:
        at = H_FREE_AT + 4 * order
        _U32.pack_into(self.buf, self.arena_at + unit * UNIT, _U32.unpack_from(self.buf, at)[0])
        self.buf[self.map_at + unit] = BM_FREE | order
        _U32.pack_into(self.buf, at, unit + 1)

    @staticmethod
    def order_for(nbytes: int) -> int:
        """The smallest order whose block holds ``nbytes``."""
        return max(0, (nbytes - 1) // UNIT).bit_length()

    def alloc(self, nbytes: int) -> int:
        """Allocate a block of at least ``nbytes``; return its first unit, or -1 if no room."""
        want = self.order_for(nbytes)
        if want > self.max_order:
            return -1
        unit = self._take(want)
        if unit < 0 and self.coalesce():
            unit = self._take(want)
        return unit

    def _take(self, want: int) -> int:
        buf = self.buf
        order = want
        while True:
            if order > self.max_order:
                return -1
            head = _U32.unpack_from(buf, H_FREE_AT + 4 * order)[0]
            if head:
                break
            order += 1
        unit = head - 1
        if unit >= self.units or buf[self.map_at + unit] != BM_FREE | order:
            raise SegmentCorrupt(f"free list of order {order} holds unit {unit}, not a free "
                                 f"block of that order")
        _U32.pack_into(buf, H_FREE_AT + 4 * order,
                       _U32.unpack_from(buf, self.arena_at + unit * UNIT)[0])
        while order > want:  # split, keeping the lower half
            order -= 1
            self._push(unit + (1 << order), order)
        buf[self.map_at + unit] = BM_USED | want
        return unit

    def free(self, unit: int) -> None:
        """Return the allocated block starting at ``unit`` to its order's free list."""
        if not 0 <= unit < self.units:
            raise SegmentCorrupt(f"freeing unit {unit} of {self.units}")
        tag = self.buf[self.map_at + unit]
        if tag & 0xC0 != BM_USED:
            raise SegmentCorrupt(f"freeing unit {unit}, which does not start an allocated block")
        self._push(unit, tag & 0x3F)

    def block_order(self, unit: int) -> int:
        """Order of the allocated block at ``unit`` (raises ``SegmentCorrupt`` if none)."""
        if not 0 <= unit < self.units:
            raise SegmentCorrupt(f"message reference to unit {unit} of {self.units}")
        tag = self.buf[self.map_at + unit]
        if tag & 0xC0 != BM_USED:
            raise SegmentCorrupt(f"unit {unit} does not start an allocated block (map {tag:#x})")
        return tag & 0x3F

    def used_blocks(self) -> dict[int, int]:
        """Every allocated block as ``{unit: order}`` (an O(arena) scan of the map)."""
        data = bytes(self.buf[self.map_at:self.map_at + self.units])
        return {m.start(): data[m.start()] & 0x3F for m in _USED_TAG.finditer(data)}

    def free_bytes(self) -> int:
        """Bytes in free blocks (an O(arena) scan of the map: for statistics)."""
        data = bytes(self.buf[self.map_at:self.map_at + self.units])
        return sum(UNIT << (data[m.start()] & 0x3F) for m in _FREE_TAG.finditer(data))

    def coalesce(self) -> bool:
        """Merge all free buddies (O(arena), only under memory pressure); True if that
        produced a block larger than any free before."""
        heads = [_U32.unpack_from(self.buf, H_FREE_AT + 4 * o)[0] for o in range(self.max_order + 1)]
        largest = max((o for o, h in enumerate(heads) if h), default=-1)
        self.rebuild_free(self.used_blocks())
        after = [_U32.unpack_from(self.buf, H_FREE_AT + 4 * o)[0] for o in range(self.max_order + 1)]
        return max((o for o, h in enumerate(after) if h), default=-1) > largest

    def rebuild_free(self, used: dict[int, int]) -> None:
        """Recompute map and free lists given every allocated block as ``{unit: order}``."""
        buf = self.buf
        buf[self.map_at:self.map_at + self.units] = bytes(self.units)
        for order in range(32):
            _U32.pack_into(buf, H_FREE_AT + 4 * order, 0)
        for unit, order in used.items():
            buf[self.map_at + unit] = BM_USED | order
        starts = sorted(used)
        top = 1 << self.max_order
        # push in reverse so each free list comes out in address order
        for base in range(self.units - top, -1, -top):
            self._rebuild_block(base, self.max_order, used, starts)

    def _rebuild_block(self, unit: int, order: int, used: dict[int, int], starts: list[int]) -> None:
        """Free every maximal sub-block of ``(unit, order)`` that overlaps no used block."""
        if used.get(unit) == order:
            return
        span = 1 << order
        first = bisect.bisect_left(starts, unit)
        if first == len(starts) or starts[first] >= unit + span:
            self._push(unit, order)
            return
        if order == 0:
            return
        half = span >> 1
        self._rebuild_block(unit + half, order - 1, used, starts)
        self._rebuild_block(unit, order - 1, used, starts)
