"""The open-addressing index against a dict model (property test, pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ipc.index import HashIndex, name_hash


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=200))
def test_index_matches_a_dict(ops):
    slots = 64
    buf = bytearray(slots * 8)
    index = HashIndex(buf, 0, slots, limit=41)
    model: dict[int, int] = {}  # record id -> hash
    for insert, rid in ops:
        key = f"k{rid % 13}".encode()  # few distinct hashes: long probe runs and collisions
        h = name_hash(key) if rid % 3 else 7  # and identical hashes for many ids
        if insert and rid not in model and len(model) < slots - 1:
            index.insert(h, rid)
            model[rid] = h
        elif not insert and rid in model:
            index.remove(model.pop(rid), rid)
        for known, kh in model.items():
            assert index.lookup(kh, lambda r, known=known: r == known) == known
    assert index.lookup(12345, lambda r: True) in (-1, *model)
