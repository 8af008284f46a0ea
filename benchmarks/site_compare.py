"""Whole-site comparisons of docs/design.md section 4, in one invocation on this machine.

Usage (from the repository root)::

    pip install "daphne>=4,<5" "uvicorn[standard]" "channels>=4,<5" "channels-redis>=4,<5"
    python -m benchmarks.site_compare                  # both parts, ~4 minutes on 2 cores
    python -m benchmarks.site_compare --parts http     # only part 1
    python -m benchmarks.site_compare --quick          # short smoke run; not a measurement

The contender packages are not dependencies of the project; a contender whose package is missing is
skipped, and the report says which and why. ``redis-server`` must be on the PATH for part 2's
Channels contender (Debian: ``apt-get install redis-server``).

**Part 1 - "hello" over HTTP keep-alive.** The same Django view (``HttpResponse("hello")``, no
middleware, no database, DEBUG off; ``compare_sites/cmpsite``) served by

- ours: ``procman run`` (1 interface process, 2 workers, asgi_ipc layer);
- uvicorn: ``uvicorn --workers 2`` with Django's ``get_asgi_application()`` (uvloop + httptools
  when installed, as ``uvicorn[standard]`` gives);
- daphne: 2 Daphne 4 processes accepting on one socket passed with ``--fd`` (Daphne has no
  ``--workers``), same Django ASGI application.

One load: ``--connections`` keep-alive connections split over ``--load-processes`` processes
(raw sockets, one request in flight per connection; ``compare_sites/http_load.py``), a warm-up,
then ``--seconds`` measured: requests/s, latency p50/p99, failures. The contenders run
interleaved, ``--rounds`` times (order reversed every other round), each started fresh; the best
round of each is kept (the machine is shared and noisy) and every round is in the JSON.

**Part 2 - WebSocket broadcast.** ``--ws-clients`` member sockets in 2 client processes (the
``websockets`` asyncio client) join one group; a sender socket sends a frame carrying its send time
every ``--ws-intervals`` s (default: every 50 ms, the budget's rate, and every 250 ms, a rate
neither contender saturates here), which the server sends to the whole group; each member records
the delivery latency (``compare_sites/ws_load.py``). Ours: ``procman run`` with a django_glue consumer
(``Group("bench").add`` on connect, ``Group("bench").send`` on receive). Channels: Channels 4 +
channels_redis + 2 Daphne processes on one socket, against a ``redis-server`` started here on a free
loopback port without persistence, always stopped. The same Channels 4 application
(``AsyncWebsocketConsumer``, ``group_add`` / ``group_send``) also runs as ``c4ipc`` - ``procman run
--asgi`` with 2 Daphne servers on ``asgi_ipc.channels.IPCChannelLayer`` - and as
``uvicorn-channels`` - ``uvicorn --workers 2`` with channels_redis - so the layer is the only
difference between ``c4ipc`` and ``channels``. Reported: p50/p90/p99/max latency, lost and
duplicated deliveries, server CPU.

Prints a Markdown table with the budget verdicts and writes everything to
``benchmarks/results/site-compare-<UTC timestamp>.json``. Every wait is bounded; every process
started is stopped, also on errors, Ctrl-C and SIGTERM; ours' segment is checked gone from /dev/shm.
The load generators share the 2 cores with the servers, so absolute numbers are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import queue as queue_module
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.compare_sites import contenders, http_load, ws_load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
HTTP_CONTENDERS = ["ours", "uvicorn", "daphne"]
WS_CONTENDERS = ["ours", "channels", "c4ipc", "uvicorn-channels"]
#: what each broadcast contender runs (the legend under the WebSocket tables)
WS_SHAPES = {
    "ours": "Channels 1 app (django_glue) under procman run: interface process(es) + 2 workers, asgi_ipc layer",
    "channels": "Channels 4 app under 2 x daphne --fd, channels_redis (RedisChannelLayer)",
    "c4ipc": "the same Channels 4 app under procman run --asgi (2 in-process Daphne servers), "
             "asgi_ipc.channels.IPCChannelLayer",
    "uvicorn-channels": "the same Channels 4 app under uvicorn --workers 2, channels_redis",
}


def _stop_on_signals() -> None:
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    # Ctrl-C always interrupts, even when the shell started us with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _collect(procs: list, queue, timeout: float) -> list:
    """One result per process from ``queue`` within ``timeout``; then join (or terminate) them."""
    results = []
    deadline = time.monotonic() + timeout
    try:
        for _ in procs:
            results.append(queue.get(timeout=max(0.1, deadline - time.monotonic())))
    finally:
        for proc in procs:
            proc.join(max(0.1, min(10.0, deadline + 10 - time.monotonic())))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    return results


def http_round(name: str, tmp: Path, args, ctx) -> dict:
    """Start ``name``, load it (warm-up + measured window), stop it; one attempt's numbers."""
    running = contenders.start(name, tmp)
    procs: list = []
    try:
        queue = ctx.Queue()
        per = max(1, args.connections // args.load_processes)
        start_at = time.monotonic() + 1.5  # spawn + connect before the shared start instant
        procs = [ctx.Process(target=_load_entry, args=(running.port, per, start_at, args.warmup, args.seconds, queue),
                             daemon=True) for _ in range(args.load_processes)]
        for proc in procs:
            proc.start()
        _sleep_until(start_at + args.warmup)
        cpu_start = running.cpu_seconds()
        _sleep_until(start_at + args.warmup + args.seconds)
        cpu_used = running.cpu_seconds() - cpu_start
        results = _collect(procs, queue, 1.5 + args.warmup + args.seconds + 60)
        alive = running.alive()
        server_pids = running.server_pids()
    finally:
        _terminate(procs)
        running.stop()
    latencies = [ms for r in results for ms in r["latencies_ms"]]
    errors: dict[str, int] = {}
    for r in results:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    ok = sum(r["ok"] for r in results)
    leftover = running.prefix is not None and os.path.exists(f"/dev/shm/asgi_ipc.{running.prefix}")
    return {
        "contender": name,
        "requests_per_s": round(ok / args.seconds, 1),
        "ok": ok,
        "non_200": sum(r["bad_status"] for r in results),
        "failures": sum(r["failures"] for r in results),
        "errors": errors,
        "p50_ms": ws_load.percentile(latencies, 50),
        "p99_ms": ws_load.percentile(latencies, 99),
        "connections": per * args.load_processes,
        "server_cpu_cores": round(cpu_used / args.seconds, 2),
        "load_generator_cpu_cores": round(sum(r.get("cpu_seconds_in_window") or 0.0 for r in results)
                                          / args.seconds, 2),
        "server_processes": len(server_pids),
        "alive_at_end": alive,
        "segment_left_in_dev_shm": leftover,
    }


def _sleep_until(instant: float) -> None:
    while (left := instant - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def _load_entry(port, per, start_at, warmup, seconds, queue) -> None:
    try:
        queue.put(http_load.run_load(port, per, start_at, warmup, seconds))
    except Exception as exc:  # noqa: BLE001 - reported as failures, never hidden
        queue.put({"ok": 0, "bad_status": 0, "failures": 1, "errors": {f"load process: {exc!r}"[:100]: 1},
                   "latencies_ms": []})


def ws_run(name: str, tmp: Path, args, ctx, redis_port: int | None, interval: float) -> dict:
    """Start ``name``, connect the members, broadcast every ``interval`` s, stop; one run's
    numbers. Redis is emptied first, so no group member of an earlier run is left in the group."""
    if redis_port is not None:
        _redis_flushall(redis_port)
    running = contenders.start(name, tmp, redis_port=redis_port, interfaces=args.ours_ws_interfaces)
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
        ready = _collect_ready(ready_q, len(procs), 30 + args.ws_clients * 0.05)
        time.sleep(0.5)  # group adds of the last sockets land before the first broadcast
        cpu_start, clients_start, wall_start = running.cpu_seconds(), _cpu_of(procs), time.monotonic()
        sender = asyncio.run(asyncio.wait_for(
            ws_load.send_broadcasts(running.port, args.ws_seconds, interval, args.ws_end_pause),
            timeout=args.ws_seconds * 3 + args.ws_end_pause + 30))
        wall = time.monotonic() - wall_start
        server_cores = (running.cpu_seconds() - cpu_start) / wall
        client_cores = (_cpu_of(procs) - clients_start) / wall
        reports = _collect(procs, result_q, run_for + 60)
        alive = running.alive()
    finally:
        _terminate(procs)
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


def _terminate(procs: list) -> None:
    """Stop client/load processes still running (after an error or Ctrl-C), bounded."""
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            proc.terminate()
    for proc in procs:
        if proc.pid is not None:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _cpu_of(procs: list) -> float:
    """User + system CPU seconds used so far by the given (multiprocessing) processes."""
    import psutil

    total = 0.0
    for proc in procs:
        try:
            times = psutil.Process(proc.pid).cpu_times()
        except (psutil.NoSuchProcess, ValueError):
            continue
        total += times.user + times.system
    return total


def _redis_flushall(port: int) -> None:
    """FLUSHALL on the benchmark's own redis-server (raw RESP; bounded by a 5 s timeout)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        reply = conn.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"redis FLUSHALL answered {reply!r}")


def _collect_ready(queue, count: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    ready = []
    for _ in range(count):
        ready.append(queue.get(timeout=max(0.1, deadline - time.monotonic())))
    return ready


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def http_table(best: dict[str, dict], skipped: dict[str, str],
               failed: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Markdown rows of the HTTP part and the budget verdict. ``best``: the best attempt of every
    contender that ran; ``skipped`` / ``failed``: contender -> why it has no numbers."""
    failed = failed or {}
    lines = ["| contender | processes | requests/s | p50 ms | p99 ms | failures | non-200 | server CPU (cores) |"
             " load CPU (cores) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    shape = {"ours": "procman run: 1 interface + 2 workers", "uvicorn": "uvicorn --workers 2",
             "daphne": "2 x daphne --fd (one socket)"}
    for name in HTTP_CONTENDERS:
        if name in skipped:
            lines.append(f"| {name} | {shape[name]} | skipped: {skipped[name]} | | | | | | |")
            continue
        r = best.get(name)
        if r is None:
            if name in failed:
                lines.append(f"| {name} | {shape[name]} | FAILED: {failed[name][:120]} | | | | | | |")
            continue
        lines.append(f"| {name} | {shape[name]} | {_fmt(r['requests_per_s'])} | {_fmt(r['p50_ms'], 2)} | "
                     f"{_fmt(r['p99_ms'], 2)} | {r['failures']} | {r['non_200']} | {r['server_cpu_cores']:.2f} | "
                     f"{r['load_generator_cpu_cores']:.2f} |")
    others = [best[n]["requests_per_s"] for n in ("uvicorn", "daphne") if n in best]
    if "ours" not in best or not others:
        verdict = "n.a. (ours or every baseline missing)"
    else:
        ok = best["ours"]["requests_per_s"] > max(others) and best["ours"]["failures"] == 0
        verdict = "PASS" if ok else "FAIL"
        names = " and ".join(n for n in ("uvicorn", "daphne") if n in best)
        verdict += f" (ours {best['ours']['requests_per_s']:,.0f}/s vs best of {names} {max(others):,.0f}/s" \
                   f" = {best['ours']['requests_per_s'] / max(others):.2f}x)"
    return lines, verdict


def ws_table(runs: dict[str, dict], skipped: dict[str, str],
             failed: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Markdown rows of one broadcast rate and the budget verdict (p99 of ours below Channels')."""
    failed = failed or {}
    lines = ["| contender | members | broadcasts | p50 ms | p90 ms | p99 ms | max ms | lost | duplicates |"
             " server CPU (cores) | clients CPU (cores) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in WS_CONTENDERS:
        if name in skipped:
            lines.append(f"| {name} | skipped: {skipped[name]} | | | | | | | | | |")
            continue
        r = runs.get(name)
        if r is None:
            if name in failed:
                lines.append(f"| {name} | FAILED: {failed[name][:120]} | | | | | | | | | |")
            continue
        lines.append(f"| {name} | {r['members']} | {r['broadcasts']} | {_fmt(r['p50_ms'], 2)} | {_fmt(r['p90_ms'], 2)} | "
                     f"{_fmt(r['p99_ms'], 2)} | {_fmt(r['max_ms'], 2)} | {r['lost']} | {r['duplicates']} | "
                     f"{r['server_cpu_cores_while_sending']:.2f} | {r['client_cpu_cores_while_sending']:.2f} |")
    if "ours" not in runs or "channels" not in runs or runs["ours"]["p99_ms"] is None \
            or runs["channels"]["p99_ms"] is None:
        return lines, "n.a. (a contender is missing or delivered nothing)"
    ours, theirs = runs["ours"], runs["channels"]
    ok = ours["p99_ms"] < theirs["p99_ms"]
    verdict = ("PASS" if ok else "FAIL") + f" (p99 ours {ours['p99_ms']:.1f} ms vs Channels {theirs['p99_ms']:.1f} ms;" \
        f" lost ours {ours['lost']} of {ours['deliveries_expected']}, Channels {theirs['lost']} of " \
        f"{theirs['deliveries_expected']})"
    return lines, verdict


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="http,ws", help="comma-separated: http, ws (default both)")
    parser.add_argument("--contenders", default=",".join(HTTP_CONTENDERS + WS_CONTENDERS[1:]),
                        help="comma-separated subset of " + ", ".join(contenders.NEEDS))
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections in total")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per HTTP attempt")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ws-clients", type=int, default=1000)
    parser.add_argument("--ws-seconds", type=float, default=8.0)
    parser.add_argument("--ws-intervals", default="0.05,0.25",
                        help="comma-separated seconds between broadcasts; each is run for every contender; the "
                             "first is the budget's (default 0.05 = the brief's ~50 ms, and 0.25, a rate neither "
                             "contender saturates on 2 cores)")
    parser.add_argument("--ws-end-pause", type=float, default=3.0,
                        help="seconds between the last broadcast and the end marker")
    parser.add_argument("--ours-ws-interfaces", type=int, default=1,
                        help="interface processes of ours in the WebSocket part (default 1; HTTP always uses 1)")
    parser.add_argument("--quick", action="store_true", help="short run: 2 s, 1 round, 200 WebSocket clients")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    try:
        intervals = [float(v) for v in args.ws_intervals.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--ws-intervals {args.ws_intervals!r}: give seconds separated by commas, e.g. 0.05,0.25")
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = (parts - {"http", "ws"}) or (set(chosen) - set(contenders.NEEDS))
    if bad or args.connections < 1 or args.load_processes < 1 or args.rounds < 1 or args.ws_clients < 2 \
            or args.ours_ws_interfaces < 1 or args.seconds <= 0 or not intervals or min(intervals) <= 0:
        parser.error(f"bad value(s): {sorted(bad) if bad else 'a count or duration must be positive'}; "
                     f"parts are http, ws; contenders are {', '.join(contenders.NEEDS)}")
    if args.quick:
        args.seconds, args.warmup, args.rounds = 2.0, 1.0, 1
        args.ws_clients, args.ws_seconds, args.ws_end_pause = min(args.ws_clients, 200), 2.0, 1.0
    _stop_on_signals()
    ws_load.raise_fd_limit(args.ws_clients * 2 + 1024)
    ctx = multiprocessing.get_context("spawn")

    skipped: dict[str, str] = {}
    for name in chosen:
        missing = contenders.missing_packages(name)
        if missing:
            skipped[name] = f"not installed: {', '.join(missing)} ({contenders.INSTALL_HINT})"
    for name in set(contenders.NEEDS) - set(chosen):
        skipped[name] = "not chosen (--contenders)"
    for name, why in sorted(skipped.items()):
        print(f"SKIPPED {name}: {why}", flush=True)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    report: dict = {"started_utc": started.isoformat(timespec="seconds"), "load_average_start": load_start,
                    "cpus": os.cpu_count(), "cpu_model": _cpu_model(), "python": platform.python_version(),
                    "revision": _git_revision(), "versions": contenders.versions(), "skipped": skipped,
                    "settings": {k: v for k, v in vars(args).items()}, "http": {}, "ws": {}}
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="site-compare-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            if "http" in parts:
                names = [n for n in HTTP_CONTENDERS if n in chosen and n not in skipped]
                attempts: dict[str, list[dict]] = {n: [] for n in names}
                for round_no in range(args.rounds):
                    order = names if round_no % 2 == 0 else list(reversed(names))
                    for name in order:
                        print(f"http round {round_no + 1}/{args.rounds}: {name} ...", flush=True)
                        try:
                            result = http_round(name, tmp, args, ctx)
                        except (contenders.ContenderError, OSError, RuntimeError, queue_module.Empty) as exc:
                            result = {"contender": name, "error": str(exc)[:2000], "requests_per_s": 0.0}
                            exit_code = 1
                        print(f"  {name}: {result.get('requests_per_s')} req/s, p50 {result.get('p50_ms')} ms, "
                              f"p99 {result.get('p99_ms')} ms, failures {result.get('failures')}"
                              + (f", ERROR {result['error'][:300]}" if "error" in result else ""), flush=True)
                        attempts[name].append(result)
                best = {n: max(a, key=lambda r: r["requests_per_s"]) for n, a in attempts.items()
                        if any("error" not in r for r in a)}
                best = {n: r for n, r in best.items() if "error" not in r}
                report["http"] = {"attempts": attempts, "best": best}
            if "ws" in parts:
                names = [n for n in WS_CONTENDERS if n in chosen and n not in skipped]
                runs: dict[str, dict] = {}
                redis = None
                try:
                    if any(n in contenders.NEEDS_REDIS for n in names):
                        from benchmarks.redis_server import RedisServer, RedisServerError, redis_server_version
                        try:
                            redis = RedisServer().start()
                            report["versions"]["redis-server"] = redis_server_version()
                        except RedisServerError as exc:
                            for name in [n for n in names if n in contenders.NEEDS_REDIS]:
                                skipped[name] = f"redis-server did not start: {exc}"
                                print(f"SKIPPED {name}: {skipped[name]}", flush=True)
                                names.remove(name)
                    for interval in intervals:
                        key = f"{interval * 1000:g} ms"
                        runs[key] = {}
                        for name in names:
                            print(f"websocket broadcast every {key}: {name} ({args.ws_clients} members) ...",
                                  flush=True)
                            try:
                                runs[key][name] = ws_run(name, tmp, args, ctx, redis.port if redis else None,
                                                         interval)
                            except (contenders.ContenderError, OSError, RuntimeError, asyncio.TimeoutError,
                                    queue_module.Empty) as exc:
                                runs[key][name] = {"contender": name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                                exit_code = 1
                            r = runs[key][name]
                            print(f"  {name}: " + (f"ERROR {r['error'][:300]}" if "error" in r else
                                  f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, lost {r['lost']}/"
                                  f"{r['deliveries_expected']}, members {r['members']}, server CPU "
                                  f"{r['server_cpu_cores_while_sending']} cores, clients CPU "
                                  f"{r['client_cpu_cores_while_sending']} cores"), flush=True)
                finally:
                    if redis is not None:
                        redis.stop()
                report["ws"] = {"runs": runs}
        finally:
            report["load_average_end"] = os.getloadavg()
            report["seconds_total"] = round(
                (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)

    print()
    print(f"Machine: {report['cpus']} CPUs ({report['cpu_model']}), load average "
          f"{load_start[0]:.1f} at start, {report['load_average_end'][0]:.1f} at end; "
          f"{report['seconds_total']} s")
    if report["http"]:
        failed = {n: a[-1].get("error", "") for n, a in report["http"]["attempts"].items()
                  if n not in report["http"]["best"] and a}
        lines, verdict = http_table(report["http"]["best"], skipped, failed)
        report["http"]["verdict"] = verdict
        print("\n**Hello view, HTTP/1.1 keep-alive** (best of "
              f"{args.rounds} interleaved rounds, {args.connections} connections, {args.seconds:g} s each)\n")
        print("\n".join(lines))
        print(f"\nBudget (more requests/s than Daphne 4 and uvicorn on the same cores): {verdict}")
    if report["ws"]:
        report["ws"]["verdicts"] = {}
        for key, by_name in report["ws"]["runs"].items():
            good = {n: r for n, r in by_name.items() if "error" not in r}
            lines, verdict = ws_table(good, skipped, {n: r["error"] for n, r in by_name.items() if "error" in r})
            report["ws"]["verdicts"][key] = verdict
            print(f"\n**WebSocket broadcast to {args.ws_clients} members of one group** "
                  f"(one broadcast every {key} for {args.ws_seconds:g} s; ours: procman run, "
                  f"{args.ours_ws_interfaces} interface + 2 workers; Channels: 2 x daphne --fd)\n")
            print("\n".join(lines))
            print("\n" + "\n".join(f"- {name}: {WS_SHAPES[name]}" for name in WS_CONTENDERS))
            print(f"\nBudget (p99 delivery latency below Channels 4 + channels_redis + Daphne), every {key}: "
                  f"{verdict}")
            c4_verdict = channels4_verdict(good)
            report["ws"]["verdicts"][f"{key} channels4"] = c4_verdict
            print(f"Channels 4 application, shared-memory layer vs channels_redis, every {key}: {c4_verdict}")
    leftovers = [e for e in os.listdir("/dev/shm") if e.startswith(f"asgi_ipc.cmp{os.getpid()}_")]
    report["dev_shm_leftovers"] = leftovers
    if leftovers:
        print(f"\nLEFT IN /dev/shm: {leftovers}")
        exit_code = 1
    if not args.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"site-compare-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nJSON: {path.relative_to(REPO)}")
    return exit_code


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: every process this run started has been stopped", file=sys.stderr)
        sys.exit(130)
