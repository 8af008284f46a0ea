"""The critical sections (``asgi_ipc.critical``) through the layer's public ``take`` /
``release_waiter``, on the C fast path and the pure-Python reference; and ``receive_fanout``.

Each test reads the waiter slots and channel bitmaps back from the segment, so the C "take, or
register as waiter" is held to the same state the Python section leaves.
"""

from __future__ import annotations

import os
import select

import pytest

from asgi_ipc.critical import Sections
from asgi_ipc.doorbell import Doorbell
from asgi_ipc.layout import (
    CH_O_KIND,
    CH_O_OWNER,
    CHANNEL_SIZE,
    KIND_PROCESS,
    W_FREE,
    W_NOTIFIED,
    W_WAITING,
    WAIT_ANY,
)
from asgi_ipc.waiters import H_ANY_AT


def _bell(layer) -> Doorbell:
    return Doorbell(layer.attachment.segment.name)


def _rung(bell: Doorbell) -> bool:
    return bool(select.select([bell.sock], [], [], 0)[0]) and bell.drain() > 0


def _slot(layer, wid: int) -> tuple[int, int, int, int]:
    """``(state, pid, nonce, count)`` of a waiter slot."""
    return layer.attachment.waiters.slot(wid)[:4]


def _watchers(layer, key: bytes) -> set[int]:
    """The waiter slots whose bit is set in the channel ``key``'s bitmap."""
    store = layer.attachment.store
    cid = store.find(key)
    words = store.waiters_of(cid)
    return {w * 64 + bit for w in range(4) for bit in range(64) if words[w] >> bit & 1}


def _record(layer, key: bytes) -> bytes:
    store = layer.attachment.store
    at = store.record_offset(store.find(key))
    return bytes(layer.attachment.segment.mm[at:at + CHANNEL_SIZE])


def _owner(layer, key: bytes) -> int:
    return int.from_bytes(_record(layer, key)[CH_O_OWNER:CH_O_OWNER + 4], "little")


def test_take_registers_a_new_slot_then_a_send_rings_and_take_unregisters(layer, impl):
    layer.send("a", {"warm": 1})  # the records exist: the C path does the whole section
    layer.send("b!x", {"warm": 2})
    assert layer.receive(["a"]) == ("a", {"warm": 1})
    assert layer.receive(["b!"]) == ("b!x", {"warm": 2})
    bell = _bell(layer)
    try:
        assert layer.take(["a", "b!"], bell) is None
        wid = bell.wid
        assert wid >= 0
        assert _slot(layer, wid) == (W_WAITING, os.getpid(), bell.nonce, 2)
        assert wid in _watchers(layer, b"a") and wid in _watchers(layer, b"b!")
        assert _owner(layer, b"b!") == os.getpid()  # who reads this prefix!, for forget_process
        layer.send("b!y", {"n": 1})
        assert _rung(bell)
        assert _slot(layer, wid)[0] == W_NOTIFIED  # picked: no longer on any bitmap
        assert wid not in _watchers(layer, b"a") | _watchers(layer, b"b!")
        assert layer.take(["a", "b!"], bell) == ("b!y", {"n": 1})
        assert bell.wid == wid  # the slot stays with the doorbell
        # registered again, then a message that is already there: take unregisters the slot
        assert layer.take(["a"], bell) is None
        assert _slot(layer, wid) == (W_WAITING, os.getpid(), bell.nonce, 1)
        layer.send("a", {"n": 2})  # rings the slot; the take must leave it unlisted
        assert layer.take(["a"], bell) == ("a", {"n": 2})
        assert _slot(layer, wid)[0] == W_NOTIFIED and wid not in _watchers(layer, b"a")
        layer.release_waiter(bell)
        assert bell.wid == -1 and _slot(layer, wid)[0] == W_FREE
        assert layer.check() == []
    finally:
        bell.close()


def test_take_without_a_bell_never_registers(layer, impl):
    layer.send("a", {"n": 1})
    assert layer.take(["a"]) == ("a", {"n": 1})
    assert layer.take(["a"]) is None
    assert layer.take(["never-sent"]) is None
    assert layer.attachment.store.find(b"never-sent") < 0  # no record made for a non-waiter
    assert _watchers(layer, b"a") == set()


def test_a_waiter_on_a_new_channel_gets_its_record_made(layer, impl):
    """The C section declines a missing record (nothing changed); Python makes it."""
    bell = _bell(layer)
    try:
        assert layer.take(["fresh!"], bell) is None
        assert bell.wid in _watchers(layer, b"fresh!")
        assert _record(layer, b"fresh!")[CH_O_KIND] == KIND_PROCESS
        assert _owner(layer, b"fresh!") == os.getpid()
        layer.send("fresh!1", {"n": 1})
        assert _rung(bell)
        assert layer.take(["fresh!"], bell) == ("fresh!1", {"n": 1})
        layer.release_waiter(bell)
    finally:
        bell.close()
    assert layer.check() == []


def test_a_waiter_on_more_channels_than_a_slot_lists_waits_on_any(layer, impl):
    keys = [f"many{i}" for i in range(70)]
    for key in keys:  # records exist, yet 70 > 64 channels: registered as "any" (Python)
        layer.send(key, {})
        layer.receive([key])
    bell = _bell(layer)
    try:
        assert layer.take(keys, bell) is None
        assert _slot(layer, bell.wid)[3] == WAIT_ANY
        any_bits = int.from_bytes(layer.attachment.segment.mm[H_ANY_AT:H_ANY_AT + 32], "little")
        assert any_bits >> bell.wid & 1
        layer.send("many69", {"last": True})
        assert _rung(bell)
        assert layer.take(keys, bell) == ("many69", {"last": True})
        layer.release_waiter(bell)
    finally:
        bell.close()
    assert layer.check() == []


