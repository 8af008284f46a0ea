"""What an ordinary Django view costs through the worker: requests/s of one ``runworker``.

Usage (from the repository root)::

    python -m benchmarks worker [--quick] [--seconds 3] [--concurrency 1,16] [--threads 1] [--in-process-only]

Rows, all for the same "hello" view behind Django's default ``startproject`` middleware:

* ``django WSGIHandler, in-process`` - Django alone, no transport (the floor);
* ``django_glue AsgiHandler, in-process`` - our request/response translation, still no layer;
* ``django_glue worker dispatch over a layer, in-process`` - what ``runworker`` does per request:
  ``receive`` the ``http.request`` message from a real ``asgi_ipc`` segment, ``Worker.handle`` it
  (routing, consumer signals, the view consumer, Django) and ``send`` the reply. The budget
  (issue 16) is CPU x WSGI <= 1.5 on this row. The three in-process rows run in one child process,
  batch by batch in turn, so a change in the machine's load hits them alike and the ratio holds;
* ``layer + runworker, C in flight`` - this process plays the interface server: it sends
  ``http.request`` messages on a fresh ``asgi_ipc`` segment, keeping C requests in flight, and
  one real ``manage.py runworker`` process (``--threads``) answers them. requests/s counts complete
  responses; latency is send -> last response message.

CPU ms/request is the CPU time (user + system) the worker process (or the in-process loop) spent
per request (in-process: the median over batches of 100), and "requests/s per busy core" its
inverse: what one worker does when it has a core to itself, a steadier number than requests/s when
other work shares the machine. "CPU x WSGI" is the median over rounds of the row's batch CPU over
the WSGIHandler batch's run just before it.

Every loop is bounded by ``--seconds``; the worker is stopped and the segment removed at the end,
also on errors. Prints a Markdown table with the ``worker.dispatch_x_wsgi`` budget
(``benchmarks/budgets.py``) and writes ``benchmarks/results/worker-<UTC>.json``
(``benchmarks/record.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (the child processes are): make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from benchmarks import budgets, stats  # noqa: E402
from benchmarks.record import Record  # noqa: E402
LAYER_SIZES = {"message_memory": 16 << 20, "channels": 512, "groups": 64, "group_members": 256}

# --- the benchmarked project (used by the child processes) ------------------------------------

channel_routing: list[Any] = []  # nothing custom: http.request goes to the default view consumer


def hello(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("hello")


def configure_django(prefix: str) -> None:
    """Settings of a fresh ``startproject`` (middleware, apps) with one "hello" URL."""
    from django.conf import settings
    from django.urls import path

    global urlpatterns
    urlpatterns = [path("hello/", hello)]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="worker-bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
            "django.contrib.messages", "django_glue",
        ],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "asgi_ipc.IPCChannelLayer",
                "CONFIG": {"prefix": prefix, "create": False, "capacity": 1000, **LAYER_SIZES},
                "ROUTING": f"{__name__}.channel_routing",
            }
        },
        LOGGING_CONFIG=None,
    )
    import django

    django.setup()


def request_message(reply_channel: str) -> dict[str, Any]:
    return {
        "reply_channel": reply_channel, "http_version": "1.1", "method": "GET", "path": "/hello/",
        "query_string": b"", "root_path": "", "scheme": "http",
        "headers": [[b"host", b"localhost:8000"], [b"user-agent", b"worker-bench"], [b"accept", b"*/*"]],
        "body": b"", "client": ["127.0.0.1", 50000], "server": ["127.0.0.1", 8000],
    }


def serve(prefix: str, threads: int) -> None:
    """Child: run ``runworker`` for the benchmark project."""
    configure_django(prefix)
    from django.core.management import call_command

    call_command("runworker", "--threads", str(threads), verbosity=0)


WSGI_ENVIRON = {
    "REQUEST_METHOD": "GET", "PATH_INFO": "/hello/", "QUERY_STRING": "", "SCRIPT_NAME": "",
    "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "HTTP_HOST": "localhost:8000",
    "HTTP_USER_AGENT": "worker-bench", "HTTP_ACCEPT": "*/*", "wsgi.url_scheme": "http",
    "wsgi.multithread": True, "wsgi.multiprocess": True,
}  # the same request as request_message(), as a WSGI server would hand it over

#: Requests per batch of the in-process cases (a batch fits a channel's capacity).
BATCH = 100


def check_reply(status: int, body: bytes, case: str) -> None:
    if status != 200 or body != b"hello":
        raise RuntimeError(f"{case}: the view answered {status} {body[:80]!r}, not 200 b'hello'")


def wsgi_case() -> Any:
    """A batch of requests through Django's own ``WSGIHandler``; returns the batch's CPU seconds."""
    import io

    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def batch(n: int) -> float:
        cpu = time.process_time()
        for _ in range(n):
            response = handler(dict(WSGI_ENVIRON, **{"wsgi.input": io.BytesIO()}), start_response)
            body = b"".join(response)
            response.close()
        cpu = time.process_time() - cpu
        check_reply(int(statuses[-1].split()[0]), body, "WSGIHandler")
        statuses.clear()
        return cpu

    return batch, lambda: None


def handler_case() -> Any:
    """A batch through django_glue's ``AsgiHandler`` alone (no routing, no layer)."""
    from django_glue.handler import AsgiHandler
    from django_glue.message import Message

    handler = AsgiHandler()
    no_layer = object()  # the handler never touches the layer for a body-less request

    def batch(n: int) -> float:
        cpu = time.process_time()
        for _ in range(n):
            replies = list(handler(Message(request_message("bench!1"), "http.request", no_layer)))
        cpu = time.process_time() - cpu
        check_reply(replies[0]["status"], b"".join(r.get("content", b"") for r in replies), "AsgiHandler")
        return cpu

    return batch, lambda: None


