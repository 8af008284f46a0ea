"""Run code under a tracer that counts the lines executed inside ``asgi_ipc`` (test helper).

Used to measure cost without timing (``test_cost``) and to stop an operation after exactly N
lines, the way a kill would (``test_recovery``, ``test_wakeups``); those kill-point sweeps also
share their sharding (``kill_points``) and segment sizes (``SWEEP_SEGMENT``) from here.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import asgi_ipc

PACKAGE_DIR = os.path.dirname(asgi_ipc.__file__)


def trace_lines(operation: Callable[[], object], on_line: Callable[[int], None]) -> None:
    """Run ``operation``, calling ``on_line(n)`` for the n-th line run inside ``asgi_ipc``.

    ``on_line`` may raise to stop the operation at that line.
    """
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return None
        if event == "line":
            count += 1
            on_line(count)
        return tracer

    sys.settrace(tracer)
    try:
        operation()
    finally:
        sys.settrace(None)


#: Kill-point sweeps are split into this many interleaved shards, one test item each, so that
#: ``pytest -n 4`` spreads a long sweep over its workers instead of running it end to end.
SHARDS = 4


def kill_points(shard: int, shards: int = SHARDS) -> range:
    """The kill points (line numbers 1, 2, ...) of ``shard`` out of ``shards``: every
    ``shards``-th line starting at ``shard + 1``. The shards together cover every line; a sweep
    over one stops at its first point past the operation's end (where the operation completes),
    so together they also reach the end."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1}, got {shard}")
    return range(shard + 1, 5000, shards)


#: Segment sizes for kill-point sweeps: room for the few channels, groups and messages a sweep
#: uses and no more, because every kill point repairs and checks the whole segment (on the
#: default test sizes that repair is nine tenths of a sweep's time). The operations under test
#: run the same code on any size.
SWEEP_SEGMENT = dict(message_memory=256 << 10, channels=16, groups=4, group_members=64,
                     max_message_size=64 << 10)
