"""The one HTTP keep-alive load generator of the benchmarks, and the probes that wait for a server.

``run_load`` (one load process) opens ``connections`` HTTP/1.1 keep-alive connections, sends
``GET <path>`` on each, and sends the next request on a connection as soon as its response is
complete (one request in flight per connection), all from one ``selectors`` loop so the client costs
as little CPU as possible (the fastest of the clients the suites had). Responses completed during
the warm-up are not counted; every response completed in the measured window is counted with its
latency (send to last byte). A response saying ``Connection: close`` (gunicorn's sync workers do
not keep connections alive) is counted, and the next request goes on a new connection; a
connection that fails or is closed by the server without saying so counts one failure and is
reopened. Every loop ends at its deadline. ``run_load_processes`` runs it in several spawned
processes that start together and merges their counts; ``load_process`` is the simple form
(``(ok, failed)`` on a queue) ``cluster_bench`` uses.

``parse_responses`` is the pure response parser (Content-Length and chunked bodies), tested alone.
``free_port``, ``http_ok`` and ``wait_first_200`` find a port and wait for a server to answer.
"""

from __future__ import annotations

import errno
import http.client
import multiprocessing
import selectors
import socket
import time
from typing import Any, Callable

from benchmarks.procs import collect_results, stop_processes
from benchmarks.redis_server import free_loopback_port as free_port  # one home; named here for HTTP callers

__all__ = ["ResponseError", "free_port", "http_ok", "load_process", "parse_responses", "request_bytes",
           "run_load", "run_load_processes", "wait_first_200"]


class ResponseError(ValueError):
    """The bytes are not an HTTP/1.1 response this client can delimit."""


