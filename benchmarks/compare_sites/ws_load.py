"""The WebSocket side of the whole-site comparison: member clients and the broadcast sender.

``run_members`` (one client process) opens ``count`` WebSocket connections to ``/ws/`` (each joins
the group ``bench`` on the server), reports how many it has, then records every broadcast frame it
receives until the end marker arrives on every socket or its deadline passes.

``send_broadcasts`` (in the coordinating process) connects to ``/ws/send/`` and sends one frame
``B <seq> <monotonic time>`` every ``interval`` seconds; the server sends each frame to the whole
group. The latency of a delivery is the member's ``time.monotonic()`` on receipt minus the time in
the frame (CLOCK_MONOTONIC is system-wide on Linux, so the two processes' clocks agree). After the
last broadcast and a pause, it sends the end marker ``E``.

``summarize`` turns the members' reports into counts and percentiles (``benchmarks.stats``);
``parse_frame`` is pure and tested alone. All clients use no compression and no keep-alive pings,
so every contender gets the same plain text frames.
"""

from __future__ import annotations

import asyncio
import resource
import time

from benchmarks.stats import percentile

END = "E"


def parse_frame(text: str) -> tuple[int, float] | None:
    """``(seq, sent_at)`` of a broadcast frame ``B <seq> <t>``; None for the end marker.
    Anything else raises ``ValueError`` naming the frame."""
    if text == END:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != "B":
        raise ValueError(f"not a broadcast frame: {text[:60]!r}")
    return int(parts[1]), float(parts[2])


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def _members(port: int, count: int, ready_q, connect_timeout: float, deadline: float) -> dict:
    import websockets

    raise_fd_limit(count + 256)
    sockets: list = []
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(50)

    async def connect_one() -> None:
        async with gate:
            try:
                ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/", open_timeout=connect_timeout,
                                              ping_interval=None, compression=None, max_queue=None,
                                              close_timeout=1)
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                kind = type(exc).__name__
                failures[kind] = failures.get(kind, 0) + 1
                return
            sockets.append(ws)

    await asyncio.wait_for(asyncio.gather(*(connect_one() for _ in range(count))),
                           timeout=connect_timeout * 3 + count * 0.05)
    ready_q.put(("ready", len(sockets), failures))

    latencies: list[float] = []
    seen: list[set[int]] = [set() for _ in sockets]
    duplicates = 0
    ended = 0
    bad = 0

    async def read(index: int, ws) -> None:
        nonlocal duplicates, ended, bad
        got = seen[index]
        async for frame in ws:
            now = time.monotonic()
            try:
                parsed = parse_frame(frame)
            except (ValueError, TypeError):
                bad += 1
                continue
            if parsed is None:
                ended += 1
                return
            seq, sent_at = parsed
            if seq in got:
                duplicates += 1
                continue
            got.add(seq)
            latencies.append((seq, (now - sent_at) * 1000.0))

    tasks = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(sockets)]
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closed_early = sum(1 for ws in sockets if ws.close_code is not None)
    await asyncio.wait(
        [asyncio.ensure_future(ws.close()) for ws in sockets] or [asyncio.ensure_future(asyncio.sleep(0))],
        timeout=5)
    for ws in sockets:
        ws.transport.abort()
    return {"connected": len(sockets), "connect_failures": failures, "deliveries": latencies,
            "duplicates": duplicates, "ended": ended, "bad_frames": bad, "closed_before_end": closed_early}


def run_members(port: int, count: int, ready_q, result_q, connect_timeout: float, run_for: float) -> None:
    """Client process entry point: see the module docstring. ``run_for`` bounds the whole life of
    the process after connecting (seconds)."""
    deadline = time.monotonic() + connect_timeout * 3 + count * 0.05 + run_for
    try:
        result = asyncio.run(_members(port, count, ready_q, connect_timeout, deadline))
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator
        ready_q.put(("error", 0, {type(exc).__name__: 1}))
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result_q.put(result)


async def send_broadcasts(port: int, seconds: float, interval: float, end_pause: float) -> dict:
    """Send one broadcast every ``interval`` s for ``seconds``, then the end marker after
    ``end_pause`` s. Returns how many were sent and how late the sender ran."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/send/", open_timeout=10, ping_interval=None,
                                  compression=None, close_timeout=1) as ws:
        count = int(seconds / interval)
        start = time.monotonic() + 0.05
        late = 0
        for seq in range(count):
            due = start + seq * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -interval:
                late += 1
            await asyncio.wait_for(ws.send(f"B {seq} {time.monotonic()!r}"), timeout=5)
        await asyncio.sleep(end_pause)
        await asyncio.wait_for(ws.send(END), timeout=5)
        await asyncio.sleep(0.2)
    return {"broadcasts": count, "sender_late": late}


def summarize(reports: list[dict], broadcasts: int, skip_first: int) -> dict:
    """Counts and latency percentiles over the members' reports. Losses count every (member,
    broadcast) pair never received; latencies leave out the first ``skip_first`` broadcasts
    (warm-up), losses do not."""
    connected = sum(r.get("connected", 0) for r in reports)
    received = sum(len(r.get("deliveries", [])) for r in reports)
    latencies = [ms for r in reports for seq, ms in r.get("deliveries", []) if seq >= skip_first]
    expected = connected * broadcasts
    return {
        "members": connected,
        "connect_failures": sum(sum(r.get("connect_failures", {}).values()) for r in reports),
        "broadcasts": broadcasts,
        "deliveries_expected": expected,
        "deliveries_received": received,
        "lost": expected - received,
        "duplicates": sum(r.get("duplicates", 0) for r in reports),
        "members_got_end_marker": sum(r.get("ended", 0) for r in reports),
        "closed_before_end": sum(r.get("closed_before_end", 0) for r in reports),
        "errors": [r["error"] for r in reports if "error" in r],
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
    }
