"""Channel-layer benchmark: asgi_ipc vs channels_redis vs the msgpack floor, in one invocation.

Run from the repository root::

    python -m benchmarks layer            # full run, about 2-3 minutes
    python -m benchmarks layer --quick    # smoke run, about 30 s
    python -m benchmarks layer --backends redis,floor   # without our layer
    python -m benchmarks layer --quick --backends ours,asgi_redis,redis   # + asgi_ipc.redis
    python -m benchmarks layer --channels4  # then the Channels 4 layers (channels4_bench)

It starts a throwaway ``redis-server`` on a free loopback port (no persistence), creates one
``asgi_ipc`` segment under a unique prefix, runs every case of ``benchmarks/README.md`` for each
backend in spawned processes, prints a Markdown table (ours, channels_redis, msgpack floor,
ours/redis, the ``layer.*`` budget of ``benchmarks/budgets.py`` and PASS/FAIL), and writes
everything to ``benchmarks/results/layer-<UTC timestamp>.json`` (``benchmarks/record.py``). The server and
the segment are always removed, also on errors and Ctrl-C. Exit status: 0 if every case ran (budgets
may still FAIL), 1 if a case failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cases, report  # noqa: E402
from benchmarks.cases import Durations  # noqa: E402
from benchmarks.record import RESULTS_DIR, Record  # noqa: E402
from benchmarks.redis_server import RedisServer, redis_server_version  # noqa: E402

__all__ = ["main"]

LAYER_BACKENDS = ("ours", "redis", "asgi_redis")
ALL_BACKENDS = ("ours", "redis", "floor")
# Run only when asked for: ``asgi_redis`` is our ASGI 1 Redis layer (asgi_ipc.redis), reported in a
# second table beside ours and channels_redis.
OPTIONAL_BACKENDS = ("asgi_redis",)

# Both layers get the same limits: room for 10,000 queued 1 KB messages plus traffic; the size
# cases' channels are capped so 512 KB messages cannot fill memory (producers back off when full).
CAPACITY = 20_000
CHANNEL_CAPACITY = {"bench.size*": 100}
OURS_SIZES = {
    "message_memory": 128 * 2**20,
    "channels": 4096,
    "groups": 4096,
    "group_members": 65536,
    "max_message_size": 2**20,
}

Case = Callable[[str, dict[str, Any]], dict[str, Any]]


def _plan(d: Durations) -> list[tuple[str, tuple[str, ...], Case]]:
    """(case id, backends it runs for, function(backend, config)) in the order they run."""
    layers = LAYER_BACKENDS
    floor = ("floor",)
    plan: list[tuple[str, tuple[str, ...], Case]] = [
        ("floor_http", floor, lambda b, c: cases.floor(d, "http", 1024)),
        ("pairs", layers, lambda b, c: cases.pairs(b, c, d.pairs, (0,), "pairs")),
        ("cross_1to1", layers, lambda b, c: cases.cross_process(b, c, d.cross, 1, 1, "http", 1024, "x11")),
        ("cross_2to2", layers, lambda b, c: cases.cross_process(b, c, d.cross, 2, 2, "http", 1024, "x22")),
        ("floor_rtt", floor, lambda b, c: cases.pipe_round_trip(d)),
        ("rtt", layers, lambda b, c: cases.round_trip(b, c, d, "rtt")),
        ("group_100", layers, lambda b, c: cases.group_send(b, c, d, 100, "g100")),
        ("group_1000", layers, lambda b, c: cases.group_send(b, c, d, 1000, "g1000")),
    ]
    for name, size in (("100", 100), ("10k", 10 * 1024), ("512k", 512 * 1024)):
        plan.append((f"floor_{name}", floor, lambda b, c, size=size: cases.floor(d, "payload", size)))
        plan.append(
            (f"size_{name}", layers,
             lambda b, c, size=size, name=name: cases.cross_process(b, c, d.size, 1, 1, "payload", size, f"size{name}"))
        )
    plan.append(("queued", layers, lambda b, c: cases.pairs(b, c, 3 * d.queued, (10, 1000, 10000), "q")))
    plan.append(("idle_sync", ("ours", "asgi_redis"), lambda b, c: cases.idle_cpu(b, c, d, "sync", "idles")))
    plan.append(("idle_async", layers, lambda b, c: cases.idle_cpu(b, c, d, "async", "idlea")))
    return plan


def _summary(case_id: str, metrics: dict[str, Any]) -> str:
    if "depth_0" in metrics:
        metrics = metrics["depth_0"]
    elif "depth_10" in metrics:
        return " / ".join(f"{metrics[f'depth_{n}']['rate']:,.0f}" for n in (10, 1000, 10000)) + " pairs/s"
    for key, unit in (("rate", "/s"), ("p50_us", " us p50"), ("send_ms", " ms send"), ("cpu_ms_per_s", " CPU ms/s")):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            extra = ""
            if "duplicates" in metrics:
                extra = f" (dup {metrics['duplicates']}, lost {metrics['lost']})"
            return f"{value:,.1f}{unit}{extra}"
    return ""


def _side_by_side(results: dict[str, Any], backends: tuple[str, ...]) -> str:
    """Each case's headline number per backend, as a Markdown table (for ``asgi_redis``, which the
    budget table of ``report`` does not cover)."""
    names = {"ours": "asgi_ipc (shm)", "asgi_redis": "asgi_ipc.redis", "redis": "channels_redis"}
    lines = ["| case | " + " | ".join(names.get(b, b) for b in backends) + " |",
             "|---" * (len(backends) + 1) + "|"]
    for case_id, per in results.items():
        if not any(b in per for b in backends if b != "ours"):
            continue
        cells = []
        for backend in backends:
            metrics = per.get(backend)
            if metrics is None:
                cells.append("")
            elif "error" in metrics:
                cells.append("error: " + metrics["error"][:60])
            else:
                cells.append(_summary(case_id, metrics))
        lines.append(f"| {case_id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _flush(backend: str, config: dict[str, Any], ours_layer: Any) -> None:
    """Empty the layer between cases, so one case's leftovers never weigh on the next."""
    if backend == "ours":
        ours_layer.flush()
    elif backend == "redis":
        from channels_redis.core import RedisChannelLayer

        asyncio.run(RedisChannelLayer(**config).flush())
    elif backend == "asgi_redis":
        from asgi_ipc.redis import RedisChannelLayer as AsgiRedisLayer

        with AsgiRedisLayer(**{k: v for k, v in config.items() if k != "layer"}) as layer:
            layer.flush()


