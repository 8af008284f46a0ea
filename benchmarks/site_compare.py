"""The whole-site comparison (``python -m benchmarks compare``): our site against the servers a
user would pick instead, on the same Django view, in one invocation on this machine.

Usage (from the repository root)::

    pip install -e '.[bench]'                  # every contender
    python -m benchmarks compare               # both parts, ~8-10 minutes on 2 cores
    python -m benchmarks compare --parts http  # only part 1 (the budgets on requests/s and memory)
    python -m benchmarks compare --quick       # short smoke run; not a measurement

A contender whose package is missing is skipped, and the report says which and why.
``redis-server`` must be on the PATH for the channels_redis contenders (Debian:
``apt-get install redis-server``); it is started here on a free loopback port without persistence
and always stopped.

**Part 1 - "hello" over HTTP keep-alive.** The same Django view (``HttpResponse("hello")``, no
middleware, no database, DEBUG off; ``compare_sites/cmpsite``) served by every HTTP contender of
``compare_sites/contenders.py``: ours (``procman run``, 1 interface + 2 workers), ours in ASGI 3
mode (``c4ipc``), gunicorn -w 2 and -w 4 (sync), granian --workers 2 (WSGI), uvicorn --workers 2 and
2 Daphne 4 processes (Django ASGI), and Channels 4 + channels_redis under Daphne. Each attempt
starts the contender fresh, sends 200 requests on one connection, waits 1 s and reads the PSS of
its whole process tree (idle memory), then runs one load (``benchmarks/http_load.py``:
``--connections`` keep-alive connections over ``--load-processes`` processes, one request in
flight per connection), a warm-up, then ``--seconds`` measured: requests/s, latency p50/p99,
failures, and the server's CPU (whole process tree) per request. The contenders run interleaved,
``--rounds`` times (order reversed every other round); the best round of each is kept for
requests/s, the median of the rounds for PSS; every round is in the JSON. The budget rows
(``benchmarks/budgets.py``, ``compare.*``) are ratios within this one run.

**Part 2 - WebSocket broadcast.** ``--ws-clients`` member sockets in 2 client processes (the
``websockets`` asyncio client) join one group; a sender socket sends a frame carrying its send time
every ``--ws-intervals`` s (default: every 50 ms, the budget's rate, and every 250 ms, a rate
neither contender saturates here), which the server sends to the whole group; each member records
the delivery latency (``compare_sites/ws_load.py``). Ours: ``procman run`` with a django_glue
consumer. Channels: Channels 4 + channels_redis + 2 Daphne processes on one socket. The same
Channels 4 application also runs as ``c4ipc`` (``procman run --asgi`` on
``asgi_ipc.channels.IPCChannelLayer``) and as ``uvicorn-channels`` (uvicorn, channels_redis), so
the layer is the only difference between ``c4ipc`` and ``channels``. Reported: p50/p90/p99/max
latency, lost and duplicated deliveries, server CPU.

Prints Markdown tables with the budget verdicts and writes everything to
``benchmarks/results/compare-<UTC timestamp>.json`` (``benchmarks/record.py``). Every wait is
bounded; every process started is stopped, also on errors, Ctrl-C and SIGTERM; ours' segment is
checked gone from /dev/shm. The load generators share the 2 cores with the servers, so absolute
numbers are lower bounds; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import budgets, stats  # noqa: E402
from benchmarks.compare_sites import contenders, ws_load  # noqa: E402
from benchmarks.cpu_time import tree_cpu_seconds  # noqa: E402
from benchmarks.http_load import run_load_processes  # noqa: E402
from benchmarks.procs import collect_results, stop_processes  # noqa: E402
from benchmarks.record import Record  # noqa: E402

__all__ = ["HTTP_CONTENDERS", "WS_CONTENDERS", "budget_checks", "channels4_verdict", "http_table", "main",
           "ws_table"]

HTTP_CONTENDERS = ["ours", "c4ipc", "gunicorn-w2", "gunicorn-w4", "granian-w2", "uvicorn", "daphne", "channels"]
WS_CONTENDERS = ["ours", "channels", "c4ipc", "uvicorn-channels"]
#: requests sent on one connection before the idle PSS is read, and the pause before reading it
#: (the default of --idle-settle)
IDLE_REQUESTS = 200
IDLE_SETTLE_S = 1.0
MIB = 2**20


def _stop_on_signals() -> None:
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    # Ctrl-C always interrupts, even when the shell started us with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def idle_pss(running: contenders.Running, requests: int = IDLE_REQUESTS,
             settle: float = IDLE_SETTLE_S) -> dict[str, Any]:
    """Send ``requests`` GETs on one keep-alive connection (each must answer 200 ``hello``), wait
    ``settle`` seconds, and return the PSS of the contender's whole process tree."""
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    try:
        for n in range(requests):
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or body != b"hello":
                raise contenders.ContenderError(
                    f"{running.name}: request {n + 1} of the warm-up answered {response.status} {body[:60]!r}")
    except (OSError, http.client.HTTPException) as exc:
        raise contenders.ContenderError(f"{running.name}: warm-up request failed: {exc!r}") from None
    finally:
        conn.close()
    time.sleep(settle)
    pss = running.pss_bytes()
    return {"pss_idle_mib": round(pss / MIB, 1), "idle_processes": len(running.server_pids())}


