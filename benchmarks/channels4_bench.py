"""Channels 4 layers side by side: asgi_ipc.channels vs channels_redis (core and pub/sub) vs
InMemoryChannelLayer, on the shapes of the layer benchmark.

Run from the repository root::

    python -m benchmarks channels4            # about 1-2 minutes
    python -m benchmarks channels4 --quick    # smoke run, not a measurement
    python -m benchmarks layer --channels4    # after the ASGI 1 table, in the same JSON

Every layer runs the same roles (``benchmarks.redis_cases``: nothing but the Channels 4 API -
``await send/receive/new_channel/group_add/group_send``) in the same spawned processes
(``benchmarks.cases``, ``benchmarks.procs``); only the ``layer_class`` of the config differs.
``InMemoryChannelLayer`` cannot cross processes: it runs the single-process row only, as the
floor of what a Channels 4 layer costs in Python. The pub/sub layer drops messages published
before the receiver subscribes (on its first ``receive``), so it skips the send-then-receive
shapes (single process, round trip), which would hang on their first message. A real ``redis-server`` is started on a free
loopback port and always stopped; the segment is always removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import budgets, cases, report, stats  # noqa: E402
from benchmarks.cases import Durations  # noqa: E402
from benchmarks.record import RESULTS_DIR, Record  # noqa: E402
from benchmarks.redis_server import RedisServer  # noqa: E402

__all__ = ["BACKENDS", "run_all", "build_table", "main"]

# Column order of the table: (key, heading).
BACKENDS = (
    ("ipc", "asgi_ipc.channels"),
    ("redis", "channels_redis core"),
    ("pubsub", "channels_redis pubsub"),
    ("memory", "InMemory"),
)
CROSS_PROCESS = ("ipc", "redis", "pubsub")
# The pub/sub layer drops a message sent before its receiver subscribed (its first receive), so
# shapes that send before the other side's receive has started lose their first message and hang.
ORDERED = ("ipc", "redis")
CAPACITY = 20_000
IPC_SIZES = {"message_memory": 128 * 2**20, "channels": 4096, "groups": 4096,
             "group_members": 65536, "max_message_size": 2**20}

Case = Callable[[str, dict[str, Any]], dict[str, Any]]
ROLES = "redis"  # cases.BACKEND_MODULES key of the Channels 4 API roles


def _plan(d: Durations) -> list[tuple[str, tuple[str, ...], Case]]:
    everyone = tuple(key for key, _ in BACKENDS)
    return [
        ("pairs", ORDERED + ("memory",), lambda b, c: cases.pairs(ROLES, c, d.pairs, (0,), f"c4p{b}")),
        ("cross_1to1", CROSS_PROCESS,
         lambda b, c: cases.cross_process(ROLES, c, d.cross, 1, 1, "http", 1024, f"c4x11{b}")),
        ("cross_2to2", CROSS_PROCESS,
         lambda b, c: cases.cross_process(ROLES, c, d.cross, 2, 2, "http", 1024, f"c4x22{b}")),
        ("rtt", ORDERED, lambda b, c: cases.round_trip(ROLES, c, d, f"c4rtt{b}")),
        ("group_100", CROSS_PROCESS,
         lambda b, c: cases.group_send(ROLES, c, d, 100, f"c4g100{b}", plain_every=_plain(b))),
        ("group_1000", CROSS_PROCESS,
         lambda b, c: cases.group_send(ROLES, c, d, 1000, f"c4g1k{b}", plain_every=_plain(b))),
        ("idle_async", CROSS_PROCESS, lambda b, c: cases.idle_cpu(ROLES, c, d, "async", f"c4idle{b}")),
    ]


def _plain(backend: str) -> int:
    """Every how many group members is a plain channel: the pub/sub layer refuses group_add of
    channels that its own new_channel() did not make, so there all are specific channels."""
    return 0 if backend == "pubsub" else 10


def run_all(d: Durations, log: Callable[[str], None],
            backends: tuple[str, ...] = tuple(k for k, _ in BACKENDS)) -> dict[str, Any]:
    """Run every case for ``backends``; ``{case id: {backend: metrics or {"error": ...}}}``."""
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        configs: dict[str, dict[str, Any]] = {}
        flushers: dict[str, Callable[[], None]] = {}
        if "redis" in backends or "pubsub" in backends:
            server = stack.enter_context(RedisServer())
            log(f"redis-server {server.version} on 127.0.0.1:{server.port}")
            hosts = [("127.0.0.1", server.port)]
            configs["redis"] = {"hosts": hosts, "prefix": f"c4b{uuid.uuid4().hex[:8]}:",
                                "capacity": CAPACITY}
            configs["pubsub"] = {"layer_class": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                 "hosts": hosts, "prefix": f"c4s{uuid.uuid4().hex[:8]}:"}
        if "ipc" in backends:
            from asgi_ipc.channels import IPCChannelLayer

            configs["ipc"] = {"layer_class": "asgi_ipc.channels.IPCChannelLayer",
                              "prefix": f"c4bench{os.getpid()}_{uuid.uuid4().hex[:8]}",
                              "capacity": CAPACITY, **IPC_SIZES}
            # Held for the whole run, so the segment outlives each case's processes.
            held = IPCChannelLayer(**{k: v for k, v in configs["ipc"].items() if k != "layer_class"})
            stack.callback(held.close_now)
            flushers["ipc"] = lambda: _run(held.flush())
            log(f"asgi_ipc segment {configs['ipc']['prefix']!r}")
        configs["memory"] = {"layer_class": "channels.layers.InMemoryChannelLayer",
                             "capacity": CAPACITY}
        plan = [(cid, [b for b in bs if b in backends], fn) for cid, bs, fn in _plan(d)]
        for number, (case_id, case_backends, fn) in enumerate(plan, 1):
            for backend in case_backends:
                started = time.monotonic()
                try:
                    metrics = fn(backend, configs[backend])
                except Exception as exc:  # a failed case is reported and the run goes on
                    metrics = {"error": f"{type(exc).__name__}: {exc}"}
                results.setdefault(case_id, {})[backend] = metrics
                text = metrics.get("error") or _summary(metrics)
                log(f"[{number}/{len(plan)}] {case_id:<10} {backend:<6} "
                    f"{time.monotonic() - started:5.1f}s  {text}")
                if backend in flushers:
                    flushers[backend]()
    return results


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


def _summary(metrics: dict[str, Any]) -> str:
    if "depth_0" in metrics:
        return f"{metrics['depth_0']['rate']:,.0f} pairs/s"
    for key, unit in (("rate", " msgs/s"), ("p50_us", " us p50"), ("delivered_ms", " ms delivered"),
                      ("cpu_ms_per_s", " CPU ms/s")):
        if isinstance(metrics.get(key), (int, float)):
            extra = (f" (dup {metrics['duplicates']}, lost {metrics['lost']})"
                     if "duplicates" in metrics else "")
            return f"{metrics[key]:,.1f}{unit}{extra}"
    return ""


def _value(results: dict[str, Any], case: str, backend: str, key: str) -> Any:
    metrics = results.get(case, {}).get(backend)
    if not metrics or "error" in metrics:
        return None
    if key == "pairs":
        return metrics["depth_0"]["rate"]
    if key == "dup_lost":
        return f"{metrics['duplicates']} / {metrics['lost']}"
    return metrics.get(key)


def _verdict(ok: Callable[[], bool], *needed: Any) -> str:
    if any(x is None for x in needed):
        return "n.a."
    return "PASS" if ok() else "FAIL"


def build_table(results: dict[str, Any], checked: list[dict[str, Any]] | None = None) -> str:
    """The results as a Markdown table: one column per layer, asgi_ipc/redis, budget, verdict.
    The budget checks (``benchmarks.budgets.check`` entries) are appended to ``checked`` if given."""
    checked = [] if checked is None else checked
    rows: list[tuple[str, str, str, str, str, Callable[[Any, Any], str]]] = []
    # (label, case, metric key, unit, fmt, budget judge(ours, redis) -> (budget, verdict))

    def judged(budget_id: str, measured: Any, note: str) -> tuple[str, str]:
        checked.append(budgets.check(budget_id, measured, note=note))
        return budgets.get(budget_id).text, checked[-1]["verdict"]

    def against_redis(budget_id: str, note: str):
        """The ``channels4.*`` budget of benchmarks/budgets.py on ours / redis."""
        return lambda ours, redis: judged(budget_id, stats.ratio(ours, redis), note)

    def no_dup(case: str):
        def judge(ours, redis):
            metrics = results.get(case, {}).get("ipc") or {}
            dup, lost = metrics.get("duplicates"), metrics.get("lost")
            return "0 / 0", _verdict(lambda: dup == 0 and lost == 0, dup, lost)
        return judge

    none = lambda ours, redis: ("", "n.a.")  # noqa: E731
    idle = lambda ours, redis: judged("layer.idle_cpu", ours, "asgi_ipc.channels, await receive")  # noqa: E731
    rows = [
        ("single process send+receive", "pairs", "pairs", "pairs/s", "rate", none),
        ("cross-process 1 -> 1", "cross_1to1", "rate", "msgs/s", "rate", against_redis("channels4.throughput", "1 -> 1")),
        ("  1 -> 1 duplicates / lost", "cross_1to1", "dup_lost", "msgs", "text", no_dup("cross_1to1")),
        ("cross-process 2 -> 2", "cross_2to2", "rate", "msgs/s", "rate", against_redis("channels4.throughput", "2 -> 2")),
        ("  2 -> 2 duplicates / lost", "cross_2to2", "dup_lost", "msgs", "text", no_dup("cross_2to2")),
        ("round trip p50", "rtt", "p50_us", "us", "us", against_redis("channels4.rtt", "round trip p50")),
        ("round trip p99", "rtt", "p99_us", "us", "us", none),
        ("group_send 100: send", "group_100", "send_ms", "ms", "ms", none),
        ("group_send 100: all delivered", "group_100", "delivered_ms", "ms", "ms", none),
        ("  100: dup / lost", "group_100", "dup_lost", "msgs", "text", no_dup("group_100")),
        ("group_send 1,000: send", "group_1000", "send_ms", "ms", "ms", against_redis("channels4.group", "group_send 1,000: send")),
        ("group_send 1,000: all delivered", "group_1000", "delivered_ms", "ms", "ms", none),
        ("  1,000: dup / lost", "group_1000", "dup_lost", "msgs", "text", no_dup("group_1000")),
        ("idle blocked receiver", "idle_async", "cpu_ms_per_s", "CPU ms/s", "cpu", idle),
    ]
    header = ["case", "unit"] + [title for _, title in BACKENDS] + ["ipc/redis", "budget",
                                                                      "verdict"]
    body = []
    for label, case, key, unit, fmt, judge in rows:
        values = [_value(results, case, backend, key) for backend, _ in BACKENDS]
        ours, redis = values[0], values[1]
        ratio = ""
        if fmt != "text" and isinstance(ours, (int, float)) and isinstance(redis, (int, float)) \
                and redis:
            ratio = report.format_value(ours / redis, "ratio") + "x"
        budget, verdict = judge(ours, redis)
        body.append([label, unit] + [report.format_value(v, fmt) for v in values]
                    + [ratio, budget, verdict])
    return report.markdown_table(header, body, numeric=set(range(2, 3 + len(BACKENDS))))


def main(argv: list[str] | None = None) -> int:
    """Run the Channels 4 comparison; exit 0 if every case ran, 1 if one failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks channels4",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run, not a measurement")
    parser.add_argument("--backends", default=",".join(k for k, _ in BACKENDS),
                        help="comma-separated subset of: ipc, redis, pubsub, memory")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    args = parser.parse_args(argv)
    chosen = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = sorted(set(chosen) - {k for k, _ in BACKENDS})
    if unknown or not chosen:
        parser.error(f"--backends: unknown or empty {unknown or chosen}")
    durations = Durations.quick() if args.quick else Durations()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    record = Record("channels4", argv if argv is not None else sys.argv[1:], args.quick)
    log(record.headline())
    results = run_all(durations, log, chosen)
    checked: list[dict[str, Any]] = []
    table = build_table(results, checked)
    print(table)
    path = record.write({"cases": results, "table": table},
                        {"backends": list(chosen), "durations": durations.__dict__}, checked, args.results_dir)
    log(f"wrote {path}")
    failed = [f"{c}/{b}" for c, per in results.items() for b, m in per.items() if "error" in m]
    if failed:
        log(f"failed cases: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
