"""Benchmark roles for ``channels_redis.core.RedisChannelLayer`` (channels_redis 4.x, asyncio API).

The same roles as :mod:`benchmarks.ours_cases`, doing the same work through the API people use with
Channels 4: ``await layer.send``, ``await layer.receive(one_channel)``, ``await layer.new_channel()``
for process-specific reply channels (``prefix.<client id>!<uuid>``), ``group_add``/``group_send``.

Differences forced by that API, and how each is kept fair:

- ``receive`` takes one channel and has no non-blocking form; it blocks in ``BZPOPMIN`` (5 s, in a
  loop). Hot loops therefore call it directly (no per-call ``wait_for``); each role's whole loop runs
  under one ``asyncio.wait_for`` so it stays bounded in time.
- A process listens on many channels by running one task per channel, as Channels 4 consumers do
  (group members: one task per member channel, feeding one local queue).
- A ``!`` channel can only be received by the layer instance that made it with ``new_channel``.

The roles use nothing but the Channels 4 layer API, so ``benchmarks.channels4_bench`` runs them on
other Channels 4 layers too: a ``layer_class`` entry in the config (a dotted path) replaces
``RedisChannelLayer``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from array import array
from collections import defaultdict
from time import perf_counter
from typing import Any

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

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

_FULL_BACKOFF = 50e-6


def _attach(ctx: RoleContext) -> RedisChannelLayer:
    config = dict(ctx.layer_config)
    path = config.pop("layer_class", None)
    if path is None:
        return RedisChannelLayer(**config)
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**config)


async def _close(layer: RedisChannelLayer) -> None:
    """Close the layer's connections (the pub/sub layer has no ``close_pools``: its ``flush``
    closes them)."""
    close = getattr(type(layer), "close_pools", None)
    await (layer.close_pools() if close is not None else layer.flush())


def _message(kind: str, size: int, reply_channel: str = "bench.reply!c0") -> dict[str, Any]:
    return http_request(reply_channel, size) if kind == "http" else payload(size)


async def _send_retrying(layer: RedisChannelLayer, channel: str, message: dict[str, Any]) -> int:
    full = 0
    while True:
        try:
            await layer.send(channel, message)
            return full
        except ChannelFull:
            full += 1
            await asyncio.sleep(_FULL_BACKOFF)


async def pairs(
    ctx: RoleContext, depths: dict[str, int], kind: str, size: int, duration: float, window: float
) -> dict[str, Any]:
    """Single process: pre-fill each channel of ``depths``, then send+receive pairs on the
    channels in turn, ``window`` seconds each, for ``duration`` s in all (as ours_cases.pairs)."""
    layer = _attach(ctx)
    try:
        message = _message(kind, size)
        for channel, depth in depths.items():
            for start in range(0, depth, 100):  # concurrent batches: pre-filling is not measured
                batch = []
                for i in range(start, min(depth, start + 100)):
                    filler = dict(message)
                    filler[ID_KEY] = -2 - i
                    batch.append(layer.send(channel, filler))
                await asyncio.gather(*batch)
        rates: dict[str, list[float]] = {channel: [] for channel in depths}
        ctx.ready()
        n = 0

        async def measure() -> None:
            nonlocal n
            end = perf_counter() + duration
            while perf_counter() < end:
                for channel in depths:
                    t0 = now = perf_counter()
                    stop, start_n = t0 + window, n
                    while now < stop:
                        message[ID_KEY] = n
                        await layer.send(channel, message)
                        await layer.receive(channel)
                        n += 1
                        now = perf_counter()
                    rates[channel].append((n - start_n) / (now - t0))

        await asyncio.wait_for(measure(), duration + 30)
        return {"window_rates": rates, "pairs": n}
    finally:
        await layer.flush()


async def producer(
    ctx: RoleContext, channel: str, index: int, kind: str, size: int, duration: float
) -> dict[str, Any]:
    """Send uniquely numbered messages for ``duration`` s, then tell the stopper (via ``peers``)."""
    layer = _attach(ctx)
    try:
        message = _message(kind, size)
        ctx.ready()
        sent = full = 0
        t0 = now = perf_counter()

        async def run() -> None:
            nonlocal sent, full, now
            end = t0 + duration
            while now < end:
                message[ID_KEY] = make_id(index, sent)
                try:
                    await layer.send(channel, message)
                    sent += 1
                except ChannelFull:
                    full += 1
                    await asyncio.sleep(_FULL_BACKOFF)
                now = perf_counter()

        await asyncio.wait_for(run(), duration + 30)
        ctx.peers.put(("done", index, 0, now))
        return {"sent": sent, "full": full, "t_start": t0, "t_end": now}
    finally:
        await _close(layer)


async def stopper(ctx: RoleContext, channel: str, producers: int, consumers: int, timeout: float) -> dict[str, Any]:
    """Once every producer is done, send one stop message per consumer (see ours_cases.stopper:
    with one sender, even a duplicated stop comes after all data)."""
    layer = _attach(ctx)
    try:
        ctx.ready()
        # blocking the loop here is fine: this process has nothing else to do meanwhile
        if ctx.wait_round(0, producers, timeout) is None:
            raise RuntimeError(f"the {producers} producers did not all finish within {timeout}s")
        for _ in range(consumers):
            await _send_retrying(layer, channel, stop_message())
        return {}
    finally:
        await _close(layer)


async def consumer(ctx: RoleContext, channel: str, deadline: float) -> dict[str, Any]:
    """Receive until a stop message arrives (or ``deadline`` s passed)."""
    layer = _attach(ctx)
    try:
        ids = array("q")
        stopped = False
        first = last = 0.0
        ctx.ready()

        async def run() -> None:
            nonlocal stopped, first, last
            while True:
                message = await layer.receive(channel)
                if STOP_KEY in message:
                    stopped = True
                    return
                last = perf_counter()
                if not first:
                    first = last
                ids.append(message[ID_KEY])

        try:
            await asyncio.wait_for(run(), deadline)
        except asyncio.TimeoutError:
            pass
        return {"ids": ids.tobytes(), "first": first, "last": last, "timed_out": not stopped}
    finally:
        await _close(layer)


async def rtt_server(ctx: RoleContext, channel: str, deadline: float) -> dict[str, Any]:
    """Answer every request on ``channel`` with an ``http.response`` on its reply channel."""
    layer = _attach(ctx)
    try:
        served = 0
        ctx.ready()

        async def run() -> None:
            nonlocal served
            while True:
                message = await layer.receive(channel)
                if STOP_KEY in message:
                    return
                await _send_retrying(layer, message["reply_channel"], http_response(message[ID_KEY]))
                served += 1

        await asyncio.wait_for(run(), deadline)
        return {"served": served}
    finally:
        await _close(layer)


async def rtt_client(
    ctx: RoleContext, channel: str, reply_prefix: str, size: int, duration: float, warmup: int
) -> dict[str, Any]:
    """Send a request, await its reply on our ``!`` channel, repeat; time each trip."""
    layer = _attach(ctx)
    try:
        reply_channel = await layer.new_channel(reply_prefix.rstrip("!"))
        request = http_request(reply_channel, size)
        latencies = array("d")
        ctx.ready()

        async def run() -> None:
            n = 0
            end = perf_counter() + duration
            while perf_counter() < end:
                request[ID_KEY] = n
                start = perf_counter()
                await layer.send(channel, request)
                reply = await layer.receive(reply_channel)
                took = perf_counter() - start
                if reply[ID_KEY] != n:
                    raise RuntimeError(f"request {n}: got reply {reply[ID_KEY]}")
                if n >= warmup:
                    latencies.append(took)
                n += 1
            await layer.send(channel, stop_message())

        await asyncio.wait_for(run(), duration + 30)
        return {"latencies": latencies.tobytes()}
    finally:
        await _close(layer)


async def group_member(
    ctx: RoleContext, group: str, tag: str, index: int, members: int, plain_every: int, deadline: float
) -> dict[str, Any]:
    """Join ``members`` channels of this process to ``group`` and report each completed round.

    Every ``plain_every``-th member is a plain channel (none if 0), the rest ``!`` channels from
    ``new_channel``.
    One task per member channel receives into a local queue, as one consumer per connection would.
    """
    layer = _attach(ctx)
    inbox: asyncio.Queue[tuple[str, dict[str, Any], float]] = asyncio.Queue()

    async def pump(name: str) -> None:
        while True:
            message = await layer.receive(name)
            inbox.put_nowait((name, message, perf_counter()))

    pumps: list[asyncio.Task[None]] = []
    try:
        names = [
            f"bench.{tag}.plain{index}.m{i}"
            if plain_every and i % plain_every == 0
            else await layer.new_channel(f"bench.{tag}.p{index}")
            for i in range(members)
        ]
        for name in names:
            await layer.group_add(group, name)
        pumps = [asyncio.ensure_future(pump(name)) for name in names]
        seen: dict[int, set[str]] = defaultdict(set)
        duplicates = 0
        ctx.ready()

        async def run() -> None:
            nonlocal duplicates
            while True:
                channel, message, at = await inbox.get()
                got = seen[message["round"]]
                if channel in got:
                    duplicates += 1
                    continue
                got.add(channel)
                if len(got) == members:
                    if message["round"] == -1:
                        return
                    ctx.peers.put(("done", index, message["round"], at))

        try:
            await asyncio.wait_for(run(), deadline)
        except asyncio.TimeoutError:
            pass
        stop_round = seen.pop(-1, set())
        return {
            "received": {r: len(chans) for r, chans in seen.items()},
            "duplicates": duplicates,
            "stopped": len(stop_round) == members,
        }
    finally:
        await _stop_pumps(layer, pumps)


async def _stop_pumps(layer: RedisChannelLayer, pumps: list[asyncio.Task[None]]) -> None:
    """Cancel the receive tasks and close the layer's connections.

    redis-py does not interrupt a pending ``BZPOPMIN`` on cancellation (plain-channel receivers
    would sit out the 5 s block); closing the pools ends them with a ConnectionError instead.
    """
    for task in pumps:
        task.cancel()
    if pumps:
        await asyncio.wait(pumps, timeout=0.2)
    await _close(layer)
    if pumps:
        await asyncio.wait(pumps, timeout=5)
    for task in pumps:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: it is the expected ConnectionError of the closed pool


async def group_sender(
    ctx: RoleContext, group: str, processes: int, size: int, duration: float, round_timeout: float
) -> dict[str, Any]:
    """Repeat ``group_send`` rounds for ``duration`` s; time the call and the delivery to all.

    Round 0 is a warm-up and is not recorded.
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
            await layer.group_send(group, message)
            t1 = perf_counter()
            # blocking the loop here is fine: this process has nothing else to do meanwhile
            done_at = ctx.wait_round(r, processes, round_timeout)
            if r > 0:
                send_s.append(t1 - t0)
                if done_at is None:
                    incomplete += 1
                else:
                    delivered_s.append(done_at - t0)
            r += 1
        message["round"] = -1
        await layer.group_send(group, message)
        return {
            "rounds": r - 1,
            "send_s": send_s.tobytes(),
            "delivered_s": delivered_s.tobytes(),
            "incomplete": incomplete,
        }
    finally:
        await _close(layer)


