"""Crash safety, deterministically: stop an operation after every possible line, repair, check.

A tracer raises ``Killed`` after the N-th line executed inside ``asgi_ipc`` for N = 1, 2, ...
until the operation completes untouched. Each time the segment is left exactly as a process
killed at that point would leave it (at Python-line granularity; the SIGKILL torture test in
``test_crash.py`` covers the rest). ``recovery.rebuild`` must then give a segment that passes
``recovery.check`` and still holds every message that was committed before the operation, minus
at most the one being received, plus at most the one being sent: never a duplicate.
"""

from __future__ import annotations

import pytest

from asgi_ipc.lock import _unlock
from asgi_ipc.recovery import check, rebuild
from tests.asgi_ipc.tracing import SHARDS, SWEEP_SEGMENT, kill_points, trace_lines


@pytest.fixture
def impl(monkeypatch) -> str:
    """These sweeps kill the pure-Python reference line by line (the C path is covered by
    the SIGKILL torture in test_crash.py)."""
    monkeypatch.setenv("ASGI_IPC_PURE", "1")
    return "pure"


class Killed(BaseException):
    """Raised by the tracer: the 'process' dies here."""


def run_killed_after(n: int, operation, layer) -> bool:
    """Run ``operation``, killing it after ``n`` lines; return True if it completed.

    A killed process's robust mutex is released by the kernel; here the 'process' is this
    thread, so the harness releases it (``pthread_mutex_unlock`` fails harmlessly with EPERM
    when the kill came before the lock was taken or after it was released).
    """
    def kill_at(line: int) -> None:
        if line == n:
            raise Killed

    try:
        trace_lines(operation, kill_at)
        return True
    except Killed:
        _unlock(layer._a().lock.ptr)
        return False


def drain(layer, channels):
    out = []
    for _ in range(1000):
        channel, message = layer.receive(channels)
        if channel is None:
            return out
        out.append((channel, message["id"]))
    raise AssertionError("queue does not drain")


def repair_and_check(layer):
    att = layer._a()
    with att.lock:
        rebuild(att.segment.mm, att.segment.layout, lambda pid: True)
        att.store._cache.clear()
        problems = check(att.segment.mm, att.segment.layout)
    assert problems == []


def baseline(layer):
    layer.flush()
    for i in range(3):
        layer.send("q", {"id": f"old{i}"})
    layer.send("p!a", {"id": "pa"})
    for member in sorted(MEMBERS):
        layer.group_add("g", member)


#: Each sweep test runs once per shard of its kill points (see ``tracing.kill_points``).
sharded = pytest.mark.parametrize("shard", range(SHARDS))


def sweep(layer, operation, verify, shard: int):
    """Kill ``operation`` after every line of ``shard``'s kill points in turn; repair; verify
    the survivors."""
    completed = False
    for n in kill_points(shard):
        baseline(layer)
        completed = run_killed_after(n, lambda: operation(layer), layer)
        repair_and_check(layer)
        verify(layer, completed)
        if completed:
            break
    assert completed, "operation never completed"


def test_kill_point_shards_together_cover_every_line_once():
    points = sorted(n for shard in range(SHARDS) for n in kill_points(shard))
    assert points == list(range(1, len(points) + 1)) and len(points) > 1000
    with pytest.raises(ValueError, match=rf"shard must be in 0\.\.{SHARDS - 1}, got {SHARDS}"):
        kill_points(SHARDS)


#: The group ``baseline`` fills.
MEMBERS = {"m1", "m2", "p!x", "p!y"}
OLD = [("q", "old0"), ("q", "old1"), ("q", "old2")]


