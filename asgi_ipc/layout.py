"""Where everything lives in a segment: sizes, offsets and record formats, written once, as data.

Theory of operation
-------------------
A segment is one flat byte range of *regions* (``REGIONS``)::

    header | channel records | channel index | group records | group index |
    member records | member index | waiter slots | block map | arena

Every region has a fixed size computed from a ``Sizes`` value when the segment is created; the
sizes are written into the header and an attacher recomputes the same ``Layout`` from them, so
offsets never have to be stored. All integers are little-endian.

*Records* (the header, channels, groups, members, waiters, message headers, index entries) are
described by ``Record`` tables below: each field's name, byte offset and ``struct`` format. These
tables are the only place a byte offset is written. The Python modules take their offsets and
``struct.Struct``\\ s from them at import (``Record.at``, ``Record.run``), so the hot paths pay
nothing for the indirection; the C fast path includes ``_layout.h``, which ``setup.py`` generates
from them (``c_header``) at build time, and exports the ``LAYOUT_HASH`` it was built with, which
the Python side compares with its own before using it (``fastpath_problem``). ``LAYOUT_HASH`` is a
digest of everything here that decides where a byte lies, so any change to the tables changes it;
it describes the layout, not one segment, so it does not depend on a segment's ``Sizes``.
Every segment's header stores ``LAYOUT_VERSION`` and ``LAYOUT_FINGERPRINT`` (the first 32 bits of
``LAYOUT_HASH``), and an attacher refuses a segment whose version or fingerprint differs from its
own (``segment.layout_problem``): a changed table is caught without anyone remembering to raise
the version. The version stays for what the tables cannot see (a field's meaning changed).

Records in arrays (channels, groups, members, waiters) are fixed-size slots referred to by their
index. A record's ``used`` byte is its commit point: it is set after the other fields are written
and cleared before they are reused, so a process killed half-way leaves either a whole record or
an unused one. *Indexes* are open-addressing hash tables of ``(hash, id + 1)`` pairs; they, the
free lists and all counts are *derived* data that ``recovery.rebuild`` can recompute from the
records alone after a crash.

The *arena* is a buddy allocator over units of ``UNIT`` bytes; one byte per unit in the *block
map* says whether that unit starts a free block (``BM_FREE | order``), starts an allocated block
(``BM_USED | order``), or is inside one. A free block starts with the link to the next free block
of its order (``FREE_BLOCK``). A message is one allocated block: a ``MESSAGE`` header, the full
channel name, an optional extra part (the local names of a group fan-out) and the msgpack payload.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Field",
    "Record",
    "Region",
    "Sizes",
    "Layout",
    "HEADER",
    "CHANNEL_RECORD",
    "GROUP_RECORD",
    "MEMBER_RECORD",
    "WAITER_RECORD",
    "MESSAGE",
    "INDEX_RECORD",
    "FREE_BLOCK",
    "RECORDS",
    "REGIONS",
    "MAGIC",
    "LAYOUT_VERSION",
    "LAYOUT_HASH",
    "LAYOUT_FINGERPRINT",
    "READY",
    "UNIT",
    "layout_hash",
    "c_header",
    "fastpath_problem",
]

MAGIC = b"asgi_ipc"
LAYOUT_VERSION = 2  # 2: the header stores LAYOUT_FINGERPRINT (version 1 segments have 0 there)
READY = 0x59444552  # b"REDY" little-endian; written last when a segment is initialised
UNIT = 256  # bytes in the smallest arena block
NONE = 0  # "no record/unit" in links, which store index + 1

HEADER_SIZE = 4096
NAME_MAX = 100  # bytes reserved for a name in a record
WAIT_CHANNELS = 64  # channels one waiter slot can list; more means "wake me on any send"
MAX_WAITERS = 256  # waiter slots a segment can have: one bit each in a channel's bitmap

# channel kinds (CHANNEL_RECORD.kind)
KIND_PLAIN, KIND_SINGLE, KIND_PROCESS = 0, 1, 2
# waiter states (WAITER_RECORD.state) and the count that means "wake me on any send"
W_FREE, W_WAITING, W_NOTIFIED = 0, 1, 2
WAIT_ANY = 0xFFFFFFFF
# message kinds (MESSAGE.kind)
MSG_PLAIN, MSG_FANOUT = 0, 1
# block map values: the top two bits say what a unit is, the low six the order of its block
BM_INSIDE = 0
BM_FREE = 0x40  # | order
BM_USED = 0x80  # | order
BM_TAG = 0xC0  # mask: BM_FREE, BM_USED or BM_INSIDE
BM_ORDER = 0x3F  # mask: the block's order
MAX_ORDERS = 32  # buddy orders the header has free-list heads for

# Global counters kept in the header, in this order (HEADER.counters).
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
COUNTER_SLOTS = 16


# --- the description ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One field of a record: its name, byte offset, ``struct`` format and meaning.

    ``fmt`` is one little-endian ``struct`` item, optionally repeated: ``"I"``, ``"4Q"``,
    ``"100s"``, or ``"x"`` for padding.
    """

    name: str
    offset: int
    fmt: str
    doc: str

    @property
    def size(self) -> int:
        """Bytes the field occupies."""
        return struct.calcsize("<" + self.fmt)

    @property
    def end(self) -> int:
        """Offset of the first byte after the field."""
        return self.offset + self.size

    @property
    def item_size(self) -> int:
        """Bytes of one item of a repeated field (``"4Q"``: 8; ``"100s"``: 100)."""
        return self.size if self.fmt.endswith(("s", "x")) else struct.calcsize("<" + self.fmt[-1])

    @property
    def values(self) -> int:
        """How many values ``struct`` unpacks for the field (0 for padding)."""
        return len(struct.unpack("<" + self.fmt, bytes(self.size)))

    @property
    def align(self) -> int:
        """The field's natural alignment: the size of one item (1 for byte strings)."""
        return 1 if self.fmt.endswith(("s", "x")) else self.item_size


