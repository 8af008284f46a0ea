"""Run code under a tracer that counts the lines executed inside ``asgi_ipc`` (test helper).

Used to measure cost without timing (``test_cost``) and to stop an operation after exactly N
lines, the way a kill would (``test_recovery``).
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