async def idle_receiver(ctx: RoleContext, channel: str, mode: str, deadline: float) -> dict[str, Any]:
    """Await ``receive`` (channels_redis has only the asyncio mode, "async") until the waker's
    message arrives. The waker measures this process's CPU meanwhile."""
    if mode != "async":
        raise ValueError(f"channels_redis only has an asyncio receive; mode must be 'async', got {mode!r}")
    layer = _attach(ctx)
    try:
        ctx.peers.put(("pid", os.getpid()))
        ctx.ready()
        await asyncio.wait_for(layer.receive(channel), deadline)
        return {"woken": True}
    finally:
        await _close(layer)


async def idle_waker(ctx: RoleContext, channel: str, after: float) -> dict[str, Any]:
    """Let the receiver settle into its blocking receive, measure its CPU over ``after`` seconds,
    then send the one message that wakes it."""
    layer = _attach(ctx)
    try:
        _, receiver = ctx.peers.get(timeout=60)
        ctx.ready()
        await asyncio.sleep(IDLE_SETTLE)
        cpu0, t0 = process_cpu_seconds(receiver), perf_counter()
        await asyncio.sleep(after)
        cpu1, t1 = process_cpu_seconds(receiver), perf_counter()
        await layer.send(channel, stop_message())
        return {"cpu_s": cpu1 - cpu0, "wall_s": t1 - t0}
    finally:
        await _close(layer)
