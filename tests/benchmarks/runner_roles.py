"""Roles for the process-runner tests of ``test_layer_bench_smoke.py``.

``benchmarks.procs.run_children`` spawns a fresh interpreter per child, which imports the role's
module: these roles live here, with nothing but the standard library imported, so a child starts
in a fraction of a second instead of importing pytest and the whole test module (about 1.3 s).
"""

from __future__ import annotations

import os
import time
from typing import Any


def role_echo(ctx: Any, value: int) -> dict:
    """Ready at once; returns ``value`` and this child's pid."""
    ctx.ready()
    return {"value": value, "pid": os.getpid()}


def role_fail(ctx: Any) -> dict:
    """Ready at once, then raises ``ValueError``."""
    ctx.ready()
    raise ValueError("this role fails on purpose")


def role_hang(ctx: Any, seconds: float) -> dict:
    """Ready at once, then sleeps ``seconds`` (longer than the case's timeout)."""
    ctx.ready()
    time.sleep(seconds)
    return {}