def run_all(
    backends: tuple[str, ...], d: Durations, log: Callable[[str], None], repeat: int = 1
) -> dict[str, Any]:
    """Run every case ``repeat`` times for ``backends``; return ``{case id: {backend: metrics}}``
    (the best attempt, see :func:`best_attempt`; ``{"error": ...}`` if every attempt failed)."""
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        configs: dict[str, dict[str, Any]] = {"floor": {}}
        ours_layer = None
        if "redis" in backends or "asgi_redis" in backends:
            server = stack.enter_context(RedisServer())
            log(f"redis-server {server.version} on 127.0.0.1:{server.port} (pid {server.pid})")
            configs["redis"] = {
                "hosts": [("127.0.0.1", server.port)],
                "prefix": f"bench{uuid.uuid4().hex[:8]}:",
                "capacity": CAPACITY,
                "channel_capacity": CHANNEL_CAPACITY,
            }
            configs["asgi_redis"] = {
                "layer": "redis",
                "hosts": [("127.0.0.1", server.port)],
                "prefix": f"bench{uuid.uuid4().hex[:8]}",
                "capacity": CAPACITY,
                "channel_capacity": CHANNEL_CAPACITY,
                "max_message_size": OURS_SIZES["max_message_size"],
            }
        if "ours" in backends:
            from asgi_ipc import IPCChannelLayer

            prefix = f"bench{os.getpid()}_{uuid.uuid4().hex[:8]}"
            common = {"prefix": prefix, "capacity": CAPACITY, "channel_capacity": CHANNEL_CAPACITY, **OURS_SIZES}
            ours_layer = IPCChannelLayer(create=True, **common)
            stack.callback(ours_layer.close)  # the creator's close() removes the segment
            configs["ours"] = {"create": False, **common}
            log(f"asgi_ipc segment {prefix!r}")
        plan = [(cid, [b for b in bs if b in backends], fn) for cid, bs, fn in _plan(d)]
        plan = [(cid, bs, fn) for cid, bs, fn in plan if bs]
        for number, (case_id, case_backends, fn) in enumerate(plan, 1):
            attempts: dict[str, list[dict[str, Any]]] = {b: [] for b in case_backends}
            for attempt in range(repeat):  # backends interleaved, so load changes hit both alike
                for backend in case_backends:
                    started = time.monotonic()
                    try:
                        metrics = fn(backend, configs[backend])
                    except Exception as exc:  # a failed case is reported and the run goes on
                        metrics = {"error": f"{type(exc).__name__}: {exc}"}
                    attempts[backend].append(metrics)
                    took = time.monotonic() - started
                    text = metrics["error"] if "error" in metrics else _summary(case_id, metrics)
                    tries = f" #{attempt + 1}" if repeat > 1 else ""
                    log(f"[{number:2}/{len(plan)}] {case_id:<11} {backend:<5}{tries} {took:5.1f}s  {text}")
                    if backend != "floor":
                        try:
                            _flush(backend, configs[backend], ours_layer)
                        except Exception as exc:
                            log(f"        flush of {backend} after {case_id} failed: {type(exc).__name__}: {exc}")
            for backend, tried in attempts.items():
                results.setdefault(case_id, {})[backend] = best_attempt(case_id, tried)
    return results