def http_round(name: str, tmp: Path, args: argparse.Namespace, redis_port: int | None) -> dict[str, Any]:
    """Start ``name``, read its idle PSS, load it (warm-up + measured window), stop it; one
    attempt's numbers."""
    running = contenders.start(name, tmp, redis_port=redis_port if name in contenders.NEEDS_REDIS else None)
    try:
        idle = idle_pss(running, settle=args.idle_settle)
        load = run_load_processes(running.port, args.connections, args.load_processes, args.warmup, args.seconds,
                                  window_probe=running.cpu_seconds)
        alive = running.alive()
        server_processes = len(running.server_pids())
    finally:
        running.stop()
    cpu_used = load["probe"][1] - load["probe"][0]
    latencies = load["latencies_ms"]
    leftover = running.prefix is not None and os.path.exists(f"/dev/shm/asgi_ipc.{running.prefix}")
    return {
        "contender": name,
        "requests_per_s": load["requests_per_s"],
        "ok": load["ok"],
        "non_200": load["bad_status"],
        "failures": load["failures"],
        "errors": load["errors"],
        "reconnects_after_close": load["reconnects_after_close"],
        "p50_ms": stats.percentile(latencies, 50),
        "p99_ms": stats.percentile(latencies, 99),
        "connections": load["connections"],
        "server_cpu_cores": round(cpu_used / args.seconds, 2),
        "server_cpu_us_per_request": round(cpu_used / load["ok"] * 1e6, 1) if load["ok"] else None,
        "load_generator_cpu_cores": round(load["load_cpu_seconds"] / args.seconds, 2),
        **idle,
        "server_processes": server_processes,
        "alive_at_end": alive,
        "segment_left_in_dev_shm": leftover,
    }


