"""The msgpack floor: what packing and unpacking the benchmark's messages costs, with no transport.

Any Python channel layer that serialises with msgpack pays at least one ``packb`` (send) and one
``unpackb`` (receive) per message, so ``pack+unpack`` per second is the ceiling for messages per
second through one process, and its inverse the floor for one hop of a round trip.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import msgpack

from benchmarks.messages import ID_KEY, http_request, payload
from benchmarks.procs import RoleContext

__all__ = ["pack_unpack"]


def pack_unpack(ctx: RoleContext, kind: str, size: int, duration: float) -> dict[str, Any]:
    """Pack and unpack the message (``kind`` "http" or "payload", ``size`` bytes) for ``duration`` s."""
    message = http_request("bench.reply!c0", size) if kind == "http" else payload(size)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    ctx.ready()
    n = 0
    t0 = now = perf_counter()
    end = t0 + duration
    while now < end:
        message[ID_KEY] = n
        if unpackb(packb(message, use_bin_type=True), raw=False)[ID_KEY] != n:
            raise RuntimeError("msgpack round trip changed the message")
        n += 1
        now = perf_counter()
    return {"pairs": n, "seconds": now - t0}
