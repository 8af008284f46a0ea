"""Whole-site numbers for ``procman demo`` (``python -m benchmarks site``): start-up time, PSS per
process, home page requests/s.

Usage::

    python -m benchmarks site [--quick] [--workers N] [--interfaces N] [--connections 8] [--seconds 10]

What it does, bounded in time at every step:

1. starts ``procman demo`` on a free port with its own layer prefix and a throw-away data
   directory, and measures the time from launching the command to the first ``200`` on ``/``;
2. sends 200 more requests, waits 1 s, and reads the PSS of the supervisor and of every child
   (``/proc/PID/smaps_rollup``; ``benchmarks/cpu_time.py``);
3. runs the one load generator (``benchmarks/http_load.py``): ``--connections`` keep-alive HTTP/1.1
   connections over ``--load-processes`` processes requesting ``/`` for ``--seconds`` after a
   warm-up, and reports requests/s, p50/p99 latency, failures and the site's CPU per request;
4. stops the site with SIGTERM and checks that nothing is left in /dev/shm.

The load generator shares the machine's cores with the site, so the absolute requests/s is a
lower bound of what the site does with a client elsewhere. ``free_port``, ``load_process`` and
``wait_first_200`` are re-exported from ``benchmarks.http_load`` for ``cluster_bench``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import stats  # noqa: E402
from benchmarks.cpu_time import tree_pss_bytes  # noqa: E402
from benchmarks.http_load import free_port, load_process, run_load_processes, wait_first_200  # noqa: E402
from benchmarks.record import Record  # noqa: E402
from benchmarks.servers import Running, spawn  # noqa: E402

__all__ = ["free_port", "load_process", "main", "wait_first_200"]

REPO = Path(__file__).resolve().parents[1]
IDLE_REQUESTS = 200


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--interfaces", type=int, default=1)
    parser.add_argument("--connections", "--clients", type=int, default=8, help="keep-alive connections in total")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--warmup", type=float, help="seconds of load not counted (default 1; --quick 0.5)")
    parser.add_argument("--seconds", type=float, help="measured seconds (default 10; --quick 2)")
    parser.add_argument("--quick", action="store_true", help="short run: a smoke test, not a measurement")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if min(args.workers, args.interfaces, args.connections, args.load_processes) < 1 or args.seconds <= 0 \
            or args.warmup < 0:
        parser.error("--workers, --interfaces, --connections, --load-processes and --seconds must be positive")
    return args


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _roles(supervisor: psutil.Process) -> dict[int, str]:
    names = {supervisor.pid: "procman"}
    for child in supervisor.children(recursive=True):
        try:
            env = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        names[child.pid] = f"{env.get('PROCMAN_ROLE', 'child')}.{env.get('PROCMAN_INDEX', child.pid)}"
    return names


def main(argv: list[str] | None = None) -> int:
    """Run the site benchmark; exit 0 when every request succeeded and nothing was left behind."""
    args = _parse(argv)
    record = Record("site", argv if argv is not None else sys.argv[1:], args.quick)
    print(record.headline(), flush=True)
    port = free_port()
    prefix = f"bench{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PROCMAN_DEMO_PREFIX=prefix, PROCMAN_DEMO_DATA_DIR=f"{tmp}/data",
                   PROCMAN_CONTROL_DIR=f"{tmp}/ctl", NO_COLOR="1", PYTHONUNBUFFERED="1")
        started = time.monotonic()
        site = Running("procman demo", port, Path(os.devnull), [spawn(
            [sys.executable, "-m", "procman", "demo", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--interfaces", str(args.interfaces)], env, REPO, subprocess.DEVNULL)],
            prefix)
        try:
            startup = wait_first_200(port, 120) - started
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(IDLE_REQUESTS):
                conn.request("GET", "/")
                conn.getresponse().read()
            conn.close()
            time.sleep(1.0)  # every child has booted and the requests are done
            leader = site.procs[0].pid
            names = _roles(psutil.Process(leader))
            pss = {names.get(pid, str(pid)): round(value / 2**20, 1)
                   for pid, value in tree_pss_bytes([leader]).items()}
            load = run_load_processes(port, args.connections, args.load_processes, args.warmup, args.seconds,
                                      window_probe=site.cpu_seconds)
        finally:
            site.stop(timeout=60)
        leftover = os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")

    cpu = load["probe"][1] - load["probe"][0]
    results = {
        "startup_to_first_request_s": round(startup, 3),
        "pss_idle_mib": pss,
        "pss_idle_total_mib": round(sum(pss.values()), 1),
        "home_page_requests_per_s": load["requests_per_s"],
        "p50_ms": stats.percentile(load["latencies_ms"], 50),
        "p99_ms": stats.percentile(load["latencies_ms"], 99),
        "site_cpu_us_per_request": round(cpu / load["ok"] * 1e6, 1) if load["ok"] else None,
        "requests_ok": load["ok"],
        "requests_failed": load["failures"] + load["bad_status"],
        "errors": load["errors"],
        "connections": load["connections"],
        "seconds": args.seconds,
        "workers": args.workers,
        "interfaces": args.interfaces,
        "segment_left_in_dev_shm": leftover,
    }
    print(f"start-up to first served request: {results['startup_to_first_request_s']} s")
    print(f"PSS idle after {IDLE_REQUESTS} requests: " + ", ".join(f"{k} {v} MiB" for k, v in pss.items())
          + f"; total {results['pss_idle_total_mib']} MiB")
    print(f"home page: {results['home_page_requests_per_s']:,.0f} requests/s, p50 {_ms(results['p50_ms'])} ms, "
          f"p99 {_ms(results['p99_ms'])} ms, {results['site_cpu_us_per_request']} us of site CPU per request "
          f"({load['ok']} ok, {results['requests_failed']} failed, {load['connections']} keep-alive connections, "
          f"{args.seconds:g} s, {args.workers} workers, {args.interfaces} interface(s))")
    print(f"segment left in /dev/shm: {leftover}")
    if not args.no_json:
        print(f"JSON: {record.write(results, vars(args))}")
    return 1 if results["requests_failed"] or leftover else 0


if __name__ == "__main__":
    sys.exit(main())
