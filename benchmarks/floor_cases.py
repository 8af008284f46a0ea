"""The floors: what any Python transport pays before a channel layer adds anything.

- :func:`pack_unpack`: msgpack. Any layer that serialises with msgpack pays at least one ``packb``
  (send) and one ``unpackb`` (receive) per message, so pack+unpack per second is the ceiling for
  messages per second through one process.
- :func:`pipe_ping` / :func:`pipe_pong`: the round-trip floor. Two processes exchange the same
  request and reply, msgpack'd, over a pair of FIFOs: one kernel wake-up each way and the
  serialisation, nothing else.
"""

from __future__ import annotations

import os
from array import array
from time import perf_counter
from typing import Any

import msgpack

from benchmarks.messages import ID_KEY, http_request, http_response, payload
from benchmarks.procs import RoleContext

__all__ = ["pack_unpack", "pipe_ping", "pipe_pong"]


def pack_unpack(ctx: RoleContext, kind: str, size: int, duration: float, window: float) -> dict[str, Any]:
    """Pack and unpack the message (``kind`` "http" or "payload", ``size`` bytes) for ``duration``
    s, in windows of ``window`` s; returns the rate of every window."""
    message = http_request("bench.reply!c0", size) if kind == "http" else payload(size)
    packb, unpackb = msgpack.packb, msgpack.unpackb
    rates: list[float] = []
    ctx.ready()
    n = 0
    end = perf_counter() + duration
    while perf_counter() < end:
        t0 = now = perf_counter()
        stop, start_n = t0 + window, n
        while now < stop:
            message[ID_KEY] = n
            if unpackb(packb(message, use_bin_type=True), raw=False)[ID_KEY] != n:
                raise RuntimeError("msgpack round trip changed the message")
            n += 1
            now = perf_counter()
        rates.append((n - start_n) / (now - t0))
    return {"pairs": n, "window_rates": rates}


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("the other end of the FIFO closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes:
    return _read_exact(fd, int.from_bytes(_read_exact(fd, 4), "little"))


def _write_frame(fd: int, data: bytes) -> None:
    os.write(fd, len(data).to_bytes(4, "little") + data)


def pipe_pong(ctx: RoleContext, requests: str, replies: str) -> dict[str, Any]:
    """The server half of the transport floor: read a framed request from the ``requests`` FIFO,
    unpack it, pack an ``http.response`` and write it to ``replies``; stop on an empty frame."""
    fd_in = os.open(requests, os.O_RDWR)  # O_RDWR: opening does not wait for the other end
    fd_out = os.open(replies, os.O_RDWR)
    try:
        served = 0
        ctx.ready()
        while True:
            frame = _read_frame(fd_in)
            if not frame:
                return {"served": served}
            request = msgpack.unpackb(frame, raw=False)
            _write_frame(fd_out, msgpack.packb(http_response(request[ID_KEY]), use_bin_type=True))
            served += 1
    finally:
        os.close(fd_in)
        os.close(fd_out)


def pipe_ping(
    ctx: RoleContext, requests: str, replies: str, size: int, duration: float, warmup: int
) -> dict[str, Any]:
    """The client half: pack a ~``size`` B ``http.request``, write it, block reading the reply,
    unpack it; time each trip. This is the least a Python round trip between two processes costs
    here: two wake-ups through the kernel plus msgpack both ways, with no channel layer at all."""
    fd_out = os.open(requests, os.O_RDWR)
    fd_in = os.open(replies, os.O_RDWR)
    try:
        request = http_request("bench.reply!c0", size)
        latencies = array("d")
        ctx.ready()
        n = 0
        end = perf_counter() + duration
        while perf_counter() < end:
            request[ID_KEY] = n
            start = perf_counter()
            _write_frame(fd_out, msgpack.packb(request, use_bin_type=True))
            reply = msgpack.unpackb(_read_frame(fd_in), raw=False)
            took = perf_counter() - start
            if reply[ID_KEY] != n:
                raise RuntimeError(f"trip {n}: reply {reply[ID_KEY]}")
            if n >= warmup:
                latencies.append(took)
            n += 1
        _write_frame(fd_out, b"")
        return {"latencies": latencies.tobytes()}
    finally:
        os.close(fd_out)
        os.close(fd_in)
