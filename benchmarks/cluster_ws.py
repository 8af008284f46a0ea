"""The WebSocket side of the cluster benchmark: members spread over the machines, one broadcaster.

``run_members`` (a load process: asyncio, with a minimal frame reader, :class:`_Member`, since the
``websockets`` client's cost per frame would make the client the bottleneck) opens ``count`` WebSockets, spread
round-robin over the machines' URLs (each joins the site's broadcast group on its machine), reports
how many it has, then records every broadcast frame until the end marker arrived on every socket or
its reading time passed (what has not arrived by then counts as lost), and reports the deliveries.

``send_broadcasts`` (in the coordinating process) connects to one machine and sends one frame every
``interval`` s: its text is ``B <seq> <time.monotonic()>`` (Channels 1 sites: prefixed ``say:``,
which the test site's consumer broadcasts). After the last one and a pause, the end marker ``E``.
The latency of a delivery is the member's ``time.monotonic()`` on receipt minus the time in the
frame (CLOCK_MONOTONIC is system-wide on Linux). A Channels 4 member gets the text inside the
consumer's JSON (``{"text": ...}``); frames without ``text`` (its greeting) are not broadcasts.

No client offers compression, so each site sends the same plain text frames; the broadcaster
(``websockets``) sends no pings, members answer the server's. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

from benchmarks.compare_sites.ws_load import END, raise_fd_limit
from benchmarks.compare_sites.ws_load import parse_frame as parse_broadcast
from benchmarks.stats import percentile



def broadcast_text(frame: str, wrapped: bool) -> str | None:
    """The broadcast text a member got in ``frame`` (``wrapped``: a Channels 4 JSON frame), or None
    when the frame carries none (the Channels 4 consumer's greeting)."""
    if not wrapped:
        return frame
    return json.loads(frame).get("text")


def _connect(url: str, timeout: float):
    """A ``websockets`` client connection (the broadcaster's: one socket, a frame every interval)."""
    import websockets  # websockets.connect: the same call in versions 12 to 15+

    return websockets.connect(url, open_timeout=timeout, ping_interval=None, compression=None, max_queue=None,
                              close_timeout=1)


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask): FIN + ``opcode``, a payload below 126 bytes."""
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _Member(asyncio.Protocol):
    """One member socket: a hand-made upgrade request, then the server's frames parsed in place.

    The ``websockets`` client costs tens of microseconds per frame, and 1,000 members at 20
    broadcasts/s would make the client the bottleneck on a small machine; this costs a few. The
    server's frames are unmasked and, for these small texts, unfragmented: a masked or fragmented
    frame is counted as bad. A ping is answered with its pong; a close ends the member."""

    def __init__(self, host: str, path: str, on_text, opened: asyncio.Future) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.on_text = on_text
        self.opened = opened
        self.closed = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.bad = 0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            status = bytes(buffer[:buffer.find(b"\r\n")])
            del buffer[:head_end + 4]
            if b" 101 " not in status + b" ":
                self.opened.set_exception(ConnectionError(f"upgrade refused: {status[:80]!r}"))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(None)
        pos = 0
        while len(buffer) - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            size, head = second & 0x7F, 2
            if size == 126:
                if len(buffer) - pos < 4:
                    break
                size, head = int.from_bytes(buffer[pos + 2:pos + 4], "big"), 4
            elif size == 127:
                if len(buffer) - pos < 10:
                    break
                size, head = int.from_bytes(buffer[pos + 2:pos + 10], "big"), 10
            if len(buffer) - pos < head + size:
                break
            payload = bytes(buffer[pos + head:pos + head + size])
            pos += head + size
            opcode = first & 0x0F
            if second & 0x80 or not first & 0x80:
                self.bad += 1
            elif opcode == 1:
                self.on_text(payload.decode())
            elif opcode == 9:
                self.transport.write(_masked(10, payload))
            elif opcode == 8:
                self.transport.close()
                break
        del buffer[:pos]


def connect_timeout(count: int) -> float:
    """How long ``count`` members may take to connect (seconds)."""
    return 60 + count * 0.05


async def _members(urls: list[str], count: int, wrapped: bool, ready_q, read_for: float) -> dict:
    raise_fd_limit(count + 256)
    loop = asyncio.get_running_loop()
    members: list[_Member] = []
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(50)
    deliveries: list[tuple[int, float]] = []
    duplicates = ended = bad = 0
    all_ended = loop.create_future()

    def receiver(machine: int):
        seen: set[int] = set()
        done = [False]

        def on_text(frame: str) -> None:
            nonlocal duplicates, ended, bad
            now = time.monotonic()
            try:
                text = broadcast_text(frame, wrapped)
                parsed = None if text is None else parse_broadcast(text)
            except (ValueError, TypeError):
                bad += 1
                return
            if text is None or done[0]:
                return
            if parsed is None:
                done[0] = True
                ended += 1
                if ended == len(members) and not all_ended.done():
                    all_ended.set_result(None)
                return
            seq, sent_at = parsed
            if seq in seen:
                duplicates += 1
            else:
                seen.add(seq)
                deliveries.append((seq, (now - sent_at) * 1000.0, machine))
        return on_text

    async def connect_one(machine: int) -> None:
        rest = urls[machine].split("://", 1)[1]
        host, _, path = rest.partition("/")
        address, _, port = host.rpartition(":")
        async with gate:
            opened = loop.create_future()
            try:
                _, member = await asyncio.wait_for(loop.create_connection(
                    lambda: _Member(host, "/" + path, receiver(machine), opened), address, int(port)), 15)
                await asyncio.wait_for(opened, 15)
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                return
            members.append(member)

    await asyncio.wait_for(asyncio.gather(*(connect_one(i % len(urls)) for i in range(count))),
                           timeout=connect_timeout(count))
    ready_q.put(("ready", len(members), failures))
    if members:
        await asyncio.wait([all_ended], timeout=read_for)
    closed_early = sum(1 for m in members if m.closed.done())
    for member in members:
        member.transport.close()
    return {"connected": len(members), "connect_failures": failures, "deliveries": deliveries,
            "duplicates": duplicates, "ended": ended, "bad_frames": bad + sum(m.bad for m in members),
            "closed_before_end": closed_early}


def run_members(urls: list[str], count: int, wrapped: bool, ready_q, result_q, read_for: float) -> None:
    """Load process entry point (see the module docstring): connects within
    :func:`connect_timeout`, then reads until every member got the end marker or ``read_for``
    seconds passed; its result (or ``{"error": ...}``) goes to ``result_q``."""
    try:
        result = asyncio.run(_members(urls, count, wrapped, ready_q, read_for))
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
    broadcast) pair never received; latencies leave out the first ``skip_first`` broadcasts.
    ``sender_machine_p50_ms``/``p99`` are over the members on the broadcaster's machine (index 0),
    ``other_machines_*`` over the rest: the difference is what crossing machines adds."""
    connected = sum(r.get("connected", 0) for r in reports)
    received = sum(len(r.get("deliveries", [])) for r in reports)
    rows = [row for r in reports for row in r.get("deliveries", []) if row[0] >= skip_first]
    latencies = [ms for _, ms, _ in rows]
    local = [ms for _, ms, machine in rows if machine == 0]
    remote = [ms for _, ms, machine in rows if machine != 0]
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
        "closed_before_end": sum(r.get("closed_before_end", 0) for r in reports),
        "errors": [r["error"] for r in reports if "error" in r],
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "sender_machine_p50_ms": percentile(local, 50),
        "sender_machine_p99_ms": percentile(local, 99),
        "other_machines_p50_ms": percentile(remote, 50),
        "other_machines_p99_ms": percentile(remote, 99),
    }
