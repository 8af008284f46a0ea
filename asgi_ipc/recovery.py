"""Consistency check and crash repair of a segment (pure: runs on any buffer).

Theory of operation
-------------------
Every structure in a segment is either *primary* (written by an operation as its commit point:
the ``used`` byte of records, a queue's ``head`` and ``next`` links, a record's fields) or
*derived* (queue ``tail`` and ``depth``, the arena's block map and free lists, every hash index,
group lists and counts, free lists of records, waiter bitmaps). A process killed inside a
critical section can leave derived data half-updated, and at most the one primary change it
was making undone. ``rebuild`` therefore recomputes all derived data from the primary data,
validating every reference on the way and cutting off anything that does not check out (a
queue is truncated at its first bad link; a record with a bad field is dropped). The lock
detects the crash (robust mutex "owner died", or the ``dirty`` flag) and calls ``rebuild``
before anyone else touches the segment.

``check`` verifies the same invariants without changing anything and returns the problems it
found; the tests run it after killing processes mid-operation.
"""

from __future__ import annotations

import struct
from typing import Callable

from .arena import Arena
from .groups import Groups
from .index import name_hash
from .layout import (
    BM_FREE,
    BM_USED,
    CH_NAME_AT,
    GROUP_NAME_AT,
    MEMBER_NAME_AT,
    MSG,
    NAME_MAX,
    UNIT,
    WAIT_ANY,
    WAIT_CHANNELS,
    WAITER,
    W_FREE,
    W_WAITING,
    Layout,
)
from .store import Store, channel_kind
from .waiters import H_ANY_AT, Waiters

__all__ = ["rebuild", "check"]

_U32 = struct.Struct("<I")
from .layout import CH_O_DEPTH as _O_DEPTH, CH_O_HEAD as _O_HEAD, CH_O_TAIL as _O_TAIL, CH_O_WAITERS as _O_WAITERS  # noqa: E402


def _walk_queue(store: Store, cid: int, key: bytes, used: dict[int, int]) -> tuple[list[int], bool]:
    """Units of channel ``cid``'s valid messages in order, and whether the walk was cut short."""
    buf, layout, arena = store.buf, store.layout, store.arena
    at = layout.channel(cid)
    units: list[int] = []
    ref = _U32.unpack_from(buf, at + _O_HEAD)[0]
    seen: set[int] = set()
    while ref:
        unit = ref - 1
        if unit >= arena.units or unit in seen or unit in used:
            return units, True
        tag = buf[layout.blockmap_at + unit]
        if tag & 0xC0 != BM_USED or (tag & 0x3F) > arena.max_order:
            return units, True
        order = tag & 0x3F
        if unit % (1 << order) or unit + (1 << order) > arena.units:
            return units, True
        off = layout.unit(unit)
        _deadline, _sent, nxt, plen, elen, nlen, _kind = MSG.unpack_from(buf, off)
        if nlen > NAME_MAX or MSG.size + nlen + elen + plen > UNIT << order:
            return units, True
        name = bytes(buf[off + MSG.size:off + MSG.size + nlen])
        if not (name == key or (key.endswith(b"!") and name.startswith(key))):
            return units, True
        seen.add(unit)
        units.append(unit)
        ref = nxt
    return units, False


