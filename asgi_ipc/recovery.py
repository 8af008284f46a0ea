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
    BM_ORDER,
    BM_TAG,
    BM_USED,
    CHANNEL_RECORD,
    FREE_BLOCK,
    GROUP_RECORD,
    H_ANY_AT,
    HEADER,
    MEMBER_RECORD,
    MESSAGE,
    MSG,
    NAME_MAX,
    UNIT,
    WAIT_ANY,
    WAIT_CHANNELS,
    WAITER,
    WAITER_RECORD,
    W_FREE,
    W_WAITING,
    Layout,
)
from .store import Store, channel_kind
from .waiters import Waiters

__all__ = ["rebuild", "check"]

_U32 = struct.Struct("<I")
# channel record
_C_KIND, _C_NAMELEN, _C_HASH = (CHANNEL_RECORD.at(f) for f in ("kind", "name_len", "hash"))
_C_HEAD, _C_TAIL, _C_DEPTH = (CHANNEL_RECORD.at(f) for f in ("head", "tail", "depth"))
_C_WAITERS, _C_NAME = CHANNEL_RECORD.at("waiters"), CHANNEL_RECORD.at("name")
_NO_WAITERS = bytes(CHANNEL_RECORD["waiters"].size)
# group record; count, head and tail are rebuilt together
_G_NAMELEN, _G_HASH, _G_NAME = (GROUP_RECORD.at(f) for f in ("name_len", "hash", "name"))
_G_COUNT = GROUP_RECORD.at("count")
_G_LIST = GROUP_RECORD.run("count", "head", "tail")  # at _G_COUNT
# member record; the four links are rebuilt together
_M_NAMELEN, _M_GROUP, _M_NAME = (MEMBER_RECORD.at(f) for f in ("name_len", "group", "name"))
_M_GNEXT, _M_CPREV, _M_CNEXT = (MEMBER_RECORD.at(f)
                                for f in ("group_next", "channel_prev", "channel_next"))
_M_LINKS_AT = MEMBER_RECORD.at("group_prev")
_M_LINKS = MEMBER_RECORD.run("group_prev", "group_next", "channel_prev", "channel_next")
# message header, header fields, waiter slot, free block
_MSG_NEXT = MESSAGE.at("next")
_CH_FREE_AT = HEADER.at("channel_free")
_FREE_HEADS_AT, _FREE_HEAD_SIZE = HEADER.at("free_heads"), HEADER["free_heads"].item_size
_NO_ANY = bytes(HEADER["any_waiters"].size)
_W_IDS_AT = WAITER_RECORD.at("channels")
_FREE_NEXT = FREE_BLOCK.at("next")


