"""Whole-site numbers for ``procman demo``: start-up time, RSS per process, home page requests/s.

Usage::

    python benchmarks/site_bench.py [--workers N] [--interfaces N] [--clients 8] [--seconds 10]

What it does, bounded in time at every step:

1. starts ``procman demo`` on a free port with its own layer prefix and a throw-away data
   directory, and measures the time from launching the command to the first ``200`` on ``/``;
2. reads the RSS of the supervisor and of every child (psutil);
3. runs a load of ``--clients`` keep-alive HTTP/1.1 connections, spread over load processes,
   each requesting ``/`` in a loop for ``--seconds``, and reports requests/s and failures;
4. stops the site with SIGTERM and checks that nothing is left in /dev/shm.

The load generator shares the machine's cores with the site, so the absolute requests/s is a
lower bound of what the site does with a client elsewhere.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_first_200(port: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"the demo did not answer within {timeout} s")


def load_process(port: int, connections: int, seconds: float, out: multiprocessing.Queue) -> None:
    """One load process: ``connections`` keep-alive connections served round-robin (one request in
    flight per connection, the next sent as soon as its answer arrived - via threads)."""
    import threading

    ok = failed = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        nonlocal ok, failed
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine_ok = mine_failed = 0
        while time.monotonic() < stop_at:
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    mine_ok += 1
                else:
                    mine_failed += 1
            except (OSError, http.client.HTTPException):
                mine_failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()
        with lock:
            ok += mine_ok
            failed += mine_failed

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    out.put((ok, failed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--interfaces", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8, help="keep-alive connections in total")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    port = free_port()
    prefix = f"bench{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PROCMAN_DEMO_PREFIX=prefix, PROCMAN_DEMO_DATA_DIR=f"{tmp}/data",
                   PROCMAN_CONTROL_DIR=f"{tmp}/ctl", NO_COLOR="1", PYTHONUNBUFFERED="1")
        started = time.monotonic()
        site = subprocess.Popen(
            [sys.executable, "-m", "procman", "demo", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--interfaces", str(args.interfaces)],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            first = wait_first_200(port, 120)
            startup = first - started
            time.sleep(1.0)  # let every child finish booting before measuring memory
            supervisor = psutil.Process(site.pid)
            rss = {"procman": supervisor.memory_info().rss}
            for child in supervisor.children():
                env_child = child.environ()
                rss[f"{env_child.get('PROCMAN_ROLE')}.{env_child.get('PROCMAN_INDEX')}"] = child.memory_info().rss

            queue: multiprocessing.Queue = multiprocessing.Queue()
            per = max(1, args.clients // args.load_processes)
            loaders = [multiprocessing.Process(target=load_process, args=(port, per, args.seconds, queue))
                       for _ in range(args.load_processes)]
            t0 = time.monotonic()
            for loader in loaders:
                loader.start()
            results = [queue.get(timeout=args.seconds + 60) for _ in loaders]
            elapsed = time.monotonic() - t0
            for loader in loaders:
                loader.join(30)
            ok = sum(r[0] for r in results)
            failed = sum(r[1] for r in results)
        finally:
            site.send_signal(signal.SIGTERM)
            try:
                site.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(site.pid, signal.SIGKILL)
                site.wait(10)
        leftover = os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")

    report = {
        "startup_to_first_request_s": round(startup, 3),
        "rss_mib": {name: round(value / 2**20, 1) for name, value in rss.items()},
        "home_page_requests_per_s": round(ok / elapsed, 1),
        "requests_ok": ok,
        "requests_failed": failed,
        "clients": per * args.load_processes,
        "seconds": round(elapsed, 2),
        "workers": args.workers,
        "interfaces": args.interfaces,
        "segment_left_in_dev_shm": leftover,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"start-up to first served request: {report['startup_to_first_request_s']} s")
        print("RSS: " + ", ".join(f"{k} {v} MiB" for k, v in report["rss_mib"].items()))
        print(f"home page: {report['home_page_requests_per_s']} requests/s ({ok} ok, {failed} failed, "
              f"{report['clients']} keep-alive clients, {report['seconds']} s, {args.workers} workers, "
              f"{args.interfaces} interface(s))")
        print(f"segment left in /dev/shm: {leftover}")
    return 1 if failed or leftover else 0


if __name__ == "__main__":
    sys.exit(main())