def dispatch_case() -> Any:
    """A batch through the worker's dispatch against a real layer, as ``runworker`` runs it.

    The timed part is the worker's: ``receive`` of the ``http.request`` message, ``Worker.handle``
    (routing, consumer signals, the default view consumer, Django) and the ``send`` of the reply.
    This process also plays the interface server, untimed: it sends the batch's requests first
    and reads (and checks) every reply after.
    """
    from asgi_ipc import IPCChannelLayer

    from django_glue.asgi import ChannelLayerWrapper
    from django_glue.worker import Worker

    prefix = f"wbenchin{os.getpid()}_{uuid.uuid4().hex[:8]}"
    layer = IPCChannelLayer(prefix=prefix, create=True, capacity=1000, **LAYER_SIZES)
    wrapper = ChannelLayerWrapper(layer, "default", channel_routing)
    wrapper.router.check_default()
    worker = Worker(wrapper)
    channels = worker.channels()
    reply_prefix = "bench.in!"
    reply = reply_prefix + "1"
    request = request_message(reply)

    def batch(n: int) -> float:
        for _ in range(n):
            layer.send("http.request", request)
        cpu = time.process_time()
        for _ in range(n):
            channel, content = layer.receive(channels)
            worker.handle(channel, content)
        cpu = time.process_time() - cpu
        for _ in range(n):
            _, message = layer.receive([reply_prefix])
            if message is None:
                raise RuntimeError("the worker's dispatch sent no reply")
            check_reply(message["status"], message.get("content", b""), "worker dispatch")
        return cpu

    return batch, layer.close


IN_PROCESS_CASES = {"wsgi": wsgi_case, "asgi": handler_case, "dispatch": dispatch_case}
IN_PROCESS_LABELS = {
    "wsgi": "django WSGIHandler, in-process",
    "asgi": "django_glue AsgiHandler, in-process",
    "dispatch": "django_glue worker dispatch over a layer, in-process",
}