@sharded
def test_killed_send_loses_at_most_the_message_being_sent(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify(layer, completed):
        got = drain(layer, ["q"])
        assert got in (OLD, OLD + [("q", "new")])
        if completed:
            assert got == OLD + [("q", "new")]

    sweep(layer, lambda l: l.send("q", {"id": "new"}), verify, shard)


@sharded
def test_killed_send_to_new_channel(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify(layer, completed):
        got = drain(layer, ["fresh?abc"])
        assert got in ([], [("fresh?abc", "new")])
        if completed:
            assert got == [("fresh?abc", "new")]

    sweep(layer, lambda l: l.send("fresh?abc", {"id": "new"}), verify, shard)


@sharded
def test_killed_receive_never_duplicates(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify(layer, completed):
        got = drain(layer, ["q"])
        assert got in (OLD, OLD[1:])
        if completed:
            assert got == OLD[1:]

    sweep(layer, lambda l: l.receive(["q"]), verify, shard)


@sharded
def test_killed_send_group(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify(layer, completed):
        got = drain(layer, ["m1", "m2", "p!", "q"])
        ids = [i for _, i in got]
        assert ids.count("g") <= 4 and len(set(got)) == len(got)
        assert sorted(i for i in ids if i != "g") == ["old0", "old1", "old2", "pa"]
        if completed:
            assert sorted(c for c, i in got if i == "g") == ["m1", "m2", "p!x", "p!y"]
        assert sorted(layer.group_channels("g")) == ["m1", "m2", "p!x", "p!y"]

    sweep(layer, lambda l: l.send_group("g", {"id": "g"}), verify, shard)


@sharded
def test_killed_group_add(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify_add(layer, completed):
        got = set(layer.group_channels("g"))
        assert got in (MEMBERS, MEMBERS | {"new"})
        if completed:
            assert got == MEMBERS | {"new"}

    sweep(layer, lambda l: l.group_add("g", "new"), verify_add, shard)


@sharded
def test_killed_group_discard(make_layer, shard):
    layer = make_layer(**SWEEP_SEGMENT)

    def verify_discard(layer, completed):
        got = set(layer.group_channels("g"))
        assert got in (MEMBERS, MEMBERS - {"m1"})
        if completed:
            assert got == MEMBERS - {"m1"}

    sweep(layer, lambda l: l.group_discard("g", "m1"), verify_discard, shard)


def test_rebuild_repairs_scrambled_derived_data(make_layer):
    """Derived structures (indexes, free lists, tails, depths) can be rebuilt from scratch."""
    layer = make_layer()
    baseline(layer)
    att = layer._a()
    layout, mm = att.segment.layout, att.segment.mm
    with att.lock:
        mm[layout.channel_index_at:layout.groups_at] = b"\xff" * (layout.groups_at -
                                                                 layout.channel_index_at)
        mm[layout.blockmap_at:layout.arena_at] = bytes(layout.arena_at - layout.blockmap_at)
        assert check(mm, layout) != []
    with att.lock:
        # the block map was wiped: the queues' blocks are no longer marked allocated, so
        # recovery must cut those queues rather than trust unmarked blocks
        rebuild(mm, layout, lambda pid: True)
        att.store._cache.clear()
        assert check(mm, layout) == []
    layer.send("q", {"id": "after"})
    assert drain(layer, ["q"])[-1] == ("q", "after")


@pytest.mark.parametrize("region", ["channels", "members", "arena"])
def test_corrupt_bytes_give_a_clear_error_or_are_repaired(make_layer, region):
    """Garbage in the segment never crashes or hangs: operations raise SegmentCorrupt or work."""
    import random

    from asgi_ipc import SegmentCorrupt

    layer = make_layer()
    baseline(layer)
    att = layer._a()
    layout, mm = att.segment.layout, att.segment.mm
    start, end = {
        "channels": (layout.channels_at, layout.channels_at + 8 * 256),
        "members": (layout.members_at, layout.members_at + 8 * 160),
        "arena": (layout.arena_at, layout.arena_at + 64 * 256),
    }[region]
    rng = random.Random(1234)
    for _ in range(200):
        at = rng.randrange(start, end)
        mm[at] = rng.randrange(256)
    outcomes = set()
    for op in (lambda: layer.receive(["q", "p!"]), lambda: layer.send("q", {"id": "x"}),
               lambda: layer.send_group("g", {"id": "y"}), lambda: layer.group_channels("g"),
               lambda: layer.global_statistics()):
        for _ in range(5):
            try:
                op()
                outcomes.add("ok")
            except (SegmentCorrupt, UnicodeDecodeError, ValueError, TypeError) as exc:
                outcomes.add(type(exc).__name__)
    assert outcomes  # it returned: no crash, no hang
    repair_and_check(layer)