def test_take_passes_the_wake_on_to_another_waiter(layer, impl):
    """Two messages, two sleeping receivers whose rings were lost: a third takes one and must
    ring a sleeper for the one left."""
    layer.send("q", {"n": 0})
    layer.receive(["q"])
    sleepers = [_bell(layer), _bell(layer)]
    try:
        for bell in sleepers:
            assert layer.take(["q"], bell) is None
        att = layer.attachment
        with att.lock:  # queue without waking, as if the senders' rings were consumed
            cid = att.store.find(b"q")
            for i in (1, 2):
                att.store.enqueue(cid, b"q", b"\x81\xa1n" + bytes([i]), 9e9, 0.0, 100)
        assert layer.take(["q"]) == ("q", {"n": 1})
        assert sum(_rung(bell) for bell in sleepers) == 1
    finally:
        for bell in sleepers:
            layer.release_waiter(bell)
            bell.close()


def test_release_then_take_allocates_a_slot_again(layer, impl):
    bell = _bell(layer)
    try:
        for _ in range(3):
            assert layer.take(["r!"], bell) is None
            wid = bell.wid
            assert _slot(layer, wid)[0] == W_WAITING
            layer.release_waiter(bell)
            assert bell.wid == -1 and _slot(layer, wid)[0] == W_FREE
        layer.release_waiter(bell)  # idempotent
    finally:
        bell.close()
    assert layer.check() == []


# -- receive_fanout ---------------------------------------------------------------------------
def test_receive_fanout_returns_a_group_entry_whole_decoded_once(layer, impl):
    members = ["ifc.1!a", "ifc.1!b", "ifc.1!c"]
    for member in members:
        layer.group_add("room", member)
    layer.group_add("room", "plain")
    layer.send_group("room", {"text": "hi"})
    names, message = layer.receive_fanout(["ifc.1!"])
    assert sorted(names) == members and message == {"text": "hi"}
    assert layer.receive_fanout(["ifc.1!"]) == (None, None)
    assert layer.receive_fanout(["plain"]) == (["plain"], {"text": "hi"})
    assert layer.receive(["ifc.1!"]) == (None, None)


def test_receive_fanout_after_receive_takes_the_rest_in_order(layer, impl):
    members = [f"ifc.2!m{i}" for i in range(5)]
    for member in members:
        layer.group_add("room", member)
    layer.send_group("room", {"n": 1})
    layer.send("ifc.2!m0", {"direct": True})
    layer.send_group("room", {"n": 2})
    first, message = layer.receive(["ifc.2!"])  # the usual receive expands the entry
    assert message == {"n": 1}
    rest, message = layer.receive_fanout(["ifc.2!"])
    assert message == {"n": 1} and sorted(rest + [first]) == members
    assert layer.receive_fanout(["ifc.2!"]) == (["ifc.2!m0"], {"direct": True})
    names, message = layer.receive_fanout(["ifc.2!"])
    assert message == {"n": 2} and sorted(names) == members
    assert layer.receive_fanout(["ifc.2!"]) == (None, None)


def test_receive_fanout_keeps_two_equal_broadcasts_apart_per_channel(layer, impl):
    """Two broadcasts of the same (tiny, interned) payload: each member gets both, in order."""
    for member in ("ifc.3!a", "ifc.3!b"):
        layer.group_add("g", member)
    layer.send_group("g", {})
    layer.send_group("g", {})
    first, _ = layer.receive(["ifc.3!"])  # expands the first
    seen = [first]
    for _ in range(4):
        names, message = layer.receive_fanout(["ifc.3!"])
        if names is None:
            break
        assert message == {}
        seen += names
    assert sorted(seen) == ["ifc.3!a", "ifc.3!a", "ifc.3!b", "ifc.3!b"]


def test_receive_fanout_rejects_bad_channel_lists_like_receive(layer, impl):
    with pytest.raises((TypeError, ValueError)):
        layer.receive_fanout([])
    with pytest.raises(TypeError):
        layer.receive_fanout(["bad name"])


@pytest.mark.parametrize("impl", ["c"], indirect=True)
def test_the_c_section_takes_and_registers_with_no_python_fallback(layer, impl, monkeypatch):
    """Once the records exist, register / ring / take / register again is C only."""
    layer.send("hot", {"warm": 1})
    layer.receive(["hot"])
    bell = _bell(layer)
    try:
        def no_python(*args):
            raise AssertionError("the C fast path declined the common case")

        monkeypatch.setattr(Sections, "_take_python", no_python)
        assert layer.take(["hot"], bell) is None  # allocates the slot in C too
        for n in range(20):
            layer.send("hot", {"n": n})
            assert _rung(bell)
            assert layer.take(["hot"], bell) == ("hot", {"n": n})
            assert layer.take(["hot"], bell) is None
            assert _slot(layer, bell.wid)[0] == W_WAITING
        monkeypatch.undo()
        layer.release_waiter(bell)
    finally:
        bell.close()
    assert layer.check() == []