def run_in_process(kinds: list[str], seconds: float) -> None:
    """Child: run one batch of every case in turn (a round) until ``seconds`` have passed.

    Prints, per case, ``{"requests", "seconds", "cpu_ms_per_request", "rounds"}`` and, against the
    ``wsgi`` case when measured, ``x_wsgi_cpu``: the median over rounds of the two batches' CPU
    ratio. Cases of one round run back to back, so a burst of load from other processes lands
    on both sides of a ratio, and the median drops the rounds it hit unevenly.
    """
    configure_django("unused")
    cases = {kind: IN_PROCESS_CASES[kind]() for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    wall = dict.fromkeys(kinds, 0.0)
    try:
        for batch, _ in cases.values():
            batch(BATCH)  # warm up
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for kind, (batch, _) in cases.items():
                start = time.perf_counter()
                cpu[kind].append(batch(BATCH))
                wall[kind] += time.perf_counter() - start
    finally:
        for _, close in cases.values():
            close()
    result = {}
    for kind in kinds:
        rounds = len(cpu[kind])
        result[kind] = {
            "requests": rounds * BATCH, "seconds": wall[kind], "rounds": rounds,
            "cpu_ms_per_request": 1000 * stats.median(cpu[kind]) / BATCH,
        }
        if "wsgi" in cpu:
            result[kind]["x_wsgi_cpu"] = stats.median(
                [mine / floor for mine, floor in zip(cpu[kind], cpu["wsgi"])]
            )
    print(json.dumps(result))


# --- the driver (this process plays the interface server) --------------------------------------


def through_layer(layer: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight for ``seconds``; returns rps and latencies."""
    prefix = f"bench.c{concurrency}!"
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    serial = 0

    def send_one() -> None:
        nonlocal serial
        serial += 1
        name = f"{prefix}{serial}"
        sent_at[name] = time.perf_counter()
        layer.send("http.request", request_message(name))

    for _ in range(concurrency):
        send_one()
    start = time.perf_counter()
    deadline = start + seconds
    errors = 0
    while time.perf_counter() < deadline:
        channel, message = layer.receive([prefix], block=True)
        if channel is None:
            continue
        if message.get("status", 200) != 200:
            errors += 1
        if message.get("more_content", False):
            continue
        latencies.append(time.perf_counter() - sent_at.pop(channel))
        send_one()
    elapsed = time.perf_counter() - start
    drain_deadline = time.monotonic() + 10  # let the in-flight ones finish so the worker idles
    while sent_at and time.monotonic() < drain_deadline:
        channel, message = layer.receive([prefix], block=True)
        if channel is not None and not message.get("more_content", False):
            sent_at.pop(channel, None)
    ms = [1000 * latency for latency in latencies]
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": stats.percentile(ms, 50),
        "p99_ms": stats.percentile(ms, 99),
        "errors": errors,
    }


def child_json(args: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    if result.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the worker benchmark (or, with a hidden option, one of its child processes)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="measuring time per row (default 3; --quick 0.5)")
    parser.add_argument("--quick", action="store_true", help="short run: a smoke test, not a measurement")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    parser.add_argument("--concurrency", default="1,16", help="requests in flight, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="runworker --threads")
    parser.add_argument("--serve", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument(
        "--in-process-only", action="store_true",
        help="only the in-process rows (no runworker process, no concurrency levels)",
    )
    parser.add_argument("--in-process", metavar="KINDS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.5 if args.quick else 3.0
    if args.serve:
        serve(args.serve, args.threads)
        return 0
    if args.in_process:
        kinds = args.in_process.split(",")
        unknown = sorted(set(kinds) - set(IN_PROCESS_CASES))
        if unknown:
            parser.error(f"--in-process: unknown case(s) {unknown}; known: {sorted(IN_PROCESS_CASES)}")
        run_in_process(kinds, args.seconds)
        return 0
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency must be comma-separated integers, got {args.concurrency!r}")
    if args.seconds <= 0 or any(c < 1 for c in levels):
        parser.error("--seconds and every --concurrency must be positive")

    record = Record("worker", argv if argv is not None else sys.argv[1:], args.quick)
    print(record.headline(), flush=True)
    rows: list[dict[str, Any]] = []
    measured = child_json(["--in-process", ",".join(IN_PROCESS_LABELS), "--seconds", str(args.seconds)],
                          args.seconds + 60)
    for kind, label in IN_PROCESS_LABELS.items():
        data = measured[kind]
        rows.append({"row": label, "requests_per_second": data["requests"] / data["seconds"], **data})
    if not args.in_process_only:
        rows += through_runworker(levels, args.threads, args.seconds)
    report(rows, args, record)
    return 0


def through_runworker(levels: list[int], threads: int, seconds: float) -> list[dict[str, Any]]:
    """The rows of one real ``runworker`` process answering over a fresh segment."""
    sys.path.insert(0, str(REPO))
    import psutil
    from asgi_ipc import IPCChannelLayer

    rows: list[dict[str, Any]] = []
    prefix = f"wbench{os.getpid()}_{uuid.uuid4().hex[:8]}"
    layer = IPCChannelLayer(prefix=prefix, create=True, capacity=1000, **LAYER_SIZES)
    worker = None
    try:
        worker = subprocess.Popen(
            [sys.executable, __file__, "--serve", prefix, "--threads", str(threads)], cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
        )
        warm = through_layer(layer, 1, 1.0)  # also waits for the worker to come up
        if warm["requests"] == 0:
            raise RuntimeError("the worker answered nothing within the warm-up second")
        worker_process = psutil.Process(worker.pid)
        for concurrency in levels:
            before = worker_process.cpu_times()
            data = through_layer(layer, concurrency, seconds)
            after = worker_process.cpu_times()
            cpu = (after.user + after.system) - (before.user + before.system)
            data["cpu_ms_per_request"] = 1000 * cpu / max(data["requests"], 1)
            data["worker_cpu_share"] = cpu / data["seconds"]
            rows.append({"row": f"layer + runworker (--threads {threads}), {concurrency} in flight", **data})
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
        layer.close()
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace, record: Record) -> None:
    """Print the Markdown table and the budget, and write the JSON result."""
    print("| row | requests/s | p50 ms | p99 ms | CPU ms/request | requests/s per busy core | CPU x WSGI |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        p50 = f"{row['p50_ms']:.2f}" if row.get("p50_ms") is not None else "-"
        p99 = f"{row['p99_ms']:.2f}" if row.get("p99_ms") is not None else "-"
        cpu = row["cpu_ms_per_request"]
        ratio = f"{row['x_wsgi_cpu']:.2f}" if "x_wsgi_cpu" in row else "-"
        print(f"| {row['row']} | {row['requests_per_second']:,.0f} | {p50} | {p99} | {cpu:.3f} "
              f"| {1000 / cpu:,.0f} | {ratio} |")
    dispatch = next((r for r in rows if r["row"] == IN_PROCESS_LABELS["dispatch"]), {})
    check = budgets.check("worker.dispatch_x_wsgi", dispatch.get("x_wsgi_cpu"),
                          note="median over rounds of the dispatch batch's CPU over the WSGIHandler batch's")
    measured = "-" if check["measured"] is None else f"{check['measured']:.2f}x"
    print(f"\nbudget {check['id']} ({check['budget']}): {measured} -> {check['verdict']}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; CPU ms/request is the "
          "worker's (or in-process) CPU time per request, steadier than requests/s on a busy machine")
    if not args.no_json:
        settings = {k: v for k, v in vars(args).items() if k not in ("serve", "in_process")}
        print(f"\nJSON: {record.write({'rows': rows}, settings, [check])}")


if __name__ == "__main__":
    sys.exit(main())
