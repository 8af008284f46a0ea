"""Benchmark roles for ``asgi_ipc.IPCChannelLayer`` (the synchronous ASGI-1 API).

Each function is a role for :func:`benchmarks.procs.run_children`: it attaches to the segment the
parent created (``ctx.layer_config``), does its setup, calls ``ctx.ready()``, does its timed work and
returns plain numbers. :mod:`benchmarks.redis_cases` has the same roles for ``channels_redis``, doing
the same work through that layer's asyncio API; keep the two in step.

Every wait is bounded: blocking receives return ``(None, None)`` after the layer's internal timeout,
and every loop also checks a hard deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from collections import defaultdict
from time import perf_counter
from typing import Any

from asgi_ipc import IPCChannelLayer

from benchmarks.messages import (
    ID_KEY,
    STOP_KEY,
    http_request,
    http_response,
    make_id,
    payload,
    stop_message,
)
from benchmarks.cpu_time import process_cpu_seconds
from benchmarks.procs import IDLE_SETTLE, RoleContext

__all__ = [
    "consumer",
    "group_member",
    "group_sender",
    "idle_receiver",
    "idle_waker",
    "pairs",
    "producer",
    "rtt_client",
    "rtt_server",
    "stopper",
]

_FULL_BACKOFF = 50e-6  # seconds to wait after ChannelFull before trying the same send again


def _attach(ctx: RoleContext) -> IPCChannelLayer:
    """The layer under test: ours on shared memory, or (``layer="redis"``, the ``asgi_redis``
    backend) the same ASGI 1 API over Redis, so both run exactly these roles."""
    config = dict(ctx.layer_config)
    if config.pop("layer", "ipc") == "redis":
        from asgi_ipc.redis import RedisChannelLayer

        return RedisChannelLayer(**config)  # type: ignore[return-value]
    return IPCChannelLayer(**config)


def _message(kind: str, size: int, reply_channel: str = "bench.reply!c0") -> dict[str, Any]:
    return http_request(reply_channel, size) if kind == "http" else payload(size)


def _send_retrying(layer: IPCChannelLayer, channel: str, message: dict[str, Any], deadline: float) -> int:
    """Send, retrying on ChannelFull until ``deadline``; return how many times it was full."""
    full = 0
    while True:
        try:
            layer.send(channel, message)
            return full
        except layer.ChannelFull:
            full += 1
            if perf_counter() > deadline:
                raise
            time.sleep(_FULL_BACKOFF)


def pairs(
    ctx: RoleContext, depths: dict[str, int], kind: str, size: int, duration: float, window: float
) -> dict[str, Any]:
    """Single process: pre-fill each channel of ``depths`` with its number of messages, then do
    send+receive pairs on the channels in turn, ``window`` seconds each, for ``duration`` s in all.

    Each channel's depth stays constant while measuring (one in, one out). Alternating short
    windows means a change in machine load hits every depth alike. Returns the pairs/s of every
    window per channel.
    """
    layer = _attach(ctx)
    try:
        message = _message(kind, size)
        for channel, depth in depths.items():
            for i in range(depth):
                message[ID_KEY] = -2 - i
                layer.send(channel, message)
        rates: dict[str, list[float]] = {channel: [] for channel in depths}
        ctx.ready()
        n = 0
        end = perf_counter() + duration
        while perf_counter() < end:
            for channel in depths:
                t0 = now = perf_counter()
                stop, start_n = t0 + window, n
                while now < stop:
                    message[ID_KEY] = n
                    layer.send(channel, message)
                    _, got = layer.receive([channel])
                    if got is None:
                        raise RuntimeError(f"receive([{channel!r}]) returned nothing right after a send")
                    n += 1
                    now = perf_counter()
                rates[channel].append((n - start_n) / (now - t0))
        for channel, depth in depths.items():
            left = 0
            while layer.receive([channel])[1] is not None:
                left += 1
            if left != depth:
                raise RuntimeError(f"expected {depth} messages left on {channel!r} after the pairs, found {left}")
        return {"window_rates": rates, "pairs": n}
    finally:
        layer.close()


def producer(ctx: RoleContext, channel: str, index: int, kind: str, size: int, duration: float) -> dict[str, Any]:
    """Send uniquely numbered messages for ``duration`` s, then tell the stopper (via ``peers``)."""
    layer = _attach(ctx)
    try:
        message = _message(kind, size)
        ctx.ready()
        sent = full = 0
        t0 = now = perf_counter()
        end = t0 + duration
        while now < end:
            message[ID_KEY] = make_id(index, sent)
            try:
                layer.send(channel, message)
                sent += 1
            except layer.ChannelFull:
                full += 1
                time.sleep(_FULL_BACKOFF)
            now = perf_counter()
        ctx.peers.put(("done", index, 0, now))
        return {"sent": sent, "full": full, "t_start": t0, "t_end": now}
    finally:
        layer.close()


def stopper(ctx: RoleContext, channel: str, producers: int, consumers: int, timeout: float) -> dict[str, Any]:
    """Once every producer is done, send one stop message per consumer.

    Sent after all data, so a consumer that takes a stop knows every data message was already
    taken. One sender for all stops (rather than each producer sending its own) keeps this true
    even if a layer delivers some message twice: any stop, even a duplicate, comes after all data.
    """
    layer = _attach(ctx)
    try:
        ctx.ready()
        if ctx.wait_round(0, producers, timeout) is None:
            raise RuntimeError(f"the {producers} producers did not all finish within {timeout}s")
        for _ in range(consumers):
            _send_retrying(layer, channel, stop_message(), perf_counter() + 30)
        return {}
    finally:
        layer.close()


def consumer(ctx: RoleContext, channel: str, deadline: float) -> dict[str, Any]:
    """Receive until a stop message arrives (or ``deadline`` s passed).

    Returns the ids received (as int64 bytes) and the time of the first and last data message.
    """
    layer = _attach(ctx)
    try:
        ids = array("q")
        stopped = False
        first = last = 0.0
        ctx.ready()
        hard = perf_counter() + deadline
        while not stopped and perf_counter() < hard:
            _, message = layer.receive([channel], block=True)
            if message is None:
                continue
            if STOP_KEY in message:
                stopped = True
                continue
            last = perf_counter()
            if not first:
                first = last
            ids.append(message[ID_KEY])
        return {"ids": ids.tobytes(), "first": first, "last": last, "timed_out": not stopped}
    finally:
        layer.close()


def rtt_server(ctx: RoleContext, channel: str, deadline: float) -> dict[str, Any]:
    """Answer every request on ``channel`` with an ``http.response`` on its reply channel."""
    layer = _attach(ctx)
    try:
        served = 0
        ctx.ready()
        hard = perf_counter() + deadline
        while perf_counter() < hard:
            _, message = layer.receive([channel], block=True)
            if message is None:
                continue
            if STOP_KEY in message:
                break
            _send_retrying(layer, message["reply_channel"], http_response(message[ID_KEY]), hard)
            served += 1
        return {"served": served}
    finally:
        layer.close()


def rtt_client(
    ctx: RoleContext, channel: str, reply_prefix: str, size: int, duration: float, warmup: int
) -> dict[str, Any]:
    """Send a request, block until its reply arrives on our ``!`` channel, repeat; time each trip."""
    layer = _attach(ctx)
    try:
        reply_channel = reply_prefix + "conn1"
        request = http_request(reply_channel, size)
        latencies = array("d")
        ctx.ready()
        n = 0
        t0 = perf_counter()
        end = t0 + duration
        while perf_counter() < end:
            request[ID_KEY] = n
            start = perf_counter()
            layer.send(channel, request)
            got_channel, reply = layer.receive([reply_prefix], block=True)
            while reply is None:
                if perf_counter() > end + 10:
                    raise RuntimeError(f"no reply to request {n} within 10 s")
                got_channel, reply = layer.receive([reply_prefix], block=True)
            took = perf_counter() - start
            if reply[ID_KEY] != n or got_channel != reply_channel:
                raise RuntimeError(f"request {n}: got reply {reply[ID_KEY]} on {got_channel!r}")
            if n >= warmup:
                latencies.append(took)
            n += 1
        layer.send(channel, stop_message())
        return {"latencies": latencies.tobytes()}
    finally:
        layer.close()


def group_member(
    ctx: RoleContext, group: str, tag: str, index: int, members: int, plain_every: int, deadline: float
) -> dict[str, Any]:
    """Join ``members`` channels of this process to ``group`` and report each completed round.

    Every ``plain_every``-th member is a plain channel, the rest are ``!`` channels of this process
    (as a protocol server's WebSocket reply channels). When a round's message has reached every
    member, ``("done", index, round, time)`` goes to ``ctx.peers``. Round -1 is the stop signal.
    """
    layer = _attach(ctx)
    try:
        bang_prefix = f"bench.{tag}.p{index}!"
        names = [
            f"bench.{tag}.plain{index}.m{i}" if i % plain_every == 0 else f"{bang_prefix}m{i}"
            for i in range(members)
        ]
        for name in names:
            layer.group_add(group, name)
        listen = [bang_prefix] + [n for n in names if "!" not in n]
        seen: dict[int, set[str]] = defaultdict(set)
        duplicates = 0
        ctx.ready()
        hard = perf_counter() + deadline
        while perf_counter() < hard:
            channel, message = layer.receive(listen, block=True)
            if message is None:
                continue
            now = perf_counter()
            got = seen[message["round"]]
            if channel in got:
                duplicates += 1
                continue
            got.add(channel)
            if len(got) == members:
                if message["round"] == -1:
                    break
                ctx.peers.put(("done", index, message["round"], now))
        stop_round = seen.pop(-1, set())
        return {
            "received": {r: len(chans) for r, chans in seen.items()},
            "duplicates": duplicates,
            "stopped": len(stop_round) == members,
        }
    finally:
        layer.close()


def group_sender(
    ctx: RoleContext, group: str, processes: int, size: int, duration: float, round_timeout: float
) -> dict[str, Any]:
    """Repeat ``send_group`` rounds for ``duration`` s; time the call and the delivery to all.

    Round 0 is a warm-up and is not recorded. A round not fully delivered within ``round_timeout``
    is counted in ``incomplete`` (the members' final counts tell how many messages were lost).
    """
    layer = _attach(ctx)
    try:
        message = http_request("bench.reply!c0", size)
        send_s, delivered_s = array("d"), array("d")
        incomplete = 0
        ctx.ready()
        end = perf_counter() + duration
        r = 0
        while r == 0 or perf_counter() < end:
            message["round"] = r
            t0 = perf_counter()
            layer.send_group(group, message)
            t1 = perf_counter()
            done_at = ctx.wait_round(r, processes, round_timeout)
            if r > 0:
                send_s.append(t1 - t0)
                if done_at is None:
                    incomplete += 1
                else:
                    delivered_s.append(done_at - t0)
            r += 1
        message["round"] = -1
        layer.send_group(group, message)
        return {
            "rounds": r - 1,
            "send_s": send_s.tobytes(),
            "delivered_s": delivered_s.tobytes(),
            "incomplete": incomplete,
        }
    finally:
        layer.close()


def idle_receiver(ctx: RoleContext, channel: str, mode: str, deadline: float) -> dict[str, Any]:
    """Block in ``receive(block=True)`` (mode "sync") or ``await receive_async`` (mode "async")
    until the waker's one message arrives. The waker measures this process's CPU meanwhile."""
    if mode not in ("sync", "async"):
        raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
    layer = _attach(ctx)
    try:
        ctx.peers.put(("pid", os.getpid()))
        ctx.ready()
        hard = perf_counter() + deadline
        message = None
        if mode == "sync":
            while message is None and perf_counter() < hard:
                _, message = layer.receive([channel], block=True)
        else:

            async def wait() -> Any:
                got = None
                while got is None and perf_counter() < hard:
                    _, got = await layer.receive_async([channel])
                return got

            message = asyncio.run(wait())
        if message is None:
            raise RuntimeError(f"the waker's message never arrived on {channel!r} within {deadline}s")
        return {"woken": True}
    finally:
        layer.close()


def idle_waker(ctx: RoleContext, channel: str, after: float) -> dict[str, Any]:
    """Let the receiver settle into its blocking receive, measure its CPU over ``after`` seconds,
    then send the one message that wakes it."""
    layer = _attach(ctx)
    try:
        _, receiver = ctx.peers.get(timeout=60)
        ctx.ready()
        time.sleep(IDLE_SETTLE)
        cpu0, t0 = process_cpu_seconds(receiver), perf_counter()
        time.sleep(after)
        cpu1, t1 = process_cpu_seconds(receiver), perf_counter()
        layer.send(channel, stop_message())
        return {"cpu_s": cpu1 - cpu0, "wall_s": t1 - t0}
    finally:
        layer.close()