class Record:
    """A fixed-size record type: its size in bytes and its fields, looked up by name."""

    def __init__(self, name: str, size: int, doc: str,
                 fields: tuple[tuple[str, int, str, str], ...]) -> None:
        self.name = name
        self.size = size
        self.doc = doc
        self.fields = tuple(Field(*spec) for spec in fields)
        self._by_name = {f.name: f for f in self.fields}
        if len(self._by_name) != len(self.fields):
            raise ValueError(f"record {name} names a field twice")

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {self.size} bytes, {len(self.fields)} fields)"

    def __getitem__(self, name: str) -> Field:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"record {self.name} has no field {name!r}; it has "
                           f"{', '.join(self._by_name)}") from None

    def at(self, name: str) -> int:
        """Byte offset of field ``name`` within the record."""
        return self[name].offset

    def run(self, *names: str) -> struct.Struct:
        """A ``struct.Struct`` packing the named fields together, to be used at ``at(names[0])``.

        The fields must be given in ascending offset order; bytes between them are padding
        (``x``) that the struct skips.
        """
        fmt, cursor = "<", self[names[0]].offset
        for name in names:
            field = self[name]
            if field.offset < cursor:
                raise ValueError(f"record {self.name}: field {name!r} at {field.offset} is not "
                                 f"after the previous field (which ends at {cursor})")
            if field.offset > cursor:
                fmt += f"{field.offset - cursor}x"
            fmt += field.fmt
            cursor = field.end
        return struct.Struct(fmt)

    def position(self, name: str) -> int:
        """Index of field ``name``'s value in what ``run`` over all the fields unpacks (padding
        yields no value, a repeated field one per item)."""
        index = 0
        for field in sorted(self.fields, key=lambda f: f.offset):
            if field.name == name:
                return index
            index += field.values
        raise KeyError(f"record {self.name} has no field {name!r}")

    def decode(self, buf: Any, at: int = 0) -> dict[str, Any]:
        """Every field of the record at byte ``at`` of ``buf``, by name (repeated items as
        tuples), for tools and tests; the hot paths use ``at`` and ``run`` instead."""
        out: dict[str, Any] = {}
        for field in self.fields:
            values = struct.unpack_from("<" + field.fmt, buf, at + field.offset)
            if values:  # padding has none
                out[field.name] = values[0] if len(values) == 1 else values
        return out

    def describe(self) -> tuple:
        """The record as plain data (what ``layout_hash`` digests)."""
        return (self.name, self.size, tuple((f.name, f.offset, f.fmt) for f in self.fields))