def _score(case_id: str, metrics: dict[str, Any]) -> float:
    """How undisturbed an attempt looks: higher is better (faster, or less CPU when idle)."""
    if case_id in ("rtt", "floor_rtt"):
        return -metrics["p50_us"]
    if case_id == "pairs":
        return metrics["depth_0"]["rate"]
    if case_id == "queued":
        return sum(v["rate"] for k, v in metrics.items() if k.startswith("depth_"))
    if case_id.startswith("group_"):
        return -(metrics["send_ms"] if metrics["send_ms"] is not None else float("inf"))
    if case_id.startswith("idle_"):
        return -metrics["cpu_ms_per_s"]
    return metrics["rate"]


_COUNTS = ("sent", "delivered", "duplicates", "lost", "unknown", "incomplete_rounds")


def best_attempt(case_id: str, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """The least disturbed of several attempts of one case (interference only ever slows things
    down), with correctness counts (duplicates, losses, ...) summed over *all* attempts so that
    picking the best never hides a duplicate. All attempts failed: the last error."""
    good = [m for m in attempts if "error" not in m]
    if not good:
        return attempts[-1]
    best = dict(max(good, key=lambda m: _score(case_id, m)))
    for key in _COUNTS:
        if key in best:
            best[key] = sum(m[key] for m in good)
    best["attempts"] = len(attempts)
    best["failed_attempts"] = len(attempts) - len(good)
    if len(attempts) > 1:
        best["every_attempt"] = attempts
    return best


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks layer",
        description="Benchmark asgi_ipc against channels_redis and the msgpack floor.",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (~30 s), not a measurement")
    parser.add_argument(
        "--backends",
        default=",".join(ALL_BACKENDS),
        help="comma-separated subset of: ours, redis, floor, asgi_redis (default: ours,redis,floor)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every case N times and keep the least disturbed attempt (for busy machines)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument("--channels4", action="store_true",
                        help="also compare the Channels 4 layers (benchmarks/channels4_bench.py)")
    args = parser.parse_args(argv)
    chosen = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    known = ALL_BACKENDS + OPTIONAL_BACKENDS
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        parser.error(f"--backends: unknown or empty {unknown or chosen}; choose from {', '.join(known)}")
    args.backends = chosen
    if not 1 <= args.repeat <= 10:
        parser.error(f"--repeat must be between 1 and 10, got {args.repeat}")
    if "ours" in chosen:
        try:
            from asgi_ipc import IPCChannelLayer  # noqa: F401
        except ImportError as exc:
            parser.error(f"our layer is not importable ({exc}); install the project or use --backends redis,floor")
    if "asgi_redis" in chosen:
        try:
            import asgi_ipc.redis  # noqa: F401
        except ImportError as exc:
            parser.error(f"asgi_ipc.redis is not importable ({exc}): pip install -e '.[redis]'")
    if "redis" in chosen or "asgi_redis" in chosen:
        if "redis" in chosen:
            try:
                import channels_redis  # noqa: F401
            except ImportError:
                parser.error("channels_redis is not installed: pip install -e '.[bench]' (or drop 'redis' from --backends)")
        try:
            redis_server_version()
        except RuntimeError as exc:
            parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring for options and exit status."""
    args = _parse(argv)
    durations = Durations.quick() if args.quick else Durations()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    record = Record("layer", argv if argv is not None else sys.argv[1:], args.quick)
    if "redis" in args.backends or "asgi_redis" in args.backends:
        record.machine["redis_server"] = redis_server_version()
    log(record.headline())
    results = run_all(args.backends, durations, log, args.repeat)
    rows = report.build_rows(results)
    table = report.format_table(rows)
    print(table)
    if "asgi_redis" in args.backends:
        print()
        print(_side_by_side(results, ("ours", "asgi_redis", "redis")))
    channels4: dict[str, Any] = {}
    checks = report.budget_entries(rows)
    if args.channels4:
        from benchmarks import channels4_bench

        channels4 = channels4_bench.run_all(durations, log)
        print()
        print(channels4_bench.build_table(channels4, checks))
    settings = {"repeat": args.repeat, "backends": list(args.backends), "durations": durations.__dict__,
                "channels4": args.channels4}
    out = {"cases": results, "table": [row.__dict__ for row in rows], "channels4": channels4}
    path = record.write(out, settings, checks, args.results_dir)
    log(f"wrote {path}")
    failed = [
        f"{c}/{b}" for c, per in results.items() for b, m in per.items() if "error" in m or m.get("failed_attempts")
    ] + [f"channels4 {c}/{b}" for c, per in channels4.items() for b, m in per.items() if "error" in m]
    if failed:
        log(f"failed cases: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
