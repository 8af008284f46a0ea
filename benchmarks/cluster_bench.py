"""One site on several simulated machines with one ``redis-server`` (issue 13, part 4).

Usage::

    python benchmarks/cluster_bench.py [--machines 2] [--seconds 5] [--rounds 3] [--members 1000]
    python benchmarks/cluster_bench.py --quick          # a smoke run, not a measurement

Starts a real ``redis-server`` (``benchmarks/redis_server.py``) and, for every round, each kind of
site on ``--machines`` simulated machines (``benchmarks/cluster_machines.py``: own port, layer
prefix and control directory each), in an order that rotates every round (so no kind always goes
first); Redis is flushed before each start (``--share-machines``: a kind measured in both parts
runs both on one start of its machines, see :func:`plan`).

HTTP (``--http-kinds``, default ``local,cluster,redis``): the hello view of the test site under
``procman run`` without ``--cluster`` (``local``), with it (``cluster``: budget >= 0.9x of local,
since requests stay in shared memory), and the same site entirely on
``asgi_ipc.redis.RedisChannelLayer`` (``redis``: every request and reply through Redis). Every
machine is loaded at once, as a load balancer would: one load process per machine with
``--clients`` keep-alive connections (``site_bench.load_process``). Requests/s is the sum over the
machines. For ``cluster`` it also records the Redis commands issued during the load (none on the
request path: only the idle link's).

Broadcast (``--broadcast-kinds``, default ``cluster,c4-redis,redis``): ``--members`` WebSockets
spread round-robin over the machines, in ``--ws-processes`` asyncio load processes, all in one
group; one more socket on machine 1 sends a broadcast every ``--interval`` s for ``--seconds``,
then, ``--end-pause`` s later, an end marker; members read until it arrived or ``--drain`` s after
it was sent (a smoke run may shorten the pause: with one worker per machine every site hands a
sender's frames to a member in order, so the marker does not overtake a broadcast; a broadcast that
arrives after the marker counts as lost either way).
Latency p50/p99 (the first 5 broadcasts left out) and deliveries lost (not arrived by then), for ``cluster`` (Channels 1
API, ``procman run --cluster``), ``c4-redis`` (Channels 4 + ``channels_redis`` under ``procman
run``'s ASGI 3 mode, one Daphne per machine) and ``redis`` (Channels 1 API on the Redis layer).

Latencies are also split between the members on the broadcaster's machine and on the others (what
crossing machines adds). Prints Markdown tables (medians over the rounds, ratios of the medians) and writes
``benchmarks/results/cluster-<UTC time>.json`` (or ``--json PATH``). Everything shares this
machine's cores with the load: compare ratios, not absolute numbers. Every process is stopped;
nothing is left in /dev/shm (checked, and a warning printed otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.cluster_machines import Machine, start_machines, stop_machines  # noqa: E402
from benchmarks.cluster_ws import connect_timeout, run_members, send_broadcasts, summarize  # noqa: E402
from benchmarks import budgets  # noqa: E402
from benchmarks.record import Record  # noqa: E402
from benchmarks.stats import median, ratio  # noqa: E402
from benchmarks.redis_server import RedisServer  # noqa: E402
from benchmarks.site_bench import load_process  # noqa: E402

HTTP_KINDS = ("local", "cluster", "redis")
BROADCAST_KINDS = ("cluster", "c4-redis", "redis")
#: Commands the idle cluster link issues by itself (health check, shared-name refresh, shared-list pops).
IDLE_COMMANDS = {"ping", "zadd", "zremrangebyscore", "zcard", "smembers", "client|id", "blpop", "evalsha",
                 "lpop", "script|load", "info", "hello", "client|setinfo", "flushall"}
SKIP_FIRST = 5  # broadcasts left out of the latency percentiles (warm-up), not out of the losses
END_PAUSE = 2.0  # seconds between the last broadcast and the end marker (default of --end-pause)


def commandstats(port: int) -> dict[str, int]:
    """Calls per Redis command so far (``INFO commandstats``)."""
    import redis

    client = redis.Redis(port=port)
    try:
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}
    finally:
        client.close()


def flush(port: int) -> None:
    """Empty the benchmark's Redis, so no run sees a previous run's groups or queues."""
    import redis

    client = redis.Redis(port=port)
    try:
        client.flushall()
    finally:
        client.close()


def _reap(processes: list[multiprocessing.Process]) -> None:
    """Join load processes (10 s each at most), killing one that is still running after that."""
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)


def http_run(machines: list[Machine], clients: int, seconds: float) -> dict[str, Any]:
    """Load every machine at once (one load process each); requests/s summed over the machines."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    loaders = [multiprocessing.Process(target=load_process, args=(m.port, clients, seconds, queue))
               for m in machines]
    for loader in loaders:
        loader.start()
    try:
        results = [queue.get(timeout=seconds + 60) for _ in loaders]
    finally:
        _reap(loaders)
    ok, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"requests_per_s": ok / seconds, "ok": ok, "failed": failed,
            "per_load_process": [r[0] / seconds for r in results]}  # one per machine, in order of finishing