HEADER = Record("header", HEADER_SIZE, "the segment header, at offset 0", (
    ("magic", 0, "8s", "MAGIC"),
    ("version", 8, "I", "LAYOUT_VERSION"),
    ("ready", 12, "I", "READY once the segment is initialised (written last)"),
    ("total", 16, "Q", "bytes in the segment"),
    ("unit_count", 24, "I", "Sizes.unit_count"),
    ("max_order", 28, "I", "Sizes.max_order"),
    ("channels", 32, "I", "Sizes.channels"),
    ("groups", 36, "I", "Sizes.groups"),
    ("members", 40, "I", "Sizes.members"),
    ("waiters", 44, "I", "Sizes.waiters"),
    ("max_message_size", 48, "I", "Sizes.max_message_size"),
    ("fingerprint", 52, "I", "LAYOUT_FINGERPRINT of the layout the segment was made with"),
    ("creator_pid", 64, "I", "pid of the process that created the segment"),
    ("creator_uid", 68, "I", "its uid"),
    ("creator_start", 72, "Q", "its start time in clock ticks (tells a reused pid apart)"),
    ("created", 80, "d", "creation time (unix time)"),
    ("mutex", 128, "64s", "the robust, process-shared pthread_mutex_t"),
    ("lock_holder", 192, "I", "pid of the lock's last holder (diagnostics)"),
    ("lock_dirty", 196, "I", "1 while a crash repair runs"),
    ("recoveries", 200, "Q", "crash repairs so far"),
    ("counters", 256, f"{COUNTER_SLOTS}Q", "global counters, in COUNTERS order"),
    ("free_heads", 512, f"{MAX_ORDERS}I", "head of each buddy order's free list (unit + 1)"),
    ("free_units", 640, "I", "free arena units"),
    ("channel_free", 644, "I", "head of the free channel records (record + 1)"),
    ("group_free", 648, "I", "head of the free group records (record + 1)"),
    ("member_free", 652, "I", "head of the free member records (record + 1)"),
    ("waiter_free", 656, "I", "head of the free waiter slots (slot + 1)"),
    ("sweep_cursor", 660, "I", "next channel record the expiry sweep visits"),
    ("epoch", 664, "I", "reserved"),
    ("rate_second", 704, "Q", "second of the global rate counters"),
    ("sent_this_second", 712, "Q", "messages sent this second"),
    ("sent_last_second", 720, "Q", "messages sent last second"),
    ("full_this_second", 728, "Q", "ChannelFull this second"),
    ("full_last_second", 736, "Q", "ChannelFull last second"),
    ("any_waiters", 768, f"{MAX_WAITERS // 64}Q", "bitmap of the waiter slots that wait on any "
     "channel"),
))

# Fields touched together sit together: head/tail/depth, the sent rate, the full rate.
CHANNEL_RECORD = Record("channel", 256, "a channel and its message queue", (
    ("used", 0, "B", "1 while the record is in use (its commit point)"),
    ("kind", 1, "B", "KIND_PLAIN, KIND_SINGLE or KIND_PROCESS"),
    ("name_len", 2, "B", "bytes of the name"),
    ("hash", 4, "I", "index.name_hash of the name"),
    ("head", 8, "I", "first message (unit + 1; 0 = none); a free record: the next free + 1"),
    ("tail", 12, "I", "last message (unit + 1; derived)"),
    ("depth", 16, "I", "messages queued (derived)"),
    ("rate_second", 20, "I", "second of the rate counters (sent and full share it)"),
    ("sent", 24, "Q", "messages sent"),
    ("sent_this_second", 32, "I", "messages sent this second"),
    ("sent_last_second", 36, "I", "messages sent last second"),
    ("received", 40, "Q", "messages received"),
    ("expired", 48, "Q", "messages expired"),
    ("full", 56, "Q", "sends refused by ChannelFull"),
    ("full_this_second", 64, "I", "ChannelFull this second"),
    ("full_last_second", 68, "I", "ChannelFull last second"),
    ("owner", 72, "I", "prefix! channels: pid of the process that last blocked on it"),
    ("waiters", 80, f"{MAX_WAITERS // 64}Q", "bitmap of the waiter slots waiting on it"),
    ("name", 112, f"{NAME_MAX}s", "the channel's key"),
))