def ws_run(name: str, tmp: Path, args: argparse.Namespace, ctx: Any, redis_port: int | None,
           interval: float) -> dict[str, Any]:
    """Start ``name``, connect the members, broadcast every ``interval`` s, stop; one run's
    numbers. Redis is emptied first, so no group member of an earlier run is left in the group."""
    if redis_port is not None:
        _redis_flushall(redis_port)
    running = contenders.start(name, tmp, redis_port=redis_port if name in contenders.NEEDS_REDIS else None,
                               interfaces=args.ours_ws_interfaces)
    procs: list = []
    try:
        ready_q, result_q = ctx.Queue(), ctx.Queue()
        processes = 2
        counts = [args.ws_clients // processes + (1 if i < args.ws_clients % processes else 0) for i in range(processes)]
        run_for = args.ws_seconds + args.ws_end_pause + 30
        procs = [ctx.Process(target=ws_load.run_members,
                             args=(running.port, count, ready_q, result_q, 10.0, run_for), daemon=True)
                 for count in counts]
        for proc in procs:
            proc.start()
        ready = collect_results(procs, ready_q, 30 + args.ws_clients * 0.05)
        time.sleep(0.5)  # group adds of the last sockets land before the first broadcast
        client_pids = [proc.pid for proc in procs]
        cpu_start, clients_start, wall_start = running.cpu_seconds(), tree_cpu_seconds(client_pids), time.monotonic()
        sender = asyncio.run(asyncio.wait_for(
            ws_load.send_broadcasts(running.port, args.ws_seconds, interval, args.ws_end_pause),
            timeout=args.ws_seconds * 3 + args.ws_end_pause + 30))
        wall = time.monotonic() - wall_start
        server_cores = (running.cpu_seconds() - cpu_start) / wall
        client_cores = (tree_cpu_seconds(client_pids) - clients_start) / wall
        reports = collect_results(procs, result_q, run_for + 60)
        alive = running.alive()
    finally:
        stop_processes(procs, grace=10.0)
        running.stop()
    skip = int(1.0 / interval)  # the first second is warm-up for the latency figures
    summary = ws_load.summarize(reports, sender["broadcasts"], skip)
    summary.update(contender=name, interval_ms=round(interval * 1000, 3), sender_late=sender["sender_late"],
                   alive_at_end=alive, server_cpu_cores_while_sending=round(server_cores, 2),
                   client_cpu_cores_while_sending=round(client_cores, 2),
                   members_ready=[r[1] for r in ready], latency_skips_first=skip,
                   segment_left_in_dev_shm=running.prefix is not None and os.path.exists(
                       f"/dev/shm/asgi_ipc.{running.prefix}"))
    return summary


def _redis_flushall(port: int) -> None:
    """FLUSHALL on the benchmark's own redis-server (raw RESP; bounded by a 5 s timeout)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        reply = conn.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"redis FLUSHALL answered {reply!r}")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _missing_row(name: str, skipped: dict[str, str], failed: dict[str, str], columns: int) -> list[str]:
    """The table row of a contender without numbers (skipped or failed, and why); none if neither."""
    why = f"skipped: {skipped[name]}" if name in skipped else f"FAILED: {failed[name][:120]}" if name in failed else None
    return [] if why is None else [f"| {name} | {why} |" + " |" * (columns - 2)]


def http_table(best: dict[str, dict], skipped: dict[str, str], failed: dict[str, str] | None = None,
               pss: dict[str, float] | None = None) -> list[str]:
    """Markdown rows of the HTTP part. ``best``: the best attempt of every contender that ran;
    ``pss``: its idle PSS in MiB (median over rounds; default: the best attempt's);
    ``skipped`` / ``failed``: contender -> why it has no numbers."""
    failed = failed or {}
    pss = pss or {}
    lines = ["| contender | requests/s | p50 ms | p99 ms | CPU us/request | server CPU (cores) | PSS idle MiB "
             "| processes | failures | non-200 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in HTTP_CONTENDERS:
        r = best.get(name)
        if r is None:
            lines += _missing_row(name, skipped, failed, 10)
            continue
        lines.append(f"| {name} | {_fmt(r['requests_per_s'], 0)} | {_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} | "
                     f"{_fmt(r.get('server_cpu_us_per_request'), 0)} | {r['server_cpu_cores']:.2f} | "
                     f"{_fmt(pss.get(name, r.get('pss_idle_mib')), 1)} | {r.get('idle_processes', '-')} | "
                     f"{r['failures']} | {r['non_200']} |")
    return lines


def budget_checks(best: dict[str, dict], pss: dict[str, float], ws_budget_run: dict[str, dict] | None) \
        -> list[dict[str, Any]]:
    """The ``compare.*`` budgets of ``benchmarks/budgets.py`` as ratios within this run (``n.a.``
    where ours or the baseline has no numbers). ``ws_budget_run``: the broadcast runs at the
    budget's rate (50 ms), or None when part 2 did not run."""
    def rps(name: str) -> float | None:
        return best[name]["requests_per_s"] if name in best else None

    ours_clean = "ours" in best and best["ours"]["failures"] == 0 and best["ours"]["non_200"] == 0
    asgi = [n for n in ("uvicorn", "daphne") if n in best]
    best_asgi = max(asgi, key=rps) if asgi else None
    checks = [
        budgets.check("compare.rps_vs_gunicorn_w4", stats.ratio(rps("ours"), rps("gunicorn-w4")), ours_clean,
                      note=f"ours {_fmt(rps('ours'), 0)}/s, gunicorn -w 4 {_fmt(rps('gunicorn-w4'), 0)}/s"),
        budgets.check("compare.rps_vs_granian_w2", stats.ratio(rps("ours"), rps("granian-w2")), ours_clean,
                      note=f"ours {_fmt(rps('ours'), 0)}/s, granian --workers 2 {_fmt(rps('granian-w2'), 0)}/s"),
        budgets.check("compare.pss_vs_gunicorn_w2", stats.ratio(pss.get("ours"), pss.get("gunicorn-w2")),
                      note=f"ours {_fmt(pss.get('ours'))} MiB, gunicorn -w 2 {_fmt(pss.get('gunicorn-w2'))} MiB"),
        budgets.check("compare.rps_vs_asgi_servers", stats.ratio(rps("ours"), rps(best_asgi) if best_asgi else None),
                      ours_clean, note=f"ours {_fmt(rps('ours'), 0)}/s, best of uvicorn and daphne: "
                                       f"{best_asgi or '-'} {_fmt(rps(best_asgi) if best_asgi else None, 0)}/s"),
    ]
    if ws_budget_run is not None:
        ours, theirs = ws_budget_run.get("ours"), ws_budget_run.get("channels")
        p99 = stats.ratio(ours and ours["p99_ms"], theirs and theirs["p99_ms"])
        checks.append(budgets.check(
            "compare.ws_p99_vs_channels", p99,
            note=(f"p99 ours {_fmt(ours['p99_ms'])} ms, lost {ours['lost']} of {ours['deliveries_expected']}; "
                  f"Channels {_fmt(theirs['p99_ms'])} ms, lost {theirs['lost']} of {theirs['deliveries_expected']}")
            if p99 is not None else "a contender is missing or delivered nothing"))
    return checks


def budget_table(checks: list[dict[str, Any]]) -> list[str]:
    """The budget rows as Markdown: what, budget, measured ratio, verdict, the numbers behind it."""
    lines = ["| budget | limit | measured | verdict | from |", "|---|---|---:|---|---|"]
    for c in checks:
        measured = "-" if c["measured"] is None else f"{c['measured']:.2f}{c['unit'] if c['unit'] == 'x' else ''}"
        lines.append(f"| `{c['id']}` | {c['budget']} | {measured} | {c['verdict']} | {c['note']} |")
    return lines


def ws_table(runs: dict[str, dict], skipped: dict[str, str],
             failed: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Markdown rows of one broadcast rate and the verdict of ``compare.ws_p99_vs_channels``."""
    failed = failed or {}
    lines = ["| contender | members | broadcasts | p50 ms | p90 ms | p99 ms | max ms | lost | duplicates |"
             " server CPU (cores) | clients CPU (cores) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in WS_CONTENDERS:
        r = runs.get(name)
        if r is None:
            lines += _missing_row(name, skipped, failed, 11)
            continue
        lines.append(f"| {name} | {r['members']} | {r['broadcasts']} | {_fmt(r['p50_ms'], 2)} | {_fmt(r['p90_ms'], 2)} | "
                     f"{_fmt(r['p99_ms'], 2)} | {_fmt(r['max_ms'], 2)} | {r['lost']} | {r['duplicates']} | "
                     f"{r['server_cpu_cores_while_sending']:.2f} | {r['client_cpu_cores_while_sending']:.2f} |")
    check = budget_checks({}, {}, runs)[-1]
    return lines, f"{check['verdict']} ({check['note']})"


def channels4_verdict(runs: dict[str, dict]) -> str:
    """The Channels 4 application on this layer (``c4ipc``) against channels_redis under Daphne
    (``channels``) and uvicorn (``uvicorn-channels``): PASS when its p99 is below both and it lost
    nothing; "n.a." when ``c4ipc`` or both baselines have no numbers."""
    ours = runs.get("c4ipc")
    baselines = {n: runs[n] for n in ("channels", "uvicorn-channels") if runs.get(n) and runs[n]["p99_ms"] is not None}
    if not ours or ours["p99_ms"] is None or not baselines:
        return "n.a. (c4ipc or every channels_redis contender is missing or delivered nothing)"
    ok = all(ours["p99_ms"] < r["p99_ms"] for r in baselines.values()) and ours["lost"] == 0
    versus = "; ".join(f"{n} {r['p99_ms']:.1f} ms, lost {r['lost']}" for n, r in baselines.items())
    return (("PASS" if ok else "FAIL") + f" (p99 c4ipc {ours['p99_ms']:.1f} ms, lost {ours['lost']} of "
            f"{ours['deliveries_expected']}; {versus})")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="http,ws", help="comma-separated: http, ws (default both)")
    parser.add_argument("--contenders", default=",".join(contenders.NEEDS),
                        help="comma-separated subset of " + ", ".join(contenders.NEEDS))
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections in total")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--warmup", type=float, help="seconds of load not counted (default 2; --quick 1)")
    parser.add_argument("--seconds", type=float, help="measured seconds per HTTP attempt (default 8; --quick 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the HTTP part (default 2; --quick 1)")
    parser.add_argument("--idle-settle", type=float,
                        help=f"seconds between the last warm-up request and reading the idle PSS "
                             f"(default {IDLE_SETTLE_S:g}; --quick 0.25)")
    parser.add_argument("--ws-clients", type=int, help="WebSocket group members (default 1000; --quick 200)")
    parser.add_argument("--ws-seconds", type=float, help="seconds of broadcasting (default 8; --quick 2)")
    parser.add_argument("--ws-intervals", default="0.05,0.25",
                        help="comma-separated seconds between broadcasts; each is run for every contender; the "
                             "first is the budget's (default 0.05, and 0.25, a rate neither contender saturates on "
                             "2 cores)")
    parser.add_argument("--ws-end-pause", type=float,
                        help="seconds between the last broadcast and the end marker (default 3; --quick 1)")
    parser.add_argument("--ours-ws-interfaces", type=int, default=1,
                        help="interface processes of ours in the WebSocket part (default 1; HTTP always uses 1)")
    parser.add_argument("--quick", action="store_true", help="short run (2 s, 1 round, 200 WebSocket clients): "
                                                             "a smoke test, not a measurement")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    full = {"warmup": 2.0, "seconds": 8.0, "rounds": 2, "ws_clients": 1000, "ws_seconds": 8.0, "ws_end_pause": 3.0,
            "idle_settle": IDLE_SETTLE_S}
    quick = {"warmup": 1.0, "seconds": 2.0, "rounds": 1, "ws_clients": 200, "ws_seconds": 2.0, "ws_end_pause": 1.0,
             "idle_settle": 0.25}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    try:
        args.intervals = [float(v) for v in args.ws_intervals.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--ws-intervals {args.ws_intervals!r}: give seconds separated by commas, e.g. 0.05,0.25")
    args.chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = (args.parts - {"http", "ws"}) or (set(args.chosen) - set(contenders.NEEDS))
    if bad or not args.parts or not args.chosen or args.connections < 1 or args.load_processes < 1 \
            or args.rounds < 1 or args.ws_clients < 2 or args.ours_ws_interfaces < 1 or args.seconds <= 0 \
            or args.warmup < 0 or args.idle_settle < 0 or not args.intervals or min(args.intervals) <= 0:
        parser.error(f"bad value(s): {sorted(bad) if bad else 'a count or duration must be positive'}; "
                     f"parts are http, ws; contenders are {', '.join(contenders.NEEDS)}")
    return args


def _run_http(args: argparse.Namespace, names: list[str], tmp: Path, redis_port: int | None) -> dict[str, Any]:
    attempts: dict[str, list[dict]] = {n: [] for n in names}
    for round_no in range(args.rounds):
        order = names if round_no % 2 == 0 else list(reversed(names))
        for name in order:
            print(f"http round {round_no + 1}/{args.rounds}: {name} ...", flush=True)
            try:
                result = http_round(name, tmp, args, redis_port)
            except (contenders.ContenderError, OSError, RuntimeError, queue_module.Empty) as exc:
                result = {"contender": name, "error": f"{type(exc).__name__}: {exc}"[:2000], "requests_per_s": 0.0}
            print(f"  {name}: {result.get('requests_per_s')} req/s, p50 {_fmt(result.get('p50_ms'), 2)} ms, "
                  f"p99 {_fmt(result.get('p99_ms'), 2)} ms, CPU {result.get('server_cpu_us_per_request')} us/request, "
                  f"PSS idle {result.get('pss_idle_mib')} MiB, failures {result.get('failures')}"
                  + (f", ERROR {result['error'][:300]}" if "error" in result else ""), flush=True)
            attempts[name].append(result)
    good = {n: [r for r in a if "error" not in r] for n, a in attempts.items()}
    best = {n: max(a, key=lambda r: r["requests_per_s"]) for n, a in good.items() if a}
    pss = {n: stats.median([r["pss_idle_mib"] for r in a]) for n, a in good.items() if a}
    failed = {n: a[-1]["error"] for n, a in attempts.items() if n not in best and a}
    return {"attempts": attempts, "best": best, "pss_idle_mib_median": pss, "failed": failed}


def _run_ws(args: argparse.Namespace, names: list[str], tmp: Path, redis_port: int | None) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    runs: dict[str, dict] = {}
    for interval in args.intervals:
        key = f"{interval * 1000:g} ms"
        runs[key] = {}
        for name in names:
            print(f"websocket broadcast every {key}: {name} ({args.ws_clients} members) ...", flush=True)
            try:
                runs[key][name] = ws_run(name, tmp, args, ctx, redis_port, interval)
            except (contenders.ContenderError, OSError, RuntimeError, asyncio.TimeoutError, queue_module.Empty) as exc:
                runs[key][name] = {"contender": name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            r = runs[key][name]
            print(f"  {name}: " + (f"ERROR {r['error'][:300]}" if "error" in r else
                  f"p50 {_fmt(r['p50_ms'], 2)} ms, p99 {_fmt(r['p99_ms'], 2)} ms, lost {r['lost']}/{r['deliveries_expected']}, "
                  f"members {r['members']}, server CPU {r['server_cpu_cores_while_sending']} cores, clients CPU "
                  f"{r['client_cpu_cores_while_sending']} cores"), flush=True)
    return {"runs": runs}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; exit 0 if every chosen contender ran (a budget may still FAIL), 1 if one
    failed or something was left in /dev/shm, 2 for bad arguments."""
    args = _parse(argv)
    try:
        return _main(args, argv)
    except KeyboardInterrupt:
        print("\ninterrupted: every process this run started has been stopped", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    _stop_on_signals()
    ws_load.raise_fd_limit(args.ws_clients * 2 + 1024)
    record = Record("compare", argv if argv is not None else sys.argv[1:], args.quick)
    print(record.headline(), flush=True)

    skipped: dict[str, str] = {}
    for name in args.chosen:
        missing = contenders.missing_packages(name)
        if missing:
            skipped[name] = f"not installed: {', '.join(missing)} ({contenders.INSTALL_HINT})"
    for name in set(contenders.NEEDS) - set(args.chosen):
        skipped[name] = "not chosen (--contenders)"
    http_names = [n for n in HTTP_CONTENDERS if n in args.chosen and n not in skipped] if "http" in args.parts else []
    ws_names = [n for n in WS_CONTENDERS if n in args.chosen and n not in skipped] if "ws" in args.parts else []
    results: dict[str, Any] = {"skipped": skipped, "http": {}, "ws": {}}
    redis = None
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp_name:
        try:
            if any(n in contenders.NEEDS_REDIS for n in http_names + ws_names):
                from benchmarks.redis_server import RedisServer, RedisServerError, redis_server_version
                try:
                    redis = RedisServer().start()
                    results["redis_server"] = redis_server_version()
                except RedisServerError as exc:
                    for name in contenders.NEEDS_REDIS:
                        if name in http_names + ws_names:
                            skipped[name] = f"redis-server did not start: {exc}"
                    http_names = [n for n in http_names if n not in contenders.NEEDS_REDIS]
                    ws_names = [n for n in ws_names if n not in contenders.NEEDS_REDIS]
            for name, why in sorted(skipped.items()):
                print(f"SKIPPED {name}: {why}", flush=True)
            redis_port = redis.port if redis is not None else None
            if http_names:
                results["http"] = _run_http(args, http_names, Path(tmp_name), redis_port)
            if ws_names:
                results["ws"] = _run_ws(args, ws_names, Path(tmp_name), redis_port)
        finally:
            if redis is not None:
                redis.stop()
    return _report(args, record, results)


def _report(args: argparse.Namespace, record: Record, results: dict[str, Any]) -> int:
    exit_code = 0
    skipped = results["skipped"]
    print()
    http, ws = results["http"], results["ws"]
    if http:
        exit_code |= bool(http["failed"])
        print(f"**Hello view, HTTP/1.1 keep-alive** (best of {args.rounds} interleaved rounds, {args.connections} "
              f"connections, {args.seconds:g} s each; PSS: whole process tree, idle after {IDLE_REQUESTS} requests, "
              "median of the rounds)\n")
        print("\n".join(http_table(http["best"], skipped, http["failed"], http["pss_idle_mib_median"])))
        print("\n" + "\n".join(f"- {n}: {contenders.SHAPES[n]}" for n in HTTP_CONTENDERS))
    ws_budget_run = None
    if ws:
        for key, by_name in ws["runs"].items():
            good = {n: r for n, r in by_name.items() if "error" not in r}
            exit_code |= len(good) != len(by_name)
            if ws_budget_run is None:
                ws_budget_run = good  # the first interval is the budget's
            lines, verdict = ws_table(good, skipped, {n: r["error"] for n, r in by_name.items() if "error" in r})
            print(f"\n**WebSocket broadcast to {args.ws_clients} members of one group** (one broadcast every {key} "
                  f"for {args.ws_seconds:g} s; ours: procman run, {args.ours_ws_interfaces} interface + 2 workers)\n")
            print("\n".join(lines))
            print(f"\np99 below Channels 4 + channels_redis + Daphne, every {key}: {verdict}")
            c4 = channels4_verdict(good)
            ws.setdefault("channels4_verdicts", {})[key] = c4
            print(f"Channels 4 application, shared-memory layer vs channels_redis, every {key}: {c4}")
    checks = budget_checks(http.get("best", {}) if http else {}, http.get("pss_idle_mib_median", {}) if http else {},
                           ws_budget_run)
    if not http:
        checks = [c for c in checks if not c["id"].startswith("compare.rps") and "pss" not in c["id"]]
    if checks:
        print("\n**Budgets** (`benchmarks/budgets.py`; ratios measured in this run)\n")
        print("\n".join(budget_table(checks)))
    leftovers = [e for e in os.listdir("/dev/shm") if e.startswith(f"asgi_ipc.cmp{os.getpid()}_")]
    results["dev_shm_leftovers"] = leftovers
    if leftovers:
        print(f"\nLEFT IN /dev/shm: {leftovers}")
        exit_code = 1
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average {record.machine['load_average_start']} at start, {load_end} at end; "
          f"{record.machine['cpus']} CPUs")
    if not args.no_json:
        settings = {k: v for k, v in vars(args).items() if k not in ("parts", "chosen")}
        settings.update(parts=sorted(args.parts), contenders=args.chosen)
        path = record.write(results, settings, checks)
        print(f"JSON: {path}")
    return int(exit_code)


if __name__ == "__main__":
    sys.exit(main())
