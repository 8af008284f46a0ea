"""Where everything lives in a segment: sizes, offsets and record formats.

Theory of operation
-------------------
A segment is one flat byte range::

    header | channel records | channel index | group records | group index |
    member records | member index | waiter slots | block map | arena

Every region has a fixed size computed from a ``Sizes`` value when the segment is created; the
sizes are written into the header and an attacher recomputes the same ``Layout`` from them, so
offsets never have to be stored. All integers are little-endian.

*Records* (channels, groups, members, waiters) are fixed-size slots in arrays, referred to by
their index. A record's ``used`` byte is its commit point: it is set after the other fields are
written and cleared before they are reused, so a process killed half-way leaves either a whole
record or an unused one. *Indexes* are open-addressing hash tables of ``(hash, id + 1)`` pairs;
they, the free lists and all counts are *derived* data that ``recovery.rebuild`` can recompute
from the records alone after a crash.

The *arena* is a buddy allocator over units of ``UNIT`` bytes; one byte per unit in the *block
map* says whether that unit starts a free block, starts an allocated block, or is inside one.
A message is one allocated block: a ``MSG`` header, the full channel name, an optional extra
part (the local names of a group fan-out) and the msgpack payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Sizes", "Layout", "MAGIC", "LAYOUT_VERSION", "READY", "UNIT"]

MAGIC = b"asgi_ipc"
LAYOUT_VERSION = 1
READY = 0x59444552  # b"REDY" little-endian; written last when a segment is initialised
UNIT = 256  # bytes in the smallest arena block
NONE = 0  # "no record/unit" in links, which store index + 1

HEADER_SIZE = 4096
NAME_MAX = 100  # bytes reserved for a name in a record
WAIT_CHANNELS = 64  # channels one waiter slot can list; more means "wake me on any send"

# --- header fields (offset, struct) -----------------------------------------------------------
H_MAGIC = 0  # 8s
H_IDENT = struct.Struct("<8sII")  # magic, layout version, ready flag
H_SIZES = struct.Struct("<QIIIIIIII")  # at 16: total, unit_count, max_order, channels, groups,
#                                        members, waiters, max_message_size, reserved
H_SIZES_AT = 16
H_CREATOR = struct.Struct("<IIQd")  # at 64: pid, uid, process start ticks, created (unix time)
H_CREATOR_AT = 64
H_MUTEX_AT = 128  # 64 bytes for a pthread_mutex_t
H_LOCKSTATE = struct.Struct("<IIQ")  # at 192: holder pid, dirty, recoveries
H_LOCKSTATE_AT = 192
H_COUNTERS_AT = 256  # 16 x u64 global counters, see COUNTERS
COUNTERS = (
    "sent",
    "received",
    "expired",
    "channel_full",
    "arena_full",
    "too_large",
    "group_sends",
    "group_deliveries",
    "group_drops",
    "flushes",
    "corrupt",
    "foreign_rings",
    "dead_processes",
    "reclaimed_messages",
)
H_FREE_AT = 512  # 32 x u32: head of the free list of each buddy order (unit index + 1)
H_ALLOC = struct.Struct("<IIIIIII")  # at 640: free units, channel free head, group free head,
#                                      member free head, waiter free head, sweep cursor, epoch
H_ALLOC_AT = 640
H_RATE = struct.Struct("<QQQQQ")  # at 704: second, sent this/last second, full this/last second
H_RATE_AT = 704

# --- records ----------------------------------------------------------------------------------
# channel record, by byte offset (fields touched together sit together):
#   0 used u8 | 1 kind u8 | 2 name_len u8 | 4 hash u32
#   8 head u32 | 12 tail u32 | 16 depth u32            (unit + 1; 0 = none)
#   20 rate second u32 | 24 sent u64 | 32 sent this second u32 | 36 sent last second u32
#   40 received u64 | 48 expired u64 | 56 full u64 | 64 full this second u32 |
#   68 full last second u32 | 72 owner pid u32 (``prefix!`` channels: the process that
#   last blocked on it) | 80 waiter bitmap 4 x u64 | 112 name
CHANNEL = struct.Struct("<BBBxIIIIIQIIQQQII8x4Q")
CHANNEL_SIZE = 256
CH_O_USED, CH_O_KIND, CH_O_NAMELEN, CH_O_HASH = 0, 1, 2, 4
CH_O_HEAD, CH_O_TAIL, CH_O_DEPTH = 8, 12, 16
CH_O_SENT_RATE = 20  # "<IQII": second, sent, sent this second, sent last second
CH_O_RECEIVED, CH_O_EXPIRED, CH_O_FULL, CH_O_FULL_RATE = 40, 48, 56, 64
CH_O_OWNER = 72
CH_O_WAITERS = 80
CH_NAME_AT = 112
# channel kinds
KIND_PLAIN, KIND_SINGLE, KIND_PROCESS = 0, 1, 2

# group: used, name_len, pad | hash | count | head, tail (member + 1) | next free | name
GROUP = struct.Struct("<BBxxIIIII")
GROUP_SIZE = 128
GROUP_NAME_AT = GROUP.size

# member: used, name_len, pad | group | group prev/next | channel prev/next | added_at | name
MEMBER = struct.Struct("<BBxxIIIIId")
MEMBER_SIZE = 160
MEMBER_NAME_AT = MEMBER.size

# waiter: state, pid, nonce, count (or 0xFFFFFFFF = any), next free | channel ids
WAITER = struct.Struct("<IIIII")
WAITER_SIZE = WAITER.size + 4 * WAIT_CHANNELS + 12
W_FREE, W_WAITING, W_NOTIFIED = 0, 1, 2
WAIT_ANY = 0xFFFFFFFF

# message block header: deadline, sent_at, next (unit + 1), payload_len, extra_len, name_len,
# kind, pad
MSG = struct.Struct("<ddIIIHBx")
MSG_PLAIN, MSG_FANOUT = 0, 1

# block map values
BM_INSIDE = 0
BM_FREE = 0x40  # | order
BM_USED = 0x80  # | order

INDEX_ENTRY = struct.Struct("<II")  # hash, id + 1


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


@dataclass(frozen=True)
class Sizes:
    """The sizes fixed when a segment is created (all counts)."""

    unit_count: int
    max_order: int
    channels: int
    groups: int
    members: int
    waiters: int
    max_message_size: int

    @classmethod
    def from_config(
        cls,
        message_memory: int,
        channels: int,
        groups: int,
        group_members: int,
        waiters: int,
        max_message_size: int,
    ) -> "Sizes":
        """Derive sizes from user-facing settings; raise ``ValueError`` on nonsense."""
        for label, value, low in (
            ("message_memory", message_memory, 64 * 1024),
            ("channels", channels, 16),
            ("groups", groups, 1),
            ("group_members", group_members, 1),
            ("waiters", waiters, 8),
            ("max_message_size", max_message_size, 1024),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an int >= {low}, not {value!r}")
        if waiters > 256:
            raise ValueError(f"waiters must be <= 256, not {waiters}")
        # The largest block must hold the biggest message plus its header and name.
        need = max_message_size + MSG.size + NAME_MAX
        max_order = 0
        while UNIT << max_order < need:
            max_order += 1
        top = UNIT << max_order
        if message_memory < 2 * top:
            raise ValueError(
                f"message_memory ({message_memory} bytes) must hold at least two messages of "
                f"max_message_size ({max_message_size}); use at least {2 * top}"
            )
        unit_count = message_memory // top * (top // UNIT)
        return cls(unit_count, max_order, channels, groups, group_members, waiters,
                   max_message_size)


class Layout:
    """Offsets of every region for a given ``Sizes``."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        at = HEADER_SIZE
        self.channels_at = at
        at += sizes.channels * CHANNEL_SIZE
        self.channel_index_slots = _pow2(2 * sizes.channels)
        self.channel_index_at = at
        at += self.channel_index_slots * INDEX_ENTRY.size
        self.groups_at = at
        at += sizes.groups * GROUP_SIZE
        self.group_index_slots = _pow2(2 * sizes.groups)
        self.group_index_at = at
        at += self.group_index_slots * INDEX_ENTRY.size
        self.members_at = at
        at += sizes.members * MEMBER_SIZE
        self.member_index_slots = _pow2(2 * sizes.members)
        self.member_index_at = at
        at += self.member_index_slots * INDEX_ENTRY.size
        self.waiters_at = at
        at += sizes.waiters * WAITER_SIZE
        self.blockmap_at = at
        at += sizes.unit_count
        self.arena_at = _align(at, 4096)
        self.total = _align(self.arena_at + sizes.unit_count * UNIT, 4096)

    def channel(self, cid: int) -> int:
        return self.channels_at + cid * CHANNEL_SIZE

    def group(self, gid: int) -> int:
        return self.groups_at + gid * GROUP_SIZE

    def member(self, mid: int) -> int:
        return self.members_at + mid * MEMBER_SIZE

    def waiter(self, wid: int) -> int:
        return self.waiters_at + wid * WAITER_SIZE

    def unit(self, unit: int) -> int:
        return self.arena_at + unit * UNIT


def _pow2(n: int) -> int:
    size = 1
    while size < n:
        size <<= 1
    return size