GROUP_RECORD = Record("group", 128, "a group: the head of its list of members", (
    ("used", 0, "B", "1 while the record is in use (its commit point)"),
    ("name_len", 1, "B", "bytes of the name"),
    ("hash", 4, "I", "index.name_hash of the name"),
    ("count", 8, "I", "members (derived)"),
    ("head", 12, "I", "first member (record + 1)"),
    ("tail", 16, "I", "last member (record + 1)"),
    ("next_free", 20, "I", "a free record: the next free + 1"),
    ("name", 24, f"{NAME_MAX}s", "the group's name"),
))

MEMBER_RECORD = Record("member", 160, "one channel's membership of one group", (
    ("used", 0, "B", "1 while the record is in use (its commit point)"),
    ("name_len", 1, "B", "bytes of the channel name"),
    ("group", 4, "I", "the group's record"),
    ("group_prev", 8, "I", "previous member of the group (record + 1)"),
    ("group_next", 12, "I", "next member of the group (record + 1); a free record: next free"),
    ("channel_prev", 16, "I", "previous membership of the channel (record + 1)"),
    ("channel_next", 20, "I", "next membership of the channel (record + 1)"),
    ("added", 24, "d", "when the channel was last added (unix time)"),
    ("name", 32, f"{NAME_MAX}s", "the channel's full name"),
))

WAITER_RECORD = Record("waiter", 288, "a process blocked in receive", (
    ("state", 0, "I", "W_FREE, W_WAITING or W_NOTIFIED"),
    ("pid", 4, "I", "the waiting process (its doorbell)"),
    ("nonce", 8, "I", "which doorbell of that process"),
    ("count", 12, "I", "channels listed, or WAIT_ANY"),
    ("next_free", 16, "I", "a free slot: the next free + 1"),
    ("channels", 20, f"{WAIT_CHANNELS}I", "channel records waited on"),
))

MESSAGE = Record("message", 32, "the header of a message block; the name, extra part and "
                 "payload follow it", (
    ("deadline", 0, "d", "expiry (unix time)"),
    ("sent_at", 8, "d", "when it was sent (unix time)"),
    ("next", 16, "I", "next message of the queue (unit + 1; 0 = last)"),
    ("payload_len", 20, "I", "bytes of payload"),
    ("extra_len", 24, "I", "bytes of the extra part"),
    ("name_len", 28, "H", "bytes of the channel name"),
    ("kind", 30, "B", "MSG_PLAIN or MSG_FANOUT"),
    ("pad", 31, "x", "padding"),
))

INDEX_RECORD = Record("index_entry", 8, "one slot of an open-addressing hash index", (
    ("hash", 0, "I", "index.name_hash of the key (0 = empty slot)"),
    ("ref", 4, "I", "record + 1 (0 = empty slot)"),
))

FREE_BLOCK = Record("free_block", UNIT, "the start of a free arena block", (
    ("next", 0, "I", "next free block of the same order (unit + 1; 0 = last)"),
))

RECORDS = (HEADER, CHANNEL_RECORD, GROUP_RECORD, MEMBER_RECORD, WAITER_RECORD, MESSAGE,
           INDEX_RECORD, FREE_BLOCK)


@dataclass(frozen=True)
class Region:
    """One region of the segment, in ``REGIONS`` order: ``count`` elements of ``element`` bytes.

    ``count`` names the ``Sizes`` field giving the number of elements, ``"one"`` for a single
    element, or ``"index:<field>"`` for a hash index with the smallest power of two of slots
    that is at least twice that field. The region starts at a multiple of ``align``.
    ``Layout`` exposes its offset as ``<name>_at`` (and an index's slots as ``<name>_slots``).
    """

    name: str
    element: int
    count: str
    align: int = 1


