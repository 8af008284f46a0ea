"""Hello-view requests/s of one simulated machine with and without ``procman run --cluster``.

Usage::

    python benchmarks/cluster_bench.py [--seconds 5] [--rounds 2] [--clients 8] [--workers 1]

Starts a real ``redis-server`` (``benchmarks/redis_server.py``), then, alternating (and swapping
which goes first every round), the test site
``tests/procman/sites/hellosite`` under ``procman run`` without and with ``--cluster`` (each run its
own layer prefix and port), loads ``/`` with keep-alive HTTP/1.1 clients (``site_bench.load_process``)
and prints the best and the median requests/s of each and their ratios (budget: >= 0.9x, since requests stay in
shared memory), plus the Redis commands the cluster runs issued during the load (zero on the
request path; the link's idle PING/BLPOP/SMEMBERS remain). Every process is stopped, and nothing
is left in /dev/shm. The load shares the cores with the site: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.redis_server import RedisServer  # noqa: E402
from benchmarks.site_bench import free_port, load_process, wait_first_200  # noqa: E402

HELLOSITE = REPO / "tests" / "procman" / "sites" / "hellosite"


def commandstats(port: int) -> dict[str, int]:
    import redis

    client = redis.Redis(port=port)
    try:
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}
    finally:
        client.close()


def one_run(cluster_url: str | None, args: argparse.Namespace) -> float:
    """Start the site, load it for ``args.seconds``, stop it; returns requests/s."""
    prefix = f"cb{os.getpid()}_{uuid.uuid4().hex[:6]}"
    port = free_port()
    argv = [sys.executable, "-m", "procman", "run", "--bind", f"127.0.0.1:{port}", "--workers",
            str(args.workers), "--no-color"]
    if cluster_url:
        argv += ["--cluster", cluster_url, "--cluster-name", prefix, "--cluster-shared", "thumbnail"]
    env = dict(os.environ, HELLOSITE_PREFIX=prefix, PYTHONPATH=str(REPO))
    site = subprocess.Popen(argv, cwd=HELLOSITE, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_first_200(port, 60)
        queue: multiprocessing.Queue = multiprocessing.Queue()
        loader = multiprocessing.Process(target=load_process, args=(port, args.clients, args.seconds, queue))
        loader.start()
        ok, failed = queue.get(timeout=args.seconds + 60)
        loader.join(10)
        if failed:
            print(f"  {failed} failed requests", file=sys.stderr)
        return ok / args.seconds
    finally:
        site.send_signal(signal.SIGTERM)
        try:
            site.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(site.pid, signal.SIGKILL)
            site.wait(10)
        if os.path.exists(f"/dev/shm/asgi_ipc.{prefix}"):
            print(f"  warning: /dev/shm/asgi_ipc.{prefix} left behind", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {"without --cluster": [], "with --cluster": []}
    with RedisServer() as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        for round_ in range(args.rounds):
            modes = [("without --cluster", None), ("with --cluster", url)]
            for name, cluster in modes if round_ % 2 == 0 else modes[::-1]:  # neither always goes first
                before = commandstats(server.port)
                rate = one_run(cluster, args)
                after = commandstats(server.port)
                busy = {k: after[k] - before.get(k, 0) for k in after
                        if after[k] != before.get(k, 0) and k not in ("info", "hello", "client|setinfo")}
                rates[name].append(rate)
                print(f"round {round_ + 1}: {name:18} {rate:8.0f} req/s   Redis commands meanwhile: {busy or 'none'}")
    for label, pick in (("best", max), ("median", statistics.median)):
        without, with_ = pick(rates["without --cluster"]), pick(rates["with --cluster"])
        ratio = with_ / without if without else float("nan")
        print(f"{label}: without {without:.0f} req/s, with {with_:.0f} req/s, ratio {ratio:.2f}x (budget >= 0.9x)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
