"""Requests/s and WebSocket messages/s of ONE interface process with an echo consumer.

Run from the repository root::

    python -m benchmarks interface                  # 5 s per case
    python -m benchmarks interface --quick          # smoke run: 1 s per case, 200 members
    python -m benchmarks interface --seconds 2 --connections 16

Processes: the interface (``python -m procman.interface``, socket passed with ``--fd``, access log
off), one echo consumer that uses the layer directly (answers ``http.request`` with a 5-byte body,
accepts every ``websocket.connect``, echoes every ``websocket.receive``), and one load client
process (keep-alive GETs through the one load generator, ``benchmarks/http_load.py``, or 64-byte
WebSocket text messages, one outstanding per connection, over raw sockets in one selector loop). Everything shares this machine's cores, so the table also shows
the interface's and the consumer's CPU share: when both are well below 100 %, the machine (other
processes, scheduling latency) limits the numbers, not the interface. Each measuring loop is bounded
by ``--seconds`` after a ``--warmup`` (default 0.5 s) not counted.

The broadcast case: ``--members`` WebSockets (one client process) join one group; a broadcaster
process sends one ``send_group`` every ``--interval`` s for ``--seconds``. It reports the delivery
latency (stamp in the frame to arrival; p50/p99), frames lost, and the interface's CPU per
delivered frame over the broadcasting time.

Prints a table with the ``interface.*`` budgets of ``benchmarks/budgets.py`` (the broadcast ones
only for their shape: 1,000 members, every 50 ms) and writes
``benchmarks/results/interface-<UTC time>.json`` (``benchmarks/record.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (the role processes are): make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import budgets, stats  # noqa: E402
from benchmarks.cpu_time import process_cpu_seconds  # noqa: E402
from benchmarks.http_load import run_load  # noqa: E402
from benchmarks.record import Record  # noqa: E402

LAYER_SIZES = {"message_memory": 64 * 2**20, "channels": 1024, "groups": 64, "group_members": 4096}
#: The group the broadcast case's WebSockets join (the consumer adds a socket opened on /group).
GROUP = "bench"
RESULTS = Path(__file__).resolve().parent / "results"


def _layer(prefix: str, create: bool) -> Any:
    from asgi_ipc import IPCChannelLayer

    return IPCChannelLayer(prefix=prefix, create=create, capacity=1000, receive_timeout=0.5, **LAYER_SIZES)


# -- roles (each runs in its own process) ------------------------------------------------------------


def role_consumer(prefix: str) -> None:
    """Echo application: reads the layer directly until SIGTERM."""
    layer = _layer(prefix, create=False)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    channels = ["http.request", "websocket.connect", "websocket.receive"]
    response = {"status": 200, "headers": [[b"content-type", b"text/plain"]], "content": b"hello"}
    while running[0]:
        channel, message = layer.receive(channels, block=True)
        if channel is None:
            continue
        reply = message["reply_channel"]
        while True:
            try:
                if channel == "http.request":
                    layer.send(reply, response)
                elif channel == "websocket.connect":
                    if message["path"] == "/group":
                        layer.group_add(GROUP, reply)
                    layer.send(reply, {"accept": True})
                elif "text" in message:
                    layer.send(reply, {"text": message["text"]})
                else:
                    layer.send(reply, {"bytes": message["bytes"]})
                break
            except layer.ChannelFull:
                time.sleep(0.001)
    layer.close()


def role_http_client(port: int, connections: int, seconds: float, warmup: float) -> None:
    """Keep-alive GETs on ``connections`` sockets, one outstanding request each, after ``warmup``
    seconds not counted (the one load generator, ``benchmarks.http_load.run_load``)."""
    result = run_load(port, connections, time.monotonic(), warmup, seconds, path="/bench")
    if result["failures"] or result["bad_status"]:
        raise SystemExit(f"HTTP load failed: {result['failures']} failures {result['errors']}, "
                         f"{result['bad_status']} non-200 answers")
    latencies = [ms / 1000 for ms in result["latencies_ms"]]
    print(json.dumps(_summary(result["ok"], seconds, latencies)))


def role_ws_client(port: int, connections: int, seconds: float, warmup: float) -> None:
    """``connections`` WebSockets, each sending a 64-byte text message and waiting for its echo;
    the first ``warmup`` seconds are not counted.

    Frames are built by hand over non-blocking sockets (one selector loop), so the client costs
    little CPU and the number reflects the server side rather than a client library.
    """
    import base64

    payload = b"x" * 64
    mask = b"\x11\x22\x33\x44"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame = b"\x81" + bytes([0x80 | len(payload)]) + mask + masked
    echo_size = 2 + len(payload)  # server frames are unmasked: header + payload
    selector = selectors.DefaultSelector()
    state: dict[socket.socket, list] = {}
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /bench HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                raise SystemExit("handshake refused")
            reply += data
        if not reply.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake failed: {reply[:80]!r}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        state[sock] = [reply.partition(b"\r\n\r\n")[2], time.perf_counter()]
        sock.sendall(frame)
    warmup_end = time.perf_counter() + warmup
    end = warmup_end + seconds
    count = 0
    latencies: list[float] = []
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for key_, _ in selector.select(timeout=max(0.0, end - now)):
            sock = key_.fileobj
            data = sock.recv(65536)
            if not data:
                raise SystemExit("server closed a WebSocket")
            buffer = state[sock][0] + data
            while len(buffer) >= echo_size:
                if buffer[0] != 0x81:
                    raise SystemExit(f"unexpected frame from the server: {buffer[:8]!r}")
                buffer = buffer[echo_size:]
                done = time.perf_counter()
                if done >= warmup_end:
                    count += 1
                    latencies.append(done - state[sock][1])
                state[sock][1] = done
                sock.sendall(frame)
            state[sock][0] = buffer
    latencies.sort()
    print(json.dumps(_summary(count, seconds, latencies)))


def role_ws_group_client(port: int, connections: int, seconds: float) -> None:
    """``connections`` WebSockets on /group (members of :data:`GROUP`), reading broadcasts.

    Prints ``ready`` once every handshake is done, then reads until every socket has seen the
    broadcaster's ``end`` frame (bounded by ``seconds`` + 30 s). Each broadcast's text is
    ``<seq> <time.time() at sending>``: the delivery latency of each frame is its arrival time
    minus that stamp.
    """
    import base64

    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(
            b"GET /group HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
    handshaking = set(buffers)
    deadline = time.monotonic() + 60 + connections * 0.05
    while handshaking:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(handshaking)} handshakes unanswered")
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            if sock not in handshaking:
                continue
            data = sock.recv(4096)
            if not data:
                raise SystemExit("handshake refused")
            buffers[sock] += data
            head, sep, rest = buffers[sock].partition(b"\r\n\r\n")
            if sep:
                if not head.startswith(b"HTTP/1.1 101"):
                    raise SystemExit(f"handshake failed: {head[:80]!r}")
                buffers[sock] = rest
                handshaking.discard(sock)
    print("ready", flush=True)
    latencies: list[float] = []
    count = 0
    open_ = set(buffers)
    end = time.monotonic() + seconds + 30
    while open_ and time.monotonic() < end:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            data = sock.recv(65536)
            if not data:
                raise SystemExit("server closed a WebSocket")
            arrived = time.time()
            buffer = buffers[sock] + data
            while len(buffer) >= 2:
                if buffer[0] != 0x81 or buffer[1] > 125:
                    raise SystemExit(f"unexpected frame from the server: {buffer[:8]!r}")
                size = 2 + buffer[1]
                if len(buffer) < size:
                    break
                text = buffer[2:size]
                buffer = buffer[size:]
                if text == b"end":
                    open_.discard(sock)
                    continue
                count += 1
                latencies.append(arrived - float(text.split()[1]))
            buffers[sock] = buffer
    latencies.sort()
    print(json.dumps({**_summary(count, seconds, latencies), "unfinished_sockets": len(open_)}), flush=True)


def role_broadcaster(prefix: str, seconds: float, interval: float) -> None:
    """One ``send_group`` to :data:`GROUP` every ``interval`` s for ``seconds``, then ``end``."""
    layer = _layer(prefix, create=False)
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        layer.send_group(GROUP, {"text": f"{sent} {time.time()!r}"})
        sent += 1
        time.sleep(max(0.0, start + sent * interval - time.monotonic()))
    layer.send_group(GROUP, {"text": "end"})
    layer.close()
    print(json.dumps({"broadcasts": sent}), flush=True)


def _broadcast_case(
    env: dict[str, str], port: int, prefix: str, interface: subprocess.Popen, members: int,
    seconds: float, interval: float,
) -> dict[str, Any]:
    """The broadcast row: delivery latency, frames lost, interface CPU per delivered frame."""
    client = _child(
        "--role", "ws-group-client", "--port", str(port), "--connections", str(members),
        "--seconds", str(seconds), env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        ready = client.stdout.readline()
        if ready.strip() != "ready":
            raise SystemExit(f"the broadcast client did not connect its sockets: {ready!r}")
        cpu_before = process_cpu_seconds(interface.pid)
        sender = _child(
            "--role", "broadcaster", "--prefix", prefix, "--seconds", str(seconds),
            "--interval", str(interval), env=env, stdout=subprocess.PIPE, text=True,
        )
        sent_out, _ = sender.communicate(timeout=seconds + 60)
        out, _ = client.communicate(timeout=seconds + 60)
        cpu = process_cpu_seconds(interface.pid) - cpu_before
    finally:
        _stop(client)
    if client.returncode != 0 or sender.returncode != 0:
        raise SystemExit("the broadcast case failed")
    row = json.loads(out)
    broadcasts = json.loads(sent_out)["broadcasts"]
    row.update(
        connections=members,
        broadcasts=broadcasts,
        interval_s=interval,
        lost=broadcasts * members - row["count"],
        interface_cpu_us_per_frame=cpu / row["count"] * 1e6 if row["count"] else 0.0,
    )
    return row


def _summary(count: int, seconds: float, latencies: list[float]) -> dict[str, float | None]:
    """Rate and p50/p99 in ms of ``latencies`` (seconds)."""
    ms = [s * 1000 for s in latencies]
    return {"per_second": count / seconds, "count": count, "p50_ms": stats.percentile(ms, 50),
            "p99_ms": stats.percentile(ms, 99)}


# -- the parent: start everything, run the clients, report -------------------------------------------


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    """One request through interface, layer and consumer, so start-up is not measured."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(b"GET /ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                raise SystemExit(f"no answer from the interface during start-up: {reply!r}")
            reply += data
        if not reply.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected start-up answer: {reply[:100]!r}")
    finally:
        sock.close()