REGIONS = (
    Region("header", HEADER.size, "one"),
    Region("channels", CHANNEL_RECORD.size, "channels"),
    Region("channel_index", INDEX_RECORD.size, "index:channels"),
    Region("groups", GROUP_RECORD.size, "groups"),
    Region("group_index", INDEX_RECORD.size, "index:groups"),
    Region("members", MEMBER_RECORD.size, "members"),
    Region("member_index", INDEX_RECORD.size, "index:members"),
    Region("waiters", WAITER_RECORD.size, "waiters"),
    Region("blockmap", 1, "unit_count"),
    Region("arena", UNIT, "unit_count", align=4096),
)
SEGMENT_ALIGN = 4096  # a segment's total size is a multiple of this (a page)


# What the code relies on besides each field's own offset: (why, fields "record.field" that must
# share one offset, that offset or None for "any"). ``check`` verifies them.
RELIED_ON = (
    ("records in arrays are tested for use with buf[at]",
     ("channel.used", "group.used", "member.used"), 0),
    ("groups._name reads either record's name length at one offset",
     ("group.name_len", "member.name_len"), None),
    ("a waiter slot's state is its first word", ("waiter.state",), 0),
    ("a free block's link is its first word", ("free_block.next",), 0),
    ("the magic opens the segment", ("header.magic",), 0),
    ("a message header is read at the block's start", ("message.deadline",), 0),
)


def check(records: tuple[Record, ...] = RECORDS) -> list[str]:
    """Every problem with the record tables (an empty list means none): fields that overlap,
    overrun their record or are not naturally aligned, records sharing a name, and broken
    ``RELIED_ON`` facts."""
    problems: list[str] = []
    by_name = {record.name: record for record in records}
    if len(by_name) != len(records):
        problems.append("two records share a name")
    for record in records:
        end, last = 0, None
        for field in sorted(record.fields, key=lambda f: f.offset):
            if field.offset < end:
                problems.append(f"{record.name}.{field.name} at {field.offset} overlaps "
                                f"{record.name}.{last} (which ends at {end})")
            if field.offset % field.align:
                problems.append(f"{record.name}.{field.name} at {field.offset} is not aligned "
                                f"to {field.align}")
            if field.end > record.size:
                problems.append(f"{record.name}.{field.name} ends at {field.end}, past the "
                                f"record's {record.size} bytes")
            end, last = max(end, field.end), field.name
    for why, names, offset in RELIED_ON:
        try:
            offsets = {name: by_name[name.split(".")[0]].at(name.split(".")[1]) for name in names}
        except KeyError as exc:
            problems.append(f"{why}: no record or field {exc.args[0]}")
            continue
        wanted = {offset} if offset is not None else set(offsets.values())
        if len(set(offsets.values()) | wanted) != 1:
            problems.append(f"{why}: " + ", ".join(f"{n} is at {at}" for n, at in offsets.items())
                            + ("" if offset is None else f", not all at {offset}"))
    return problems


_PROBLEMS = check()
if _PROBLEMS:  # a broken table must never reach a segment
    raise ImportError("asgi_ipc/layout.py is inconsistent: " + "; ".join(_PROBLEMS))


# --- names the modules use (resolved once, here) -----------------------------------------------
H_IDENT = HEADER.run("magic", "version", "ready")  # at 0
H_SIZES_AT = HEADER.at("total")
H_SIZES = HEADER.run("total", "unit_count", "max_order", "channels", "groups", "members",
                     "waiters", "max_message_size", "fingerprint")
H_CREATOR_AT = HEADER.at("creator_pid")
H_CREATOR = HEADER.run("creator_pid", "creator_uid", "creator_start", "created")
H_MUTEX_AT = HEADER.at("mutex")
H_LOCKSTATE_AT = HEADER.at("lock_holder")
H_LOCKSTATE = HEADER.run("lock_holder", "lock_dirty", "recoveries")
H_COUNTERS_AT = HEADER.at("counters")
H_FREE_AT = HEADER.at("free_heads")
H_ALLOC_AT = HEADER.at("free_units")
H_ALLOC = HEADER.run("free_units", "channel_free", "group_free", "member_free", "waiter_free",
                     "sweep_cursor", "epoch")
H_RATE_AT = HEADER.at("rate_second")
H_RATE = HEADER.run("rate_second", "sent_this_second", "sent_last_second", "full_this_second",
                    "full_last_second")