def rebuild(buf, layout: Layout, is_alive: Callable[[int], bool]) -> dict[str, int]:
    """Recompute every derived structure of the segment; return what was dropped."""
    store = Store(buf, layout)
    arena = Arena(buf, layout)
    groups = Groups(buf, layout)
    waiters = Waiters(buf, layout, store)
    report = {"truncated_queues": 0, "dropped_records": 0, "dropped_members": 0,
              "freed_waiters": 0}

    # 1. channels and queues
    used_blocks: dict[int, int] = {}
    store.index.clear()
    keys: set[bytes] = set()
    for cid in range(store.channel_count):
        at = layout.channel(cid)
        if not buf[at]:
            continue
        n = buf[at + 2]
        key = bytes(buf[at + CH_NAME_AT:at + CH_NAME_AT + n]) if n <= NAME_MAX else b""
        if not key or key in keys:
            buf[at] = 0
            report["dropped_records"] += 1
            continue
        keys.add(key)
        units, cut = _walk_queue(store, cid, key, used_blocks)
        if cut:
            report["truncated_queues"] += 1
            if units:
                _U32.pack_into(buf, layout.unit(units[-1]) + 16, 0)
            else:
                _U32.pack_into(buf, at + _O_HEAD, 0)
        for unit in units:
            used_blocks[unit] = buf[layout.blockmap_at + unit] & 0x3F
        _U32.pack_into(buf, at + _O_TAIL, units[-1] + 1 if units else 0)
        _U32.pack_into(buf, at + _O_DEPTH, len(units))
        buf[at + 1] = channel_kind(key)
        buf[at + _O_WAITERS:at + _O_WAITERS + 32] = bytes(32)
        _U32.pack_into(buf, at + 4, name_hash(key))
        store.index.insert(name_hash(key), cid)
    head = 0
    for cid in range(store.channel_count - 1, -1, -1):
        at = layout.channel(cid)
        if not buf[at]:
            _U32.pack_into(buf, at + _O_HEAD, head)
            head = cid + 1
    from .layout import H_ALLOC, H_ALLOC_AT
    fields = list(H_ALLOC.unpack_from(buf, H_ALLOC_AT))
    fields[1] = head
    H_ALLOC.pack_into(buf, H_ALLOC_AT, *fields)

    # 2. arena
    arena.rebuild_free(used_blocks)

    # 3. groups and members
    groups.group_index.clear()
    groups.member_index.clear()
    group_names: dict[bytes, int] = {}
    for gid in range(groups.group_count):
        at = layout.group(gid)
        if not buf[at]:
            continue
        n = buf[at + 1]
        name = bytes(buf[at + GROUP_NAME_AT:at + GROUP_NAME_AT + n]) if n <= NAME_MAX else b""
        if not name or name in group_names:
            buf[at] = 0
            report["dropped_records"] += 1
            continue
        group_names[name] = gid
        _U32.pack_into(buf, at + 4, name_hash(name))
        struct.pack_into("<III", buf, at + 8, 0, 0, 0)  # count, head, tail
        groups.group_index.insert(name_hash(name), gid)
    seen_pairs: set[tuple[int, bytes]] = set()
    for mid in range(groups.member_count):
        at = layout.member(mid)
        if not buf[at]:
            continue
        n = buf[at + 1]
        gid = _U32.unpack_from(buf, at + 4)[0]
        name = bytes(buf[at + MEMBER_NAME_AT:at + MEMBER_NAME_AT + n]) if n <= NAME_MAX else b""
        gat = layout.group(gid) if gid < groups.group_count else -1
        if not name or gat < 0 or not buf[gat] or (gid, name) in seen_pairs:
            buf[at] = 0
            report["dropped_members"] += 1
            continue
        seen_pairs.add((gid, name))
        # append to the group's list
        count, ghead, gtail = struct.unpack_from("<III", buf, gat + 8)
        struct.pack_into("<IIII", buf, at + 8, gtail, 0, 0, 0)  # gprev, gnext, cprev, cnext
        if gtail:
            _U32.pack_into(buf, layout.member(gtail - 1) + 12, mid + 1)
        else:
            ghead = mid + 1
        struct.pack_into("<III", buf, gat + 8, count + 1, ghead, mid + 1)
        # push on the channel's list
        h = name_hash(name)
        first = groups._first_member_of_channel(name)
        if first >= 0:
            _U32.pack_into(buf, at + 20, first + 1)
            _U32.pack_into(buf, layout.member(first) + 16, mid + 1)
            groups.member_index.remove(h, first)
        groups.member_index.insert(h, mid)
    for name, gid in group_names.items():
        gat = layout.group(gid)
        if _U32.unpack_from(buf, gat + 8)[0] == 0:
            buf[gat] = 0
            groups.group_index.remove(name_hash(name), gid)
    groups.reset_free_lists()

    # 4. waiters
    buf[H_ANY_AT:H_ANY_AT + 32] = bytes(32)
    for wid in range(waiters.count):
        at = layout.waiter(wid)
        state, pid, nonce, count, _ = WAITER.unpack_from(buf, at)
        if state == W_FREE:
            continue
        ok = is_alive(pid) and (count == WAIT_ANY or count <= WAIT_CHANNELS)
        if ok and state == W_WAITING:
            ids = () if count == WAIT_ANY else struct.unpack_from(f"<{count}I", buf, at + WAITER.size)
            if any(cid >= store.channel_count for cid in ids):
                ok = False
            else:
                if count == WAIT_ANY:
                    waiters._set_any(wid, True)
                for cid in ids:
                    store.set_waiter_bit(cid, wid, True)
        if not ok:
            WAITER.pack_into(buf, at, W_FREE, 0, 0, 0, 0)
            report["freed_waiters"] += 1
    waiters.reset_free_list()
    return report