def broadcast_run(machines: list[Machine], args: argparse.Namespace) -> dict[str, Any]:
    """``args.members`` sockets over the machines, broadcasts from machine 1; see the module doc."""
    wrapped = machines[0].kind == "c4-redis"
    say = "" if wrapped else "say:"
    urls = [m.ws_url for m in machines]
    ready_q: multiprocessing.Queue = multiprocessing.Queue()
    result_q: multiprocessing.Queue = multiprocessing.Queue()
    processes = max(1, min(args.ws_processes, args.members))
    shares = [args.members // processes + (i < args.members % processes) for i in range(processes)]
    read_for = args.seconds + args.end_pause + args.drain
    clients = [multiprocessing.Process(target=run_members, args=(urls, share, wrapped, ready_q, result_q, read_for))
               for share in shares]
    for client in clients:
        client.start()
    try:
        ready = [ready_q.get(timeout=connect_timeout(share) + 30) for share in shares]
        if any(kind != "ready" for kind, _, _ in ready) or sum(n for _, n, _ in ready) == 0:
            raise SystemExit(f"the WebSocket members did not connect: {ready}")
        sent = asyncio.run(send_broadcasts(urls[0], say, args.seconds, args.interval, end_pause=args.end_pause))
        reports = [result_q.get(timeout=read_for + 30) for _ in clients]
    finally:
        _reap(clients)
    summary = summarize(reports, sent["broadcasts"], SKIP_FIRST)
    summary["sender_late"] = sent["sender_late"]
    return summary


def _order(kinds: tuple[str, ...], round_: int) -> list[str]:
    """The kinds in the order of round ``round_``: rotated every round, so none always goes first."""
    shift = round_ % len(kinds)
    return list(kinds[shift:] + kinds[:shift])


def plan(http_kinds: tuple[str, ...], broadcast_kinds: tuple[str, ...], round_: int,
         share: bool) -> list[tuple[str, tuple[str, ...]]]:
    """What round ``round_`` runs: ``(machine kind, cases)`` per start of machines, in order.

    By default every case gets fresh machines: the HTTP kinds, then the broadcast kinds, each
    rotated by :func:`_order`. With ``share``, a kind in both lists is started once and runs its
    HTTP load and then its broadcast on the same machines (a smoke run's saving: fewer starts, but
    the broadcast then meets machines that just served the load)."""
    if not share:
        return ([(kind, ("http",)) for kind in (_order(http_kinds, round_) if http_kinds else [])]
                + [(kind, ("broadcast",)) for kind in (_order(broadcast_kinds, round_) if broadcast_kinds else [])])
    kinds = tuple(dict.fromkeys(http_kinds + broadcast_kinds))
    return [(kind, tuple(case for case, listed in (("http", http_kinds), ("broadcast", broadcast_kinds))
                         if kind in listed)) for kind in (_order(kinds, round_) if kinds else [])]


def _median(values: list[float | None]) -> float | None:
    return median([v for v in values if v is not None])


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def http_table(runs: dict[str, list[dict]]) -> tuple[str, dict[str, Any]]:
    medians = {kind: _median([r["requests_per_s"] for r in rows]) for kind, rows in runs.items()}
    cluster = medians.get("cluster")
    lines = ["| site (every machine loaded at once) | requests/s, median | each round | failed | cluster ÷ this |",
             "| --- | --: | --- | --: | --: |"]
    names = {"local": "`procman run` without `--cluster`", "cluster": "`procman run --cluster`",
             "redis": "all on `asgi_ipc.redis.RedisChannelLayer`"}
    for kind, rows in runs.items():
        times = ratio(cluster, medians[kind]) if kind != "cluster" else None
        lines.append(f"| {names[kind]} | {_fmt(medians[kind])} | {', '.join(_fmt(r['requests_per_s']) for r in rows)} "
                     f"| {sum(r['failed'] for r in rows)} | {'-' if times is None else f'{times:.2f}x'} |")
    summary: dict[str, Any] = {"median_requests_per_s": medians}
    if cluster and medians.get("local"):
        summary["cluster_vs_local"] = cluster / medians["local"]
        summary["cluster_vs_local_budget_met"] = budgets.get("cluster.rps_ratio").passes(cluster / medians["local"])
    if cluster and medians.get("redis"):
        summary["cluster_vs_redis"] = cluster / medians["redis"]
    return "\n".join(lines), summary


def broadcast_table(runs: dict[str, list[dict]]) -> tuple[str, dict[str, Any]]:
    names = {"cluster": "Channels 1 API, `procman run --cluster`",
             "c4-redis": "Channels 4 + `channels_redis` (Daphne under `procman run`)",
             "redis": "Channels 1 API, all on `asgi_ipc.redis.RedisChannelLayer`"}
    lines = ["| site | members | broadcasts/round | p50 ms | p99 ms | p99 each round | p50 / p99 ms, sender's machine "
             "| p50 / p99 ms, other machines | lost | duplicates |",
             "| --- | --: | --: | --: | --: | --- | --: | --: | --: | --: |"]
    summary: dict[str, Any] = {}
    for kind, rows in runs.items():
        p50, p99 = _median([r["p50_ms"] for r in rows]), _median([r["p99_ms"] for r in rows])
        lost = sum(r["lost"] for r in rows)
        summary[kind] = {"p50_ms": p50, "p99_ms": p99, "lost": lost, "duplicates": sum(r["duplicates"] for r in rows),
                         "deliveries_expected": sum(r["deliveries_expected"] for r in rows)}
        split = {key: _median([r.get(key) for r in rows]) for key in (
            "sender_machine_p50_ms", "sender_machine_p99_ms", "other_machines_p50_ms", "other_machines_p99_ms")}
        summary[kind].update(split)
        lines.append(f"| {names[kind]} | {min(r['members'] for r in rows)} | {rows[0]['broadcasts']} | {_fmt(p50, 1)} "
                     f"| {_fmt(p99, 1)} | {', '.join(_fmt(r['p99_ms'], 1) for r in rows)} "
                     f"| {_fmt(split['sender_machine_p50_ms'], 1)} / {_fmt(split['sender_machine_p99_ms'], 1)} "
                     f"| {_fmt(split['other_machines_p50_ms'], 1)} / {_fmt(split['other_machines_p99_ms'], 1)} "
                     f"| {lost} of {summary[kind]['deliveries_expected']} | {summary[kind]['duplicates']} |")
    return "\n".join(lines), summary


def _kinds(text: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    kinds = tuple(k for k in text.split(",") if k)
    unknown = [k for k in kinds if k not in allowed]
    if unknown:
        raise SystemExit(f"{flag}: unknown {unknown}; choose from {','.join(allowed)} (or an empty value for none)")
    return kinds



def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring); returns 0, or 1 when a run lost requests or
    left something in /dev/shm."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=2, help="simulated machines per site (default 2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load / broadcasting time per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="keep-alive HTTP connections per machine")
    parser.add_argument("--workers", type=int, default=1, help="Channels 1 workers per machine")
    parser.add_argument("--members", type=int, default=1000, help="WebSockets in the broadcast group")
    parser.add_argument("--ws-processes", type=int, default=2, help="load processes holding the members")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between broadcasts")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds members keep reading after the end marker was sent; later deliveries count as lost")
    parser.add_argument("--end-pause", type=float, default=END_PAUSE,
                        help=f"seconds between the last broadcast and the end marker (default {END_PAUSE:g})")
    parser.add_argument("--http-kinds", default=",".join(HTTP_KINDS), help=f"of {','.join(HTTP_KINDS)}")
    parser.add_argument("--broadcast-kinds", default=",".join(BROADCAST_KINDS), help=f"of {','.join(BROADCAST_KINDS)}")
    parser.add_argument("--share-machines", action="store_true",
                        help="a kind in both --http-kinds and --broadcast-kinds runs both on one start of its "
                             "machines (fewer starts: a smoke run's shortcut, not a measurement)")
    parser.add_argument("--quick", action="store_true", help="1 round, 1 s, 50 members: a smoke run")
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.members = 1, 1.0, min(args.members, 50)
    if args.machines < 1 or args.rounds < 1 or args.seconds <= 0 or args.members < 1 or args.interval <= 0 \
            or args.drain < 0 or args.end_pause < 0:
        parser.error("--machines, --rounds and --members must be >= 1; --seconds and --interval > 0; "
                     "--drain and --end-pause >= 0")
    http_kinds = _kinds(args.http_kinds, HTTP_KINDS, "--http-kinds")
    broadcast_kinds = _kinds(args.broadcast_kinds, BROADCAST_KINDS, "--broadcast-kinds")
    if "c4-redis" in broadcast_kinds:
        import importlib.util

        missing = [m for m in ("daphne", "channels", "channels_redis") if importlib.util.find_spec(m) is None]
        if missing:
            raise SystemExit(f"the c4-redis site needs {', '.join(missing)}: pip install daphne channels "
                             "channels-redis (or leave c4-redis out of --broadcast-kinds)")

    record = Record("cluster", argv if argv is not None else sys.argv[1:], args.quick)
    print(record.headline(), flush=True)
    load_start = os.getloadavg()
    http: dict[str, list[dict]] = {k: [] for k in http_kinds}
    broadcast: dict[str, list[dict]] = {k: [] for k in broadcast_kinds}
    shm_left: list[str] = []
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        url = f"redis://127.0.0.1:{server.port}/0"
        for round_ in range(args.rounds):
            for kind, cases in plan(http_kinds, broadcast_kinds, round_, args.share_machines):
                flush(server.port)
                machines = start_machines(kind, args.machines, url, Path(tmp), args.workers)
                try:
                    for case in cases:
                        if case == "http":
                            before = commandstats(server.port)
                            row = http_run(machines, args.clients, args.seconds)
                            after = commandstats(server.port)
                            row["redis_commands"] = {k: after[k] - before.get(k, 0) for k in after
                                                     if after[k] != before.get(k, 0)}
                            busy = {k: v for k, v in row["redis_commands"].items() if k not in IDLE_COMMANDS}
                            note = f"Redis commands beyond the idle link's: {busy or 'none'}" if kind == "cluster" \
                                else f"Redis commands: {sum(row['redis_commands'].values())}"
                            print(f"round {round_ + 1} http {kind:9} {row['requests_per_s']:8.0f} req/s "
                                  f"({row['failed']} failed)  {note}", flush=True)
                        else:
                            row = broadcast_run(machines, args)
                            print(f"round {round_ + 1} broadcast {kind:9} members {row['members']} "
                                  f"p50 {_fmt(row['p50_ms'], 1)} ms p99 {_fmt(row['p99_ms'], 1)} ms "
                                  f"lost {row['lost']} of {row['deliveries_expected']}", flush=True)
                        row["load_average"] = os.getloadavg()[0]
                        (http if case == "http" else broadcast)[kind].append(row)
                finally:
                    shm_left += stop_machines(machines)
        redis_version = server.version
    load_end = os.getloadavg()

    out: dict[str, Any] = {"shm_left": shm_left}
    print(f"\n{args.machines} simulated machines, {args.rounds} round(s) of {args.seconds:g} s; "
          f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end ({os.cpu_count()} CPUs)")
    if http_kinds:
        table, out["http_summary"] = http_table(http)
        print(f"\nHello view, {args.clients} keep-alive clients per machine, {args.workers} worker(s) per machine:\n")
        print(table)
        out["http"] = http
    if broadcast_kinds:
        table, out["broadcast_summary"] = broadcast_table(broadcast)
        print(f"\nBroadcast every {args.interval * 1000:g} ms to {args.members} WebSockets over "
              f"{args.machines} machines ({args.ws_processes} client processes); latencies are the median of the "
              "rounds' percentiles:\n")
        print(table)
        out["broadcast"] = broadcast
    summary = out.get("http_summary", {})
    checks = [budgets.check("cluster.rps_ratio", summary.get("cluster_vs_local"),
                            note="median requests/s of the machines with --cluster over without")]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["redis_server"] = redis_version
    path = record.write(out, settings, checks, path=args.json)
    print(f"\nresults: {path}")
    failed = sum(r["failed"] for rows in http.values() for r in rows)
    return 1 if failed or shm_left else 0


if __name__ == "__main__":
    sys.exit(main())
