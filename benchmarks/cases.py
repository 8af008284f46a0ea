"""The benchmark's cases, parent side: which processes each case runs and what it computes.

Every case takes a *backend* (``"ours"``, ``"redis"`` or ``"floor"``), the layer config the children
attach with, and the :class:`Durations`, runs its processes through
:func:`benchmarks.procs.run_children`, and returns a flat dict of numbers (no raw arrays), which goes
into the JSON as is. The roles live in ``ours_cases`` / ``redis_cases`` / ``floor_cases``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from array import array
from dataclasses import dataclass
from typing import Any

from benchmarks.messages import split_id
from benchmarks.procs import ChildSpec, run_children
from benchmarks.stats import percentile

__all__ = [
    "BACKEND_MODULES",
    "Durations",
    "cross_process",
    "floor",
    "group_send",
    "idle_cpu",
    "pairs",
    "pipe_round_trip",
    "round_trip",
]

BACKEND_MODULES = {
    "ours": "benchmarks.ours_cases",
    "asgi_redis": "benchmarks.ours_cases",  # asgi_ipc.redis: our roles, our API, over Redis
    "redis": "benchmarks.redis_cases",
    "floor": "benchmarks.floor_cases",
}

_SLACK = 60.0  # extra seconds a case may take past its measuring time before it counts as hung
_WINDOW = 0.1  # seconds per measuring window of the single-process pairs cases


@dataclass(frozen=True)
class Durations:
    """Seconds each case measures for (setup and pre-filling are not counted); ``queued`` is per
    queue depth (three depths are measured)."""

    pairs: float = 2.0
    cross: float = 3.0
    rtt: float = 2.0
    group: float = 2.0
    size: float = 2.0
    queued: float = 1.5
    idle: float = 2.0

    @classmethod
    def quick(cls) -> "Durations":
        """About a quarter of the full run: a smoke test of the whole benchmark, not a measurement."""
        return cls(pairs=0.5, cross=0.75, rtt=0.5, group=0.5, size=0.4, queued=0.4, idle=1.0)


def _doubles(raw: bytes) -> list[float]:
    values = array("d")
    values.frombytes(raw)
    return list(values)


def pairs(
    backend: str, config: dict[str, Any], duration: float, depths: tuple[int, ...], tag: str
) -> dict[str, Any]:
    """One process: send+receive pairs of ~1 KB ``http.request`` on one channel per queue depth,
    in alternating windows of ``_WINDOW`` s; ``rate`` per depth is the median window (pairs/s).

    Returns ``{"depth_<n>": {"rate", "best", "windows"}, "pairs": total}``.
    """
    channels = {f"bench.{tag}.d{depth}": depth for depth in depths}
    spec = ChildSpec(
        "pairs",
        BACKEND_MODULES[backend],
        "pairs",
        {"depths": channels, "kind": "http", "size": 1024, "duration": duration, "window": _WINDOW},
    )
    result = run_children([spec], config, timeout=duration + _SLACK)["pairs"]
    out: dict[str, Any] = {"pairs": result["pairs"], "window_s": _WINDOW}
    for channel, depth in channels.items():
        rates = result["window_rates"][channel]
        out[f"depth_{depth}"] = {"rate": statistics.median(rates), "best": max(rates), "windows": len(rates)}
    return out


def floor(d: Durations, kind: str, size: int) -> dict[str, Any]:
    """msgpack pack+unpack of the same message: median window rate, and microseconds per message."""
    duration = d.size if kind == "payload" else d.pairs
    spec = ChildSpec(
        "floor",
        BACKEND_MODULES["floor"],
        "pack_unpack",
        {"kind": kind, "size": size, "duration": duration, "window": _WINDOW},
    )
    result = run_children([spec], {}, timeout=duration + _SLACK)["floor"]
    rate = statistics.median(result["window_rates"])
    return {"pairs": result["pairs"], "rate": rate, "us_per_message": 1e6 / rate, "mb_per_s": rate * size / 1e6}


def cross_process(
    backend: str,
    config: dict[str, Any],
    duration: float,
    producers: int,
    consumers: int,
    kind: str,
    size: int,
    tag: str,
) -> dict[str, Any]:
    """``producers`` processes send numbered messages to one channel that ``consumers`` drain;
    when all producers are done a stopper process sends each consumer a stop message.

    Throughput is unique messages delivered over the time from the first send to the last
    delivery. Every delivered id is checked against what was sent: ``duplicates`` counts ids
    delivered more than once, ``lost`` ids sent but never delivered, ``unknown`` ids never sent.
    """
    module = BACKEND_MODULES[backend]
    channel = f"bench.{tag}"
    specs = [
        ChildSpec(
            f"producer{p}",
            module,
            "producer",
            {"channel": channel, "index": p, "kind": kind, "size": size, "duration": duration},
        )
        for p in range(producers)
    ] + [
        ChildSpec(f"consumer{c}", module, "consumer", {"channel": channel, "deadline": duration + _SLACK / 2})
        for c in range(consumers)
    ] + [
        ChildSpec(
            "stopper",
            module,
            "stopper",
            {"channel": channel, "producers": producers, "consumers": consumers, "timeout": duration + _SLACK / 2},
        )
    ]
    results = run_children(specs, config, timeout=duration + _SLACK)
    sent = {p: results[f"producer{p}"]["sent"] for p in range(producers)}
    ids = array("q")
    for c in range(consumers):
        ids.frombytes(results[f"consumer{c}"]["ids"])
    unique = set(ids)
    unknown = sum(1 for i in unique if split_id(i)[0] not in sent or split_id(i)[1] >= sent[split_id(i)[0]])
    t_start = min(results[f"producer{p}"]["t_start"] for p in range(producers))
    t_end = max(results[f"consumer{c}"]["last"] for c in range(consumers))
    elapsed = t_end - t_start
    delivered = len(unique) - unknown
    rate = delivered / elapsed if elapsed > 0 else 0.0
    return {
        "producers": producers,
        "consumers": consumers,
        "message_bytes": size,
        "sent": sum(sent.values()),
        "delivered": delivered,
        "duplicates": len(ids) - len(unique),
        "lost": sum(sent.values()) - delivered,
        "unknown": unknown,
        "full_retries": sum(results[f"producer{p}"]["full"] for p in range(producers)),
        "per_consumer": [len(results[f"consumer{c}"]["ids"]) // 8 for c in range(consumers)],
        "consumer_timed_out": any(results[f"consumer{c}"]["timed_out"] for c in range(consumers)),
        "seconds": elapsed,
        "rate": rate,
        "mb_per_s": rate * size / 1e6,
    }


def round_trip(backend: str, config: dict[str, Any], d: Durations, tag: str) -> dict[str, Any]:
    """Client sends an ``http.request``, a server process receives it and replies on the client's
    ``!`` channel, the client (blocked in receive) wakes and takes the reply: microseconds per trip."""
    module = BACKEND_MODULES[backend]
    channel = f"bench.{tag}"
    specs = [
        ChildSpec("server", module, "rtt_server", {"channel": channel, "deadline": d.rtt + _SLACK / 2}),
        ChildSpec(
            "client",
            module,
            "rtt_client",
            {"channel": channel, "reply_prefix": f"bench.{tag}c!", "size": 1024, "duration": d.rtt, "warmup": 50},
        ),
    ]
    results = run_children(specs, config, timeout=d.rtt + _SLACK)
    return {**_latency_summary(results["client"]["latencies"]), "served": results["server"]["served"]}


def pipe_round_trip(d: Durations) -> dict[str, Any]:
    """The round-trip floor: the same request/reply, msgpack'd, between two processes over FIFOs."""
    module = BACKEND_MODULES["floor"]
    with tempfile.TemporaryDirectory(prefix="bench-fifo-") as tmp:
        requests, replies = os.path.join(tmp, "requests"), os.path.join(tmp, "replies")
        os.mkfifo(requests, 0o600)
        os.mkfifo(replies, 0o600)
        specs = [
            ChildSpec("pong", module, "pipe_pong", {"requests": requests, "replies": replies}),
            ChildSpec(
                "ping",
                module,
                "pipe_ping",
                {"requests": requests, "replies": replies, "size": 1024, "duration": d.rtt, "warmup": 50},
            ),
        ]
        results = run_children(specs, {}, timeout=d.rtt + _SLACK)
    return {**_latency_summary(results["ping"]["latencies"]), "served": results["pong"]["served"]}