def check(buf, layout: Layout) -> list[str]:
    """Every inconsistency found in the segment (an empty list means it is consistent)."""
    problems: list[str] = []
    store = Store(buf, layout)
    arena = store.arena
    groups = Groups(buf, layout)
    used_blocks: dict[int, int] = {}
    for cid in range(store.channel_count):
        at = layout.channel(cid)
        if not buf[at]:
            continue
        key = store.key_of(cid)
        if store.find(key) != cid:
            problems.append(f"channel {key!r} (record {cid}) is not found through the index")
        units, cut = _walk_queue(store, cid, key, used_blocks)
        if cut:
            problems.append(f"channel {key!r} has a bad link after {len(units)} messages")
        depth = _U32.unpack_from(buf, at + _O_DEPTH)[0]
        tail = _U32.unpack_from(buf, at + _O_TAIL)[0]
        if depth != len(units):
            problems.append(f"channel {key!r} depth {depth} but {len(units)} messages linked")
        if tail != (units[-1] + 1 if units else 0):
            problems.append(f"channel {key!r} tail {tail} is not its last message")
        for unit in units:
            used_blocks[unit] = buf[layout.blockmap_at + unit] & 0x3F
    free_total = 0
    for order in range(arena.max_order + 1):
        ref = _U32.unpack_from(buf, 512 + 4 * order)[0]
        steps = 0
        while ref:
            unit = ref - 1
            if unit >= arena.units or buf[layout.blockmap_at + unit] != BM_FREE | order:
                problems.append(f"free list {order} holds unit {unit} not marked free")
                break
            free_total += 1 << order
            ref = _U32.unpack_from(buf, layout.unit(unit))[0]
            steps += 1
            if steps > arena.units:
                problems.append(f"free list {order} does not end")
                break
    for unit in range(arena.units):
        tag = buf[layout.blockmap_at + unit]
        if tag & 0xC0 == BM_USED and unit not in used_blocks:
            problems.append(f"block at unit {unit} is allocated but in no queue (leaked)")
    used_total = sum(1 << order for order in used_blocks.values())
    if used_total + free_total != arena.units:
        problems.append(f"arena accounts for {used_total} used + {free_total} free units of "
                        f"{arena.units}")
    if arena.free_bytes() != free_total * UNIT:
        problems.append(f"block map marks {arena.free_bytes()} bytes free, lists hold "
                        f"{free_total * UNIT}")
    for gid in range(groups.group_count):
        at = layout.group(gid)
        if not buf[at]:
            continue
        count, ghead, _ = struct.unpack_from("<III", buf, at + 8)
        n, ref = 0, ghead
        while ref:
            n += 1
            if n > groups.member_count:
                problems.append(f"group record {gid} has a cyclic member list")
                break
            ref = _U32.unpack_from(buf, layout.member(ref - 1) + 12)[0]
        if n != count:
            problems.append(f"group record {gid} counts {count} members, lists {n}")
    return problems