H_ANY_AT = HEADER.at("any_waiters")

CHANNEL_SIZE = CHANNEL_RECORD.size
CH_O_USED = CHANNEL_RECORD.at("used")
CH_O_KIND = CHANNEL_RECORD.at("kind")
CH_O_NAMELEN = CHANNEL_RECORD.at("name_len")
CH_O_HASH = CHANNEL_RECORD.at("hash")
CH_O_HEAD = CHANNEL_RECORD.at("head")
CH_O_TAIL = CHANNEL_RECORD.at("tail")
CH_O_DEPTH = CHANNEL_RECORD.at("depth")
CH_O_SENT_RATE = CHANNEL_RECORD.at("rate_second")  # then sent, this second, last second
CH_O_RECEIVED = CHANNEL_RECORD.at("received")
CH_O_EXPIRED = CHANNEL_RECORD.at("expired")
CH_O_FULL = CHANNEL_RECORD.at("full")
CH_O_FULL_RATE = CHANNEL_RECORD.at("full_this_second")
CH_O_OWNER = CHANNEL_RECORD.at("owner")
CH_O_WAITERS = CHANNEL_RECORD.at("waiters")
CH_NAME_AT = CHANNEL_RECORD.at("name")

GROUP_SIZE = GROUP_RECORD.size
GROUP_NAME_AT = GROUP_RECORD.at("name")
MEMBER_SIZE = MEMBER_RECORD.size
MEMBER_NAME_AT = MEMBER_RECORD.at("name")

WAITER = WAITER_RECORD.run("state", "pid", "nonce", "count", "next_free")
WAITER_SIZE = WAITER_RECORD.size

MSG = MESSAGE.run(*(f.name for f in MESSAGE.fields))
INDEX_ENTRY = INDEX_RECORD.run("hash", "ref")


# --- the digest and the C header ----------------------------------------------------------------
def _constants() -> dict[str, int]:
    """Every constant C code needs besides the records (name -> value)."""
    return {
        "UNIT": UNIT, "NAME_MAX": NAME_MAX, "WAIT_CHANNELS": WAIT_CHANNELS,
        "MAX_WAITERS": MAX_WAITERS, "MAX_ORDERS": MAX_ORDERS, "READY": READY,
        "KIND_PLAIN": KIND_PLAIN, "KIND_SINGLE": KIND_SINGLE, "KIND_PROCESS": KIND_PROCESS,
        "W_FREE": W_FREE, "W_WAITING": W_WAITING, "W_NOTIFIED": W_NOTIFIED, "WAIT_ANY": WAIT_ANY,
        "MSG_PLAIN": MSG_PLAIN, "MSG_FANOUT": MSG_FANOUT,
        "BM_INSIDE": BM_INSIDE, "BM_FREE": BM_FREE, "BM_USED": BM_USED, "BM_TAG": BM_TAG,
        "BM_ORDER": BM_ORDER, "SEGMENT_ALIGN": SEGMENT_ALIGN,
    }


def layout_hash(records: tuple[Record, ...] = RECORDS, regions: tuple[Region, ...] = REGIONS,
                constants: dict[str, int] | None = None, version: int = LAYOUT_VERSION) -> str:
    """A 16-hex-digit digest of everything that decides where a byte lies: the version, the
    constants, every record's fields and the regions' order (the meanings are left out)."""
    data = (version, MAGIC, sorted((constants or _constants()).items()), COUNTERS,
            tuple(record.describe() for record in records),
            tuple((r.name, r.element, r.count, r.align) for r in regions))
    return hashlib.sha256(repr(data).encode()).hexdigest()[:16]


LAYOUT_HASH = layout_hash()
#: What a segment's header stores of ``LAYOUT_HASH``: its first 32 bits (never 0, the value of
#: a header from before fingerprints).
LAYOUT_FINGERPRINT = int(LAYOUT_HASH[:8], 16) or 1