def _latency_summary(raw: bytes) -> dict[str, Any]:
    us = sorted(x * 1e6 for x in _doubles(raw))
    if not us:
        raise RuntimeError("the round-trip client completed no trip after its warm-up")
    return {
        "trips": len(us),
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "max_us": us[-1],
        "mean_us": statistics.fmean(us),
    }


def group_send(
    backend: str, config: dict[str, Any], d: Durations, members: int, tag: str, processes: int = 2,
    plain_every: int = 10,
) -> dict[str, Any]:
    """``send_group`` of a ~1 KB message to ``members`` channels spread over ``processes`` member
    processes (every ``plain_every``-th a plain channel, none if 0, the others ``!`` reply channels),
    repeated for a while.

    ``send_ms``: the send_group call alone; ``delivered_ms``: from the call until the last member
    process holds the message on every one of its channels. Both are medians over the rounds.
    """
    if members % processes:
        raise ValueError(f"members ({members}) must divide evenly over {processes} processes")
    module = BACKEND_MODULES[backend]
    group = f"bench.{tag}"
    per_process = members // processes
    specs = [
        ChildSpec(
            f"member{k}",
            module,
            "group_member",
            {
                "group": group,
                "tag": tag,
                "index": k,
                "members": per_process,
                "plain_every": plain_every,
                "deadline": d.group + _SLACK / 2,
            },
        )
        for k in range(processes)
    ] + [
        ChildSpec(
            "sender",
            module,
            "group_sender",
            {"group": group, "processes": processes, "size": 1024, "duration": d.group, "round_timeout": 5.0},
        )
    ]
    results = run_children(specs, config, timeout=d.group + _SLACK)
    sender = results["sender"]
    rounds = sender["rounds"]
    send_ms = sorted(x * 1e3 for x in _doubles(sender["send_s"]))
    delivered_ms = sorted(x * 1e3 for x in _doubles(sender["delivered_s"]))
    lost = 0
    duplicates = 0
    for k in range(processes):
        member = results[f"member{k}"]
        duplicates += member["duplicates"]
        lost += sum(per_process - member["received"].get(r, 0) for r in range(rounds + 1))
    return {
        "members": members,
        "rounds": rounds,
        "send_ms": statistics.median(send_ms) if send_ms else None,
        "send_ms_max": send_ms[-1] if send_ms else None,
        "delivered_ms": statistics.median(delivered_ms) if delivered_ms else None,
        "delivered_ms_max": delivered_ms[-1] if delivered_ms else None,
        "incomplete_rounds": sender["incomplete"],
        "lost": lost,
        "duplicates": duplicates,
    }


def idle_cpu(backend: str, config: dict[str, Any], d: Durations, mode: str, tag: str) -> dict[str, Any]:
    """CPU (user+sys, all threads) of a process blocked in receive, measured from outside over
    ``d.idle`` s while no message arrives; then one message wakes it (checking it was listening)."""
    module = BACKEND_MODULES[backend]
    channel = f"bench.{tag}"
    specs = [
        ChildSpec("receiver", module, "idle_receiver", {"channel": channel, "mode": mode, "deadline": d.idle + _SLACK / 2}),
        ChildSpec("waker", module, "idle_waker", {"channel": channel, "after": d.idle}),
    ]
    result = run_children(specs, config, timeout=d.idle + _SLACK)["waker"]
    return {**result, "mode": mode, "cpu_ms_per_s": 1e3 * result["cpu_s"] / result["wall_s"]}