def _chunked_end(buf: bytes, start: int) -> int | None:
    """Index just past the end of the chunked body beginning at ``start``; None if incomplete."""
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = buf[pos:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ResponseError(f"bad chunk size line {buf[pos:line_end][:40]!r}") from None
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", line_end)
            if buf[line_end:line_end + 4] == b"\r\n\r\n":
                return line_end + 4
            return None if trailer_end < 0 else trailer_end + 4
        pos = line_end + 2 + size + 2
        if pos > len(buf):
            return None


def parse_responses(buf: bytes) -> tuple[list[int], int]:
    """Complete responses at the start of ``buf``: ``(status codes, bytes they take)``.

    A response must be delimited by ``Content-Length`` or ``Transfer-Encoding: chunked`` (or be a
    1xx/204/304 without a body); anything else raises ``ResponseError`` (a keep-alive client cannot
    tell where such a response ends)."""
    responses, used = parse_responses_detail(buf)
    return [status for status, _ in responses], used


def parse_responses_detail(buf: bytes) -> tuple[list[tuple[int, bool]], int]:
    """As :func:`parse_responses`, with each status paired with whether the server closes the
    connection after it (``Connection: close``, or HTTP/1.0 without ``keep-alive``)."""
    statuses: list[tuple[int, bool]] = []
    pos = 0
    while True:
        head_end = buf.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return statuses, pos
        lines = buf[pos:head_end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ResponseError(f"bad status line {lines[0][:60]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        closes = parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                closes = b"close" in tokens or (closes and b"keep-alive" not in tokens)
        body_start = head_end + 4
        if chunked:
            end = _chunked_end(buf, body_start)
            if end is None:
                return statuses, pos
        elif length is not None:
            end = body_start + length
            if end > len(buf):
                return statuses, pos
        elif status in (204, 304) or 100 <= status < 200:
            end = body_start
        else:
            raise ResponseError(f"response {status} has neither Content-Length nor chunked encoding")
        statuses.append((status, closes))
        pos = end


def request_bytes(port: int, path: str = "/") -> bytes:
    """The one keep-alive request every connection repeats."""
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"path {path!r}: give an absolute path without spaces, e.g. '/'")
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: asgi_ipc-bench\r\n\r\n".encode()


class _Conn:
    __slots__ = ("sock", "buf", "sent_at")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.sent_at = 0.0


def run_load(port: int, connections: int, start_at: float | Callable[[], float], warmup: float, seconds: float,
             path: str = "/") -> dict:
    """One load process (see the module docstring). ``start_at`` is a ``time.monotonic()`` instant
    shared by all load processes (CLOCK_MONOTONIC is system-wide on Linux), or a function called
    once the connections are open that returns it; the measured window is
    ``[start_at + warmup, start_at + warmup + seconds)``. Returns counts and latencies in ms."""
    request = request_bytes(port, path)
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    ok = bad_status = failures = warm = reconnects = 0
    errors: dict[str, int] = {}


    def note(kind: str) -> None:
        nonlocal failures
        failures += 1
        errors[kind] = errors.get(kind, 0) + 1

    def open_conn() -> _Conn | None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as exc:
            note(f"connect: {errno.errorcode.get(exc.errno or 0, type(exc).__name__)}")
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return _Conn(sock)

    def send(conn: _Conn) -> bool:
        conn.sent_at = time.monotonic()
        try:
            conn.sock.sendall(request)  # 80 bytes into an empty socket buffer: never partial
        except OSError:
            return False
        return True

    def start(conn: _Conn | None) -> None:
        if conn is None:
            return
        if send(conn):
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        else:
            note("send")
            conn.sock.close()

    conns = [open_conn() for _ in range(connections)]
    if callable(start_at):
        start_at = start_at()
    measure_from = start_at + warmup
    stop_at = measure_from + seconds
    while time.monotonic() < start_at:
        time.sleep(min(0.05, max(0.0, start_at - time.monotonic())))
    for conn in conns:
        start(conn)
    open_count = sum(1 for c in conns if c is not None)

    cpu_at_start = cpu_at_stop = None
    while True:
        now = time.monotonic()
        if cpu_at_start is None and now >= measure_from:
            cpu_at_start = time.process_time()
        if cpu_at_stop is None and now >= stop_at:
            cpu_at_stop = time.process_time()
        if now >= stop_at + 5.0 or not sel.get_map():
            break
        for key, _ in sel.select(timeout=0.2):
            conn: _Conn = key.data
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            done_at = time.monotonic()
            if not data:
                sel.unregister(conn.sock)
                conn.sock.close()
                note("closed by server")
                if done_at < stop_at:
                    start(open_conn())
                continue
            conn.buf += data
            try:
                statuses, used = parse_responses_detail(conn.buf)
            except (ResponseError, ValueError) as exc:
                sel.unregister(conn.sock)
                conn.sock.close()
                note(f"parse: {exc}"[:80])
                if done_at < stop_at:
                    start(open_conn())
                continue
            if not statuses:
                continue
            conn.buf = conn.buf[used:]
            closing = any(closes for _, closes in statuses)
            for status, _ in statuses:
                if done_at < measure_from:
                    warm += 1
                elif done_at < stop_at:
                    if status == 200:
                        ok += 1
                        latencies.append((done_at - conn.sent_at) * 1000.0)
                    else:
                        bad_status += 1
            if closing:  # the server ends the connection after this response: a new one, not a failure
                sel.unregister(conn.sock)
                conn.sock.close()
                reconnects += 1
                if done_at < stop_at:
                    start(open_conn())
            elif done_at < stop_at:
                if not send(conn):
                    sel.unregister(conn.sock)
                    conn.sock.close()
                    note("send")
                    start(open_conn())
            else:
                sel.unregister(conn.sock)
                conn.sock.close()
        if time.monotonic() >= stop_at + 5.0:
            break
    left = len(sel.get_map())
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    if left:
        errors["no answer 5 s after the end"] = left
        failures += left
    return {"ok": ok, "bad_status": bad_status, "failures": failures, "errors": errors,
            "warmup_responses": warm, "connections_opened": open_count, "latencies_ms": latencies,
            "reconnects_after_close": reconnects,
            "seconds": seconds,
            "cpu_seconds_in_window": None if cpu_at_start is None or cpu_at_stop is None
            else cpu_at_stop - cpu_at_start}


def _load_entry(port: int, connections: int, warmup: float, seconds: float, path: str, out: Any, ready: Any,
                go: Any, start_value: Any) -> None:
    def wait_for_start() -> float:
        ready.put(True)
        if not go.wait(120):
            raise TimeoutError("the coordinator never gave the start signal")
        return start_value.value

    try:
        out.put(run_load(port, connections, wait_for_start, warmup, seconds, path))
    except Exception as exc:  # noqa: BLE001 - reported as failures, never hidden
        out.put({"ok": 0, "bad_status": 0, "failures": 1, "errors": {f"load process: {exc!r}"[:200]: 1},
                 "warmup_responses": 0, "connections_opened": 0, "latencies_ms": [], "seconds": seconds,
                 "cpu_seconds_in_window": None})


def _sleep_until(instant: float) -> None:
    while (left := instant - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def run_load_processes(port: int, connections: int, processes: int, warmup: float, seconds: float,
                       path: str = "/", window_probe: Callable[[], Any] | None = None) -> dict[str, Any]:
    """``connections`` keep-alive connections split over ``processes`` spawned load processes that
    start together, ``warmup`` s not counted, then ``seconds`` measured. ``window_probe`` (e.g. the
    server's CPU seconds) is called in this process at the start and at the end of the measured
    window; both values are returned as ``probe``.

    Returns ``ok`` (200 responses in the window), ``requests_per_s``, ``bad_status`` (other
    statuses), ``failures`` and ``errors`` (kind -> count), ``latencies_ms`` (every counted
    response), ``connections``, ``seconds``, ``load_cpu_seconds`` (the load processes' CPU in the
    window) and ``probe``. Raises ``ValueError`` for a count or duration that is not positive."""
    if connections < 1 or processes < 1 or seconds <= 0 or warmup < 0:
        raise ValueError(f"connections={connections}, processes={processes}, seconds={seconds}, warmup={warmup}: "
                         "connections, processes and seconds must be positive, warmup >= 0")
    ctx = multiprocessing.get_context("spawn")
    out, ready, go, start_value = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    per = max(1, connections // processes)
    procs = [ctx.Process(target=_load_entry, args=(port, per, warmup, seconds, path, out, ready, go, start_value),
                         daemon=True) for _ in range(processes)]
    probe: list[Any] = []
    try:
        for proc in procs:
            proc.start()
        collect_results(procs, ready, 60)  # every process is up with its connections open
        start_at = time.monotonic() + 0.05
        start_value.value = start_at
        go.set()
        _sleep_until(start_at + warmup)
        if window_probe is not None:
            probe.append(window_probe())
        _sleep_until(start_at + warmup + seconds)
        if window_probe is not None:
            probe.append(window_probe())
        results = collect_results(procs, out, warmup + seconds + 60)
    finally:
        go.set()  # never leave a load process waiting for a start that will not come
        stop_processes(procs, grace=0.1)
    errors: dict[str, int] = {}
    for r in results:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    ok = sum(r["ok"] for r in results)
    return {
        "ok": ok,
        "requests_per_s": round(ok / seconds, 1),
        "bad_status": sum(r["bad_status"] for r in results),
        "failures": sum(r["failures"] for r in results),
        "errors": errors,
        "reconnects_after_close": sum(r.get("reconnects_after_close", 0) for r in results),
        "latencies_ms": [ms for r in results for ms in r["latencies_ms"]],
        "connections": per * processes,
        "seconds": seconds,
        "load_cpu_seconds": sum(r.get("cpu_seconds_in_window") or 0.0 for r in results),
        "probe": probe,
    }


def load_process(port: int, connections: int, seconds: float, out: Any, path: str = "/") -> None:
    """One load process, the simple form: ``connections`` keep-alive connections on ``path`` for
    ``seconds`` (no warm-up), then ``(ok, failed)`` on the queue ``out`` (failed: non-200 answers
    and failed connections)."""
    result = run_load(port, connections, time.monotonic() + 0.2, 0.0, seconds, path)
    out.put((result["ok"], result["bad_status"] + result["failures"]))


def http_ok(port: int, timeout: float = 2.0, path: str = "/", body: bytes | None = None) -> bool:
    """Whether ``GET path`` on 127.0.0.1:``port`` answers 200 (with exactly ``body``, if given)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            data = response.read()
            return response.status == 200 and (body is None or data == body)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return False


def wait_first_200(port: int, timeout: float, path: str = "/") -> float:
    """Poll ``GET path`` until it answers 200; return the ``time.monotonic()`` of that answer.

    Raises ``TimeoutError`` naming the port if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(port, timeout=min(5.0, max(0.1, deadline - time.monotonic())), path=path):
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"nothing answered 200 on http://127.0.0.1:{port}{path} within {timeout} s")