def _child(*args: str, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], **kwargs)


def _stop(*procs: subprocess.Popen) -> None:
    """SIGTERM every process at once (so they stop side by side), then wait for each, SIGKILL
    after 10 s."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run(
    seconds: float, connections: int, ws_connections: int, members: int = 1000, interval: float = 0.05,
    warmup: float = 0.5,
) -> dict[str, Any]:
    prefix = f"bench_ifc_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    layer = _layer(prefix, create=True)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "bench_layer.py"
        module.write_text(
            "from asgi_ipc import IPCChannelLayer\n"
            f"channel_layer = IPCChannelLayer(prefix={prefix!r}, create=False, capacity=1000, "
            f"**{LAYER_SIZES!r})\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(Path(__file__).resolve().parents[1])]))
        try:
            interface = subprocess.Popen(
                [sys.executable, "-m", "procman.interface", "bench_layer:channel_layer",
                 "--fd", str(listener.fileno()), "-v", "0", "--ping-interval", "0"],
                pass_fds=(listener.fileno(),), env=env, cwd=tmp,
            )
            procs.append(interface)
            consumer = _child("--role", "consumer", "--prefix", prefix, env=env)
            procs.append(consumer)
            _wait_ready(port)
            results: dict[str, Any] = {}
            for name, role, count in (
                ("http_keepalive", "http-client", connections),
                ("websocket_echo", "ws-client", ws_connections),
            ):
                cpu_before = (process_cpu_seconds(interface.pid), process_cpu_seconds(consumer.pid))
                wall_before = time.perf_counter()
                client = _child(
                    "--role", role, "--port", str(port), "--connections", str(count),
                    "--seconds", str(seconds), "--warmup", str(warmup), env=env, stdout=subprocess.PIPE, text=True,
                )
                out, _ = client.communicate(timeout=seconds + warmup + 60)
                if client.returncode != 0:
                    raise SystemExit(f"{role} failed with exit code {client.returncode}")
                wall = time.perf_counter() - wall_before
                row = {**json.loads(out), "connections": count}
                # CPU shares over the whole client run (connect + warm-up + measuring time):
                # how busy the interface and the consumer were, and so which one limits.
                row["interface_cpu_share"] = (process_cpu_seconds(interface.pid) - cpu_before[0]) / wall
                row["consumer_cpu_share"] = (process_cpu_seconds(consumer.pid) - cpu_before[1]) / wall
                # What one fully busy interface core would do at this cost per message (the CPU
                # share also covers connecting and warm-up, so this is a slight underestimate).
                share = row["interface_cpu_share"]
                row["per_interface_cpu_second"] = row["per_second"] / share if share > 0 else 0.0
                results[name] = row
            if members:
                results["websocket_broadcast"] = _broadcast_case(
                    env, port, prefix, interface, members, seconds, interval
                )
        finally:
            _stop(*procs)
            listener.close()
            layer.close()
    return results


def budget_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``interface.*`` budgets for ``results`` (the broadcast ones only for their shape)."""
    http = results.get("http_keepalive", {})
    per_cpu_s = http.get("per_interface_cpu_second")
    checks = [budgets.check("interface.cpu_per_request", 1e6 / per_cpu_s if per_cpu_s else None,
                            note=f"{http.get('connections', '-')} keep-alive connections")]
    row = results.get("websocket_broadcast")
    if row:
        shape = row["connections"] == 1000 and abs(row["interval_s"] - 0.05) < 1e-9
        note = f"{row['connections']} members, every {row['interval_s'] * 1000:g} ms" + (
            "" if shape else " (not the budget's shape: 1,000 members every 50 ms; no verdict)")
        checks.append(budgets.check("interface.cpu_per_frame", row["interface_cpu_us_per_frame"] if shape else None,
                                    note=note))
        checks.append(budgets.check("interface.broadcast_p99", row["p99_ms"] if shape else None, row["lost"] == 0,
                                    note=f"{note}; {row['lost']} lost"))
    return checks


