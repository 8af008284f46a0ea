"""The buddy allocator, driven directly on a bytearray (no processes, no shared memory)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ipc.arena import Arena
from asgi_ipc.layout import UNIT, Layout, Sizes


def make_arena(top_blocks: int = 4) -> tuple[bytearray, Arena]:
    sizes = Sizes.from_config(message_memory=top_blocks * 64 * 1024, channels=16, groups=1,
                              group_members=1, waiters=8, max_message_size=60 * 1024)
    layout = Layout(sizes)
    buf = bytearray(layout.total)
    arena = Arena(buf, layout)
    arena.rebuild_free({})
    return buf, arena


def test_blocks_never_overlap_and_memory_is_conserved():
    buf, arena = make_arena()
    rng = random.Random(7)
    live: dict[int, int] = {}
    for _ in range(3000):
        if live and rng.random() < 0.45:
            unit = rng.choice(list(live))
            arena.free(unit)
            del live[unit]
        else:
            size = rng.choice([100, 300, 1000, 5000, 20000, 60000])
            unit = arena.alloc(size)
            if unit < 0:
                continue
            order = arena.block_order(unit)
            assert UNIT << order >= size
            assert unit % (1 << order) == 0
            live[unit] = order
        spans = sorted((u, u + (1 << o)) for u, o in live.items())
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    used = sum(1 << o for o in live.values()) * UNIT
    assert used + arena.free_bytes() == arena.units * UNIT
    assert arena.used_blocks() == live


def test_coalescing_recovers_large_blocks_after_fragmentation():
    buf, arena = make_arena(top_blocks=2)
    small = []
    while True:
        unit = arena.alloc(200)
        if unit < 0:
            break
        small.append(unit)
    assert arena.alloc(60000) == -1
    for unit in small:
        arena.free(unit)
    assert arena.alloc(60000) >= 0  # only possible if buddies were merged


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 65000)), max_size=80))
def test_random_alloc_free_sequences_keep_the_arena_consistent(ops):
    buf, arena = make_arena(top_blocks=2)
    live: list[int] = []
    for is_alloc, size in ops:
        if is_alloc or not live:
            unit = arena.alloc(size)
            if unit >= 0:
                live.append(unit)
        else:
            arena.free(live.pop(size % len(live)))
    assert sum(UNIT << arena.block_order(u) for u in live) + arena.free_bytes() == \
        arena.units * UNIT