def c_header() -> str:
    """The text of ``asgi_ipc/_layout.h``: every record, field and constant as a ``#define``.

    A record's size is ``LAYOUT_<RECORD>_SIZE``, a field's offset ``LAYOUT_<RECORD>_<FIELD>``
    and its size in bytes ``LAYOUT_<RECORD>_<FIELD>_SIZE`` (a repeated field's item:
    ``..._ITEM_SIZE``); constants are ``LAYOUT_<NAME>``.
    """
    lines = [
        "/* asgi_ipc/_layout.h: generated from asgi_ipc/layout.py by setup.py (build_ext).",
        " * Do not edit: change layout.py, then rebuild with `pip install -e .`. */",
        "#ifndef ASGI_IPC_LAYOUT_H",
        "#define ASGI_IPC_LAYOUT_H",
        "",
        f"#define LAYOUT_VERSION {LAYOUT_VERSION}",
        f'#define LAYOUT_HASH "{LAYOUT_HASH}"',
        "",
    ]
    for name, value in _constants().items():
        lines.append(f"#define LAYOUT_{name} {value:#x}u" if value > 0x7FFFFFFF
                     else f"#define LAYOUT_{name} {value}")
    for record in RECORDS:
        prefix = f"LAYOUT_{record.name.upper()}"
        lines += ["", f"/* {record.name}: {record.doc} */", f"#define {prefix}_SIZE {record.size}"]
        for field in record.fields:
            lines.append(f"#define {prefix}_{field.name.upper()} {field.offset} "
                         f"/* {field.fmt}: {field.doc} */")
            lines.append(f"#define {prefix}_{field.name.upper()}_SIZE {field.size}")
            if field.item_size != field.size:
                lines.append(f"#define {prefix}_{field.name.upper()}_ITEM_SIZE {field.item_size}")
    lines += ["", "#endif", ""]
    return "\n".join(lines)


def fastpath_problem(module: Any) -> str | None:
    """Why the C fast path ``module`` must not be used with this layout, or ``None`` if it may.

    The module must export the ``LAYOUT_VERSION`` and ``LAYOUT_HASH`` it was compiled with, and
    both must equal this module's.
    """
    built = getattr(module, "LAYOUT_HASH", None)
    version = getattr(module, "LAYOUT_VERSION", None)
    if built == LAYOUT_HASH and version == LAYOUT_VERSION:
        return None
    return (f"asgi_ipc._fastpath was built for segment layout {built or 'unknown'} (version "
            f"{version}), but asgi_ipc/layout.py is layout {LAYOUT_HASH} (version "
            f"{LAYOUT_VERSION}); using the pure-Python path instead. Rebuild the C extension: "
            "pip install -e . (from a clone) or pip install --force-reinstall --no-deps asgi_ipc")


# --- sizes and offsets of one segment -----------------------------------------------------------
def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _pow2(n: int) -> int:
    size = 1
    while size < n:
        size <<= 1
    return size


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
        if waiters > MAX_WAITERS:
            raise ValueError(f"waiters must be <= {MAX_WAITERS}, not {waiters}")
        # The largest block must hold the biggest message plus its header and name.
        need = max_message_size + MESSAGE.size + NAME_MAX
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
    """Offsets of every region (``REGIONS``) for a given ``Sizes``, and of every record."""

    header_at: int
    channels_at: int
    channel_index_at: int
    channel_index_slots: int
    groups_at: int
    group_index_at: int
    group_index_slots: int
    members_at: int
    member_index_at: int
    member_index_slots: int
    waiters_at: int
    blockmap_at: int
    arena_at: int
    total: int

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.regions: dict[str, tuple[int, int]] = {}  # name -> (offset, bytes)
        at = 0
        for region in REGIONS:
            at = _align(at, region.align)
            count = self.count(region)
            setattr(self, f"{region.name}_at", at)
            if region.count.startswith("index:"):
                setattr(self, f"{region.name}_slots", count)
            self.regions[region.name] = (at, count * region.element)
            at += count * region.element
        self.total = _align(at, SEGMENT_ALIGN)

    def count(self, region: Region) -> int:
        """Number of elements of ``region`` in a segment of these sizes."""
        if region.count == "one":
            return 1
        if region.count.startswith("index:"):
            return _pow2(2 * getattr(self.sizes, region.count[len("index:"):]))
        return getattr(self.sizes, region.count)

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
