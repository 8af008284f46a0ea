"""The WebSocket side of the cluster benchmark: members spread over the machines, one broadcaster.

``run_members`` (a load process; asyncio + ``websockets``) opens ``count`` WebSockets, spread
round-robin over the machines' URLs (each joins the site's broadcast group on its machine), reports
how many it has, then records every broadcast frame until the end marker arrived on every socket or
its deadline passed, and reports the deliveries.

``send_broadcasts`` (in the coordinating process) connects to one machine and sends one frame every
``interval`` s: its text is ``B <seq> <time.monotonic()>`` (Channels 1 sites: prefixed ``say:``,
which the test site's consumer broadcasts). After the last one and a pause, the end marker ``E``.
The latency of a delivery is the member's ``time.monotonic()`` on receipt minus the time in the
frame (CLOCK_MONOTONIC is system-wide on Linux). A Channels 4 member gets the text inside the
consumer's JSON (``{"text": ...}``); frames without ``text`` (its greeting) are not broadcasts.

Every client runs without compression and without keep-alive pings, so each site gets the same
plain text frames. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time

END = "E"


def broadcast_text(frame: str, wrapped: bool) -> str | None:
    """The broadcast text a member got in ``frame`` (``wrapped``: a Channels 4 JSON frame), or None
    when the frame carries none (the Channels 4 consumer's greeting)."""
    if not wrapped:
        return frame
    return json.loads(frame).get("text")


def parse_broadcast(text: str) -> tuple[int, float] | None:
    """``(seq, sent_at)`` of ``B <seq> <t>``; None for the end marker; ValueError for anything else."""
    if text == END:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != "B":
        raise ValueError(f"not a broadcast frame: {text[:60]!r}")
    return int(parts[1]), float(parts[2])


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-int(q * len(ordered)) // 100))  # ceil(q/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _connect(url: str, timeout: float):
    from websockets.asyncio.client import connect

    return connect(url, open_timeout=timeout, ping_interval=None, compression=None, max_queue=None,
                   close_timeout=1)


async def _members(urls: list[str], count: int, wrapped: bool, ready_q, deadline: float) -> dict:
    _raise_fd_limit(count + 256)
    sockets: list = []
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(50)

    async def connect_one(url: str) -> None:
        async with gate:
            try:
                sockets.append(await _connect(url, 15))
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    await asyncio.wait_for(asyncio.gather(*(connect_one(urls[i % len(urls)]) for i in range(count))),
                           timeout=60 + count * 0.05)
    ready_q.put(("ready", len(sockets), failures))
    deliveries: list[tuple[int, float]] = []
    duplicates = ended = bad = 0

    async def read(ws) -> None:
        nonlocal duplicates, ended, bad
        seen: set[int] = set()
        async for frame in ws:
            now = time.monotonic()
            try:
                text = broadcast_text(frame, wrapped)
                parsed = None if text is None else parse_broadcast(text)
            except (ValueError, TypeError):
                bad += 1
                continue
            if text is None:
                continue
            if parsed is None:
                ended += 1
                return
            seq, sent_at = parsed
            if seq in seen:
                duplicates += 1
            else:
                seen.add(seq)
                deliveries.append((seq, (now - sent_at) * 1000.0))

    tasks = [asyncio.ensure_future(read(ws)) for ws in sockets]
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closing = [asyncio.ensure_future(ws.close()) for ws in sockets]
    if closing:
        await asyncio.wait(closing, timeout=5)
    for ws in sockets:
        ws.transport.abort()
    return {"connected": len(sockets), "connect_failures": failures, "deliveries": deliveries,
            "duplicates": duplicates, "ended": ended, "bad_frames": bad}


def run_members(urls: list[str], count: int, wrapped: bool, ready_q, result_q, run_for: float) -> None:
    """Load process entry point (see the module docstring). ``run_for`` bounds how long it reads
    after connecting (seconds); its result (or ``{"error": ...}``) goes to ``result_q``."""
    deadline = time.monotonic() + 60 + count * 0.05 + run_for
    try:
        result = asyncio.run(_members(urls, count, wrapped, ready_q, deadline))
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator
        ready_q.put(("error", 0, {type(exc).__name__: 1}))
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result_q.put(result)


async def send_broadcasts(url: str, say: str, seconds: float, interval: float, end_pause: float) -> dict:
    """From one socket on ``url``, send ``say + "B <seq> <t>"`` every ``interval`` s for ``seconds``,
    then ``say + "E"`` after ``end_pause`` s. Frames this socket gets back (it is a member too) are
    read and dropped. Returns how many were sent and how many were sent over an interval late."""
    async with _connect(url, 15) as ws:
        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.ensure_future(drain())
        count = max(1, int(seconds / interval))
        start = time.monotonic() + 0.05
        late = 0
        for seq in range(count):
            delay = start + seq * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -interval:
                late += 1
            await asyncio.wait_for(ws.send(f"{say}B {seq} {time.monotonic()!r}"), timeout=5)
        await asyncio.sleep(end_pause)
        await asyncio.wait_for(ws.send(say + END), timeout=5)
        await asyncio.sleep(0.2)
        reader.cancel()
    return {"broadcasts": count, "sender_late": late}


def summarize(reports: list[dict], broadcasts: int, skip_first: int) -> dict:
    """Counts and latency percentiles (ms) over the members' reports. Losses count every (member,
    broadcast) pair never received; latencies leave out the first ``skip_first`` broadcasts."""
    connected = sum(r.get("connected", 0) for r in reports)
    received = sum(len(r.get("deliveries", [])) for r in reports)
    latencies = [ms for r in reports for seq, ms in r.get("deliveries", []) if seq >= skip_first]
    return {
        "members": connected,
        "connect_failures": sum(sum(r.get("connect_failures", {}).values()) for r in reports),
        "broadcasts": broadcasts,
        "deliveries_expected": connected * broadcasts,
        "deliveries_received": received,
        "lost": connected * broadcasts - received,
        "duplicates": sum(r.get("duplicates", 0) for r in reports),
        "members_got_end_marker": sum(r.get("ended", 0) for r in reports),
        "bad_frames": sum(r.get("bad_frames", 0) for r in reports),
        "errors": [r["error"] for r in reports if "error" in r],
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
    }