def main(argv: list[str] | None = None) -> int:
    """Run the interface benchmark (or, with the hidden ``--role``, one of its processes)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks interface", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="measuring time per case (default 5; --quick 1)")
    parser.add_argument("--connections", type=int, default=8, help="HTTP keep-alive connections")
    parser.add_argument("--ws-connections", type=int, default=8, help="WebSocket connections")
    parser.add_argument(
        "--members", type=int, help="WebSockets in the broadcast group (0: no broadcast case; default 1000; --quick 200)"
    )
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between broadcasts")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds of HTTP and WebSocket echo load not counted (default 0.5)")
    parser.add_argument("--quick", action="store_true", help="short run: a smoke test, not a measurement")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    roles = {
        "consumer": lambda: role_consumer(args.prefix),
        "http-client": lambda: role_http_client(args.port, args.connections, args.seconds, args.warmup),
        "ws-client": lambda: role_ws_client(args.port, args.connections, args.seconds, args.warmup),
        "ws-group-client": lambda: role_ws_group_client(args.port, args.connections, args.seconds),
        "broadcaster": lambda: role_broadcaster(args.prefix, args.seconds, args.interval),
    }
    parser.add_argument("--role", choices=tuple(roles), help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 5.0
    if args.members is None:
        args.members = 200 if args.quick else 1000
    if args.role:
        roles[args.role]()
        return 0
    if args.seconds <= 0 or args.connections < 1 or args.ws_connections < 1 or args.members < 0 or args.interval <= 0 \
            or args.warmup < 0:
        parser.error("--seconds, --connections, --ws-connections and --interval must be positive, --members and "
                     "--warmup >= 0")
    record = Record("interface", argv if argv is not None else sys.argv[1:], args.quick)
    print(record.headline(), flush=True)
    results = run(args.seconds, args.connections, args.ws_connections, args.members, args.interval, args.warmup)
    print("one interface process + one echo consumer + one client process (other work on the machine skews it)")
    print(
        f"{'case':<16} {'conns':>5} {'per second':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'ifc CPU':>8} {'app CPU':>8} {'per ifc CPU-s':>14}"
    )
    labels = {"http_keepalive": "HTTP requests", "websocket_echo": "WS messages"}
    for name, row in results.items():
        if name == "websocket_broadcast":
            continue
        print(
            f"{labels[name]:<16} {row['connections']:>5} {row['per_second']:>12,.0f} "
            f"{row['p50_ms'] or 0:>8.2f} {row['p99_ms'] or 0:>8.2f} "
            f"{row['interface_cpu_share']:>8.0%} {row['consumer_cpu_share']:>8.0%} "
            f"{row['per_interface_cpu_second']:>14,.0f}"
        )
    row = results.get("websocket_broadcast")
    if row:
        print(
            f"WS broadcast: {row['broadcasts']} broadcasts every {row['interval_s'] * 1000:.0f} ms to "
            f"{row['connections']} members: p50 {row['p50_ms'] or 0:.1f} ms, p99 {row['p99_ms'] or 0:.1f} ms, "
            f"{row['lost']} frames lost, {row['interface_cpu_us_per_frame']:.1f} us interface CPU "
            "per delivered frame"
        )
    checks = budget_checks(results)
    print("\n".join(f"budget {c['id']} ({c['budget']}): {c['measured'] if c['measured'] is None else round(c['measured'], 1)}"
                    f" {c['unit']} -> {c['verdict']} {c['note']}" for c in checks))
    if not args.no_json:
        settings = {k: v for k, v in vars(args).items() if k not in ("role", "prefix", "port")}
        print(f"JSON: {record.write(results, settings, checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