def _walk_queue(store: Store, cid: int, key: bytes, used: dict[int, int]) -> tuple[list[int], bool]:
    """Units of channel ``cid``'s valid messages in order, and whether the walk was cut short."""
    buf, layout, arena = store.buf, store.layout, store.arena
    at = layout.channel(cid)
    units: list[int] = []
    ref = _U32.unpack_from(buf, at + _C_HEAD)[0]
    seen: set[int] = set()
    while ref:
        unit = ref - 1
        if unit >= arena.units or unit in seen or unit in used:
            return units, True
        tag = buf[layout.blockmap_at + unit]
        if tag & BM_TAG != BM_USED or (tag & BM_ORDER) > arena.max_order:
            return units, True
        order = tag & BM_ORDER
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
        n = buf[at + _C_NAMELEN]
        key = bytes(buf[at + _C_NAME:at + _C_NAME + n]) if n <= NAME_MAX else b""
        if not key or key in keys:
            buf[at] = 0
            report["dropped_records"] += 1
            continue
        keys.add(key)
        units, cut = _walk_queue(store, cid, key, used_blocks)
        if cut:
            report["truncated_queues"] += 1
            if units:
                _U32.pack_into(buf, layout.unit(units[-1]) + _MSG_NEXT, 0)
            else:
                _U32.pack_into(buf, at + _C_HEAD, 0)
        for unit in units:
            used_blocks[unit] = buf[layout.blockmap_at + unit] & BM_ORDER
        _U32.pack_into(buf, at + _C_TAIL, units[-1] + 1 if units else 0)
        _U32.pack_into(buf, at + _C_DEPTH, len(units))
        buf[at + _C_KIND] = channel_kind(key)
        buf[at + _C_WAITERS:at + _C_WAITERS + len(_NO_WAITERS)] = _NO_WAITERS
        _U32.pack_into(buf, at + _C_HASH, name_hash(key))
        store.index.insert(name_hash(key), cid)
    head = 0
    for cid in range(store.channel_count - 1, -1, -1):
        at = layout.channel(cid)
        if not buf[at]:
            _U32.pack_into(buf, at + _C_HEAD, head)
            head = cid + 1
    _U32.pack_into(buf, _CH_FREE_AT, head)

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
        n = buf[at + _G_NAMELEN]
        name = bytes(buf[at + _G_NAME:at + _G_NAME + n]) if n <= NAME_MAX else b""
        if not name or name in group_names:
            buf[at] = 0
            report["dropped_records"] += 1
            continue
        group_names[name] = gid
        _U32.pack_into(buf, at + _G_HASH, name_hash(name))
        _G_LIST.pack_into(buf, at + _G_COUNT, 0, 0, 0)
        groups.group_index.insert(name_hash(name), gid)
    seen_pairs: set[tuple[int, bytes]] = set()
    for mid in range(groups.member_count):
        at = layout.member(mid)
        if not buf[at]:
            continue
        n = buf[at + _M_NAMELEN]
        gid = _U32.unpack_from(buf, at + _M_GROUP)[0]
        name = bytes(buf[at + _M_NAME:at + _M_NAME + n]) if n <= NAME_MAX else b""
        gat = layout.group(gid) if gid < groups.group_count else -1
        if not name or gat < 0 or not buf[gat] or (gid, name) in seen_pairs:
            buf[at] = 0
            report["dropped_members"] += 1
            continue
        seen_pairs.add((gid, name))
        # append to the group's list
        count, ghead, gtail = _G_LIST.unpack_from(buf, gat + _G_COUNT)
        _M_LINKS.pack_into(buf, at + _M_LINKS_AT, gtail, 0, 0, 0)
        if gtail:
            _U32.pack_into(buf, layout.member(gtail - 1) + _M_GNEXT, mid + 1)
        else:
            ghead = mid + 1
        _G_LIST.pack_into(buf, gat + _G_COUNT, count + 1, ghead, mid + 1)
        # push on the channel's list
        h = name_hash(name)
        first = groups._first_member_of_channel(name)
        if first >= 0:
            _U32.pack_into(buf, at + _M_CNEXT, first + 1)
            _U32.pack_into(buf, layout.member(first) + _M_CPREV, mid + 1)
            groups.member_index.remove(h, first)
        groups.member_index.insert(h, mid)
    for name, gid in group_names.items():
        gat = layout.group(gid)
        if _U32.unpack_from(buf, gat + _G_COUNT)[0] == 0:
            buf[gat] = 0
            groups.group_index.remove(name_hash(name), gid)
    groups.reset_free_lists()

    # 4. waiters
    buf[H_ANY_AT:H_ANY_AT + len(_NO_ANY)] = _NO_ANY
    for wid in range(waiters.count):
        at = layout.waiter(wid)
        state, pid, nonce, count, _ = WAITER.unpack_from(buf, at)
        if state == W_FREE:
            continue
        ok = is_alive(pid) and (count == WAIT_ANY or count <= WAIT_CHANNELS)
        if ok and state == W_WAITING:
            ids = () if count == WAIT_ANY else struct.unpack_from(f"<{count}I", buf, at + _W_IDS_AT)
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
        depth = _U32.unpack_from(buf, at + _C_DEPTH)[0]
        tail = _U32.unpack_from(buf, at + _C_TAIL)[0]
        if depth != len(units):
            problems.append(f"channel {key!r} depth {depth} but {len(units)} messages linked")
        if tail != (units[-1] + 1 if units else 0):
            problems.append(f"channel {key!r} tail {tail} is not its last message")
        for unit in units:
            used_blocks[unit] = buf[layout.blockmap_at + unit] & BM_ORDER
    free_total = 0
    for order in range(arena.max_order + 1):
        ref = _U32.unpack_from(buf, _FREE_HEADS_AT + _FREE_HEAD_SIZE * order)[0]
        steps = 0
        while ref:
            unit = ref - 1
            if unit >= arena.units or buf[layout.blockmap_at + unit] != BM_FREE | order:
                problems.append(f"free list {order} holds unit {unit} not marked free")
                break
            free_total += 1 << order
            ref = _U32.unpack_from(buf, layout.unit(unit) + _FREE_NEXT)[0]
            steps += 1
            if steps > arena.units:
                problems.append(f"free list {order} does not end")
                break
    for unit in range(arena.units):
        tag = buf[layout.blockmap_at + unit]
        if tag & BM_TAG == BM_USED and unit not in used_blocks:
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
        count, ghead, _ = _G_LIST.unpack_from(buf, at + _G_COUNT)
        n, ref = 0, ghead
        while ref:
            n += 1
            if n > groups.member_count:
                problems.append(f"group record {gid} has a cyclic member list")
                break
            ref = _U32.unpack_from(buf, layout.member(ref - 1) + _M_GNEXT)[0]
        if n != count:
            problems.append(f"group record {gid} counts {count} members, lists {n}")
    return problems
