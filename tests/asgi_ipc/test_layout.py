"""The segment layout as data (``asgi_ipc.layout``): the tables are consistent, they decide the
hash, and the code - pure Python and C - writes exactly where they say.

The last point is what keeps one home for the offsets honest: the tests below write through the
real modules (``Store``, ``Groups``, ``Waiters``, the layer with and without the C fast path) and
read the bytes back through the tables alone, then damage derived fields through the tables and
check that ``recovery`` repairs exactly those.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ipc import layout as L
from asgi_ipc.groups import Groups
from asgi_ipc.layout import (
    CHANNEL_RECORD,
    GROUP_RECORD,
    HEADER,
    MEMBER_RECORD,
    MESSAGE,
    RECORDS,
    REGIONS,
    WAITER_RECORD,
    Layout,
    Record,
    Region,
    Sizes,
    check,
    layout_hash,
)
from asgi_ipc.recovery import check as check_segment
from asgi_ipc.recovery import rebuild
from asgi_ipc.segment import Segment
from asgi_ipc.store import Store
from asgi_ipc.waiters import Waiters


def small_segment() -> tuple[bytearray, Layout, Store, Groups, Waiters]:
    """A segment in a bytearray, initialised the way ``Attachment`` initialises a new one."""
    layout = Layout(Sizes.from_config(message_memory=256 * 1024, channels=16, groups=4,
                                      group_members=16, waiters=8, max_message_size=4096))
    buf = bytearray(layout.total)
    store, groups = Store(buf, layout), Groups(buf, layout)
    waiters = Waiters(buf, layout, store)
    store.reset()
    groups.reset_free_lists()
    waiters.reset_free_list()
    return buf, layout, store, groups, waiters


# --- the tables ---------------------------------------------------------------------------------
def test_the_tables_pass_their_own_check():
    assert check() == []


def test_no_two_fields_of_a_record_overlap_and_all_are_aligned_and_inside_it():
    """The same facts ``check`` enforces, recomputed here from the raw field list."""
    for record in RECORDS:
        taken = bytearray(record.size)
        for field in record.fields:
            assert 0 <= field.offset and field.end <= record.size, (record.name, field.name)
            assert field.offset % field.align == 0, (record.name, field.name)
            assert not any(taken[field.offset:field.end]), (record.name, field.name)
            taken[field.offset:field.end] = b"\x01" * field.size


def test_dense_records_add_up_to_their_size():
    """A message header and an index entry have no slack: their fields fill them exactly, so
    the Structs the code packs them with are the whole record."""
    for record in (MESSAGE, L.INDEX_RECORD):
        assert sum(f.size for f in record.fields) == record.size
    assert L.MSG.size == MESSAGE.size
    assert L.INDEX_ENTRY.size == L.INDEX_RECORD.size
    assert L.WAITER.size == WAITER_RECORD.at("channels")
    assert WAITER_RECORD["channels"].end <= L.WAITER_SIZE
    assert CHANNEL_RECORD["name"].size == GROUP_RECORD["name"].size == \
        MEMBER_RECORD["name"].size == L.NAME_MAX


def test_header_structs_cover_the_named_fields_in_order():
    for struct_, first, last in (
        (L.H_IDENT, "magic", "ready"),
        (L.H_SIZES, "total", "fingerprint"),
        (L.H_CREATOR, "creator_pid", "created"),
        (L.H_LOCKSTATE, "lock_holder", "recoveries"),
        (L.H_ALLOC, "free_units", "epoch"),
        (L.H_RATE, "rate_second", "full_last_second"),
    ):
        assert struct_.size == HEADER[last].end - HEADER[first].offset, first
    assert L.COUNTER_SLOTS >= len(L.COUNTERS)
    assert HEADER["any_waiters"].size * 8 == L.MAX_WAITERS == CHANNEL_RECORD["waiters"].size * 8


def test_run_pads_gaps_and_refuses_fields_out_of_order():
    channel_owner_to_waiters = CHANNEL_RECORD.run("owner", "waiters")
    assert channel_owner_to_waiters.size == CHANNEL_RECORD["waiters"].end - CHANNEL_RECORD.at("owner")
    with pytest.raises(ValueError, match="is not after"):
        CHANNEL_RECORD.run("tail", "head")
    with pytest.raises(KeyError, match="record channel has no field 'nope'"):
        CHANNEL_RECORD.at("nope")


def test_position_is_where_a_field_lands_in_an_unpacked_run():
    """The hot paths unpack a message header whole and index the tuple by ``position``."""
    packed = bytearray(MESSAGE.size)
    L.MSG.pack_into(packed, 0, 1.5, 2.5, 3, 4, 5, 6, 7)
    values, decoded = L.MSG.unpack_from(packed), MESSAGE.decode(packed)
    for field in MESSAGE.fields:
        if field.values:
            assert values[MESSAGE.position(field.name)] == decoded[field.name], field.name
    whole = CHANNEL_RECORD.run(*(f.name for f in CHANNEL_RECORD.fields))
    record = bytearray(CHANNEL_RECORD.size)
    record[CHANNEL_RECORD.at("name"):CHANNEL_RECORD.at("name") + 4] = b"abcd"
    assert whole.unpack_from(record)[CHANNEL_RECORD.position("name")].startswith(b"abcd")
    with pytest.raises(KeyError):
        MESSAGE.position("nope")


def test_check_names_every_kind_of_broken_table():
    bad_group = Record("group", 32, "", (
        ("used", 1, "B", ""),                # relied on to be at 0
        ("name_len", 2, "B", ""),            # member.name_len is at 1
        ("hash", 2, "I", ""),                # overlaps name_len and is misaligned
        ("name", 8, "100s", ""),             # past the 32-byte record
    ))
    records = tuple(bad_group if r.name == "group" else r for r in RECORDS)
    problems = check(records)
    assert "group.hash at 2 overlaps group.name_len (which ends at 3)" in problems
    assert "group.hash at 2 is not aligned to 4" in problems
    assert "group.name ends at 108, past the record's 32 bytes" in problems
    assert any("group.used is at 1" in p and "not all at 0" in p for p in problems)
    assert any("group.name_len is at 2, member.name_len is at 1" in p for p in problems)
    without_waiters = tuple(r for r in RECORDS if r.name != "waiter")
    assert any("no record or field waiter" in p for p in check(without_waiters))
    with pytest.raises(ValueError, match="names a field twice"):
        Record("twice", 8, "", (("a", 0, "I", ""), ("a", 4, "I", "")))


# --- the hash -----------------------------------------------------------------------------------
def _moved(record: Record, field: str, offset: int | None = None, fmt: str | None = None) -> Record:
    return Record(record.name, record.size, record.doc, tuple(
        (f.name, offset if f.name == field and offset is not None else f.offset,
         fmt if f.name == field and fmt is not None else f.fmt, f.doc)
        for f in record.fields))


def test_the_hash_is_the_digest_of_the_tables():
    assert L.LAYOUT_HASH == layout_hash() and len(L.LAYOUT_HASH) == 16
    int(L.LAYOUT_HASH, 16)
    changed = {
        "a field moves": layout_hash(records=tuple(
            _moved(r, "owner", offset=76) if r.name == "channel" else r for r in RECORDS)),
        "a field's format": layout_hash(records=tuple(
            _moved(r, "count", fmt="i") if r.name == "group" else r for r in RECORDS)),
        "a record's size": layout_hash(records=tuple(
            Record(r.name, r.size + 64, r.doc, tuple((f.name, f.offset, f.fmt, f.doc)
                                                      for f in r.fields))
            if r.name == "member" else r for r in RECORDS)),
        "the region order": layout_hash(regions=REGIONS[:3] + (REGIONS[4], REGIONS[3]) + REGIONS[5:]),
        "a region's alignment": layout_hash(regions=REGIONS[:-1] + (Region("arena", L.UNIT,
                                                                           "unit_count", 8192),)),
        "a constant": layout_hash(constants={**L._constants(), "UNIT": 512}),
        "the version": layout_hash(version=L.LAYOUT_VERSION + 1),
    }
    for what, digest in changed.items():
        assert digest != L.LAYOUT_HASH, what
    assert len(set(changed.values())) == len(changed)
    docs_only = tuple(Record(r.name, r.size, "other words", tuple(
        (f.name, f.offset, f.fmt, "other words") for f in r.fields)) for r in RECORDS)
    assert layout_hash(records=docs_only) == L.LAYOUT_HASH  # meanings do not move bytes


def test_the_fingerprint_a_header_stores_is_the_hash_of_the_tables_not_of_the_sizes(make_layer,
                                                                                    prefix):
    assert L.LAYOUT_FINGERPRINT == int(L.LAYOUT_HASH[:8], 16) != 0
    small = make_layer(message_memory=2**20, max_message_size=64 * 1024, channels=16, groups=1,
                       group_members=1)
    large = make_layer(prefix=prefix + "big", message_memory=4 * 2**20, channels=256, groups=32,
                       group_members=512)
    for layer in (small, large):  # segments of any sizes carry the one fingerprint
        header = L.HEADER.decode(layer._a().segment.mm)
        assert header["fingerprint"] == L.LAYOUT_FINGERPRINT
        assert header["version"] == L.LAYOUT_VERSION


def test_fastpath_problem_names_both_layouts_and_the_rebuild():
    class Built:  # what a module compiled from another _layout.h exports
        LAYOUT_VERSION = L.LAYOUT_VERSION
        LAYOUT_HASH = "0123456789abcdef"

    problem = L.fastpath_problem(Built)
    assert "0123456789abcdef" in problem and L.LAYOUT_HASH in problem
    assert "pip install -e ." in problem
    Built.LAYOUT_HASH = L.LAYOUT_HASH
    assert L.fastpath_problem(Built) is None
    Built.LAYOUT_VERSION = L.LAYOUT_VERSION + 1
    assert "version" in L.fastpath_problem(Built)
    assert "unknown" in L.fastpath_problem(object())  # a build from before the hash existed


# --- regions ------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    message_memory=st.integers(64 * 1024, 64 * 2**20),
    channels=st.integers(16, 5000),
    groups=st.integers(1, 5000),
    members=st.integers(1, 40000),
    waiters=st.integers(8, 256),
    max_message_size=st.integers(1024, 2**20),
)
def test_regions_follow_each_other_without_overlap(message_memory, channels, groups, members,
                                                   waiters, max_message_size):
    try:
        sizes = Sizes.from_config(message_memory, channels, groups, members, waiters,
                                  max_message_size)
    except ValueError:
        return  # too little message memory for that message size: refused, not laid out
    layout = Layout(sizes)
    end = 0
    for region in REGIONS:
        at, size = layout.regions[region.name]
        assert at == getattr(layout, f"{region.name}_at")
        assert at >= end and at % region.align == 0 and at - end < region.align
        assert size == layout.count(region) * region.element
        end = at + size
    assert layout.total >= end and layout.total % L.SEGMENT_ALIGN == 0
    assert layout.channel_index_slots >= 2 * channels
    assert layout.channel_index_slots & (layout.channel_index_slots - 1) == 0
    assert layout.unit(sizes.unit_count) == layout.regions["arena"][0] + layout.regions["arena"][1]


# --- the code writes where the tables say --------------------------------------------------------
def test_store_writes_channel_records_and_messages_where_the_tables_say():
    buf, layout, store, _groups, _waiters = small_segment()
    cid = store.find_or_create(b"chat")
    store.enqueue(cid, b"chat", b"first", deadline=2e9, now=1e9, capacity=10)
    store.enqueue(cid, b"chat", b"second!", deadline=2e9 + 1, now=1e9 + 0.5, capacity=10)
    rec = CHANNEL_RECORD.decode(buf, layout.channel(cid))
    assert rec["used"] == 1 and rec["kind"] == L.KIND_PLAIN and rec["depth"] == 2
    assert rec["name"][:rec["name_len"]] == b"chat" and rec["sent"] == 2
    first = MESSAGE.decode(buf, layout.unit(rec["head"] - 1))
    assert (first["deadline"], first["sent_at"], first["payload_len"], first["name_len"]) == \
        (2e9, 1e9, 5, 4)
    assert first["next"] == rec["tail"]
    second = MESSAGE.decode(buf, layout.unit(rec["tail"] - 1))
    assert second["next"] == 0 and second["payload_len"] == 7
    body = layout.unit(rec["tail"] - 1) + MESSAGE.size
    assert bytes(buf[body:body + 4 + 7]) == b"chatsecond!"
    tag = buf[layout.blockmap_at + rec["head"] - 1]
    assert tag & L.BM_TAG == L.BM_USED
    assert store.pop(cid, now=1e9 + 1).payload == b"first"
    assert CHANNEL_RECORD.decode(buf, layout.channel(cid))["received"] == 1
    store.bump("too_large", 3)
    counters = HEADER.decode(buf)["counters"]
    assert counters[L.COUNTERS.index("too_large")] == 3


def test_groups_write_group_and_member_records_where_the_tables_say():
    buf, layout, _store, groups, _waiters = small_segment()
    groups.add(b"room", b"a!1", now=100.0)
    groups.add(b"room", b"b!2", now=101.0)
    gid = groups.find_group(b"room")
    g = GROUP_RECORD.decode(buf, layout.group(gid))
    assert (g["used"], g["count"], g["name"][:g["name_len"]]) == (1, 2, b"room")
    first = MEMBER_RECORD.decode(buf, layout.member(g["head"] - 1))
    last = MEMBER_RECORD.decode(buf, layout.member(g["tail"] - 1))
    assert first["name"][:first["name_len"]] == b"a!1" and first["added"] == 100.0
    assert first["group"] == gid and first["group_next"] == g["tail"]
    assert last["group_prev"] == g["head"] and last["group_next"] == 0
    free = HEADER.decode(buf)
    assert free["group_free"] and free["member_free"]
    assert not GROUP_RECORD.decode(buf, layout.group(free["group_free"] - 1))["used"]


def test_waiters_write_slots_and_bitmaps_where_the_tables_say():
    buf, layout, store, _groups, waiters = small_segment()
    cids = [store.find_or_create(name) for name in (b"x", b"y")]
    wid = waiters.alloc(pid=4242, nonce=7)
    waiters.register(wid, cids)
    slot = WAITER_RECORD.decode(buf, layout.waiter(wid))
    assert (slot["state"], slot["pid"], slot["nonce"], slot["count"]) == (L.W_WAITING, 4242, 7, 2)
    assert list(slot["channels"][:2]) == cids
    for cid in cids:
        words = CHANNEL_RECORD.decode(buf, layout.channel(cid))["waiters"]
        assert words[wid >> 6] == 1 << (wid & 63)
    assert waiters.pick(cids[0])[0] == wid
    assert WAITER_RECORD.decode(buf, layout.waiter(wid))["state"] == L.W_NOTIFIED
    assert not any(CHANNEL_RECORD.decode(buf, layout.channel(cids[1]))["waiters"])
    waiters.register(wid, cids * (L.WAIT_CHANNELS // 2 + 1))  # too many to list: "any"
    slot = WAITER_RECORD.decode(buf, layout.waiter(wid))
    assert slot["count"] == L.WAIT_ANY
    assert HEADER.decode(buf)["any_waiters"][wid >> 6] == 1 << (wid & 63)
    waiters.free(wid)
    assert not any(HEADER.decode(buf)["any_waiters"])
    assert HEADER.decode(buf)["waiter_free"] == wid + 1


def test_recovery_rebuilds_exactly_the_derived_fields_the_tables_name():
    buf, layout, store, groups, _waiters = small_segment()
    cid = store.find_or_create(b"q")
    for i in range(3):
        store.enqueue(cid, b"q", b"m%d" % i, deadline=2e9, now=1e9, capacity=10)
    groups.add(b"g", b"q", now=1e9)
    intact = bytes(buf)
    at, gat = layout.channel(cid), layout.group(groups.find_group(b"g"))
    # damage every derived field through the tables only
    for record, base, name in ((CHANNEL_RECORD, at, "tail"), (CHANNEL_RECORD, at, "depth"),
                               (CHANNEL_RECORD, at, "hash"), (GROUP_RECORD, gat, "count"),
                               (HEADER, 0, "channel_free"), (HEADER, 0, "group_free")):
        field = record[name]
        struct.pack_into("<" + field.fmt, buf, base + field.offset, 0xABCD)
    problems = check_segment(buf, layout)
    assert any("depth" in p for p in problems) and any("counts" in p for p in problems)
    rebuild(buf, layout, is_alive=lambda pid: True)
    assert check_segment(buf, layout) == []
    assert bytes(buf) == intact  # every damaged field recomputed to the very same bytes


def test_c_and_python_write_the_same_bytes(make_layer, impl):
    """Through a real layer: a message sent by the C fast path (``impl == "c"``) or by pure
    Python lands where the tables say, read back through a separate attachment."""
    layer = make_layer()
    layer.send("layout.probe", {"n": 1})  # creates the record (Python), then the fast path
    layer.send("layout.probe", {"n": 2})
    seen = Segment(layer.prefix, layer.sizes, create=False)
    try:
        buf, layout = seen.mm, seen.layout
        store = Store(buf, layout)
        cid = store.find(b"layout.probe")
        rec = CHANNEL_RECORD.decode(buf, layout.channel(cid))
        assert rec["depth"] == 2 and rec["sent"] == 2 and rec["rate_second"] > 0
        head = MESSAGE.decode(buf, layout.unit(rec["head"] - 1))
        tail = MESSAGE.decode(buf, layout.unit(rec["tail"] - 1))
        assert head["next"] == rec["tail"] and tail["next"] == 0
        assert head["name_len"] == len(b"layout.probe") and head["kind"] == L.MSG_PLAIN
        assert head["sent_at"] < head["deadline"]
        assert check_segment(buf, layout) == []
        del buf, store
    finally:
        seen.close()
    assert layer.receive(["layout.probe"])[1] == {"n": 1}
