"""The HTTP load generator of the whole-site comparison: keep-alive connections over raw sockets.

``run_load`` (one load process) opens ``connections`` HTTP/1.1 keep-alive connections, sends
``GET /`` on each, and sends the next request on a connection as soon as its response is complete
(one request in flight per connection), all from one ``selectors`` loop so the client costs as
little CPU as possible. Responses completed during the warm-up are not counted; every response
completed in the measured window is counted with its latency (send to last byte). A connection that
fails or is closed by the server counts one failure and is reopened. Every loop ends at its deadline.

``parse_responses`` is the pure response parser (Content-Length and chunked bodies), tested alone.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time


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
    statuses: list[int] = []
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
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
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
        statuses.append(status)
        pos = end


def request_bytes(port: int, path: str = "/") -> bytes:
    """The one keep-alive request every connection repeats."""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: site-compare\r\n\r\n".encode()


class _Conn:
    __slots__ = ("sock", "buf", "sent_at")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.sent_at = 0.0


def run_load(port: int, connections: int, start_at: float, warmup: float, seconds: float) -> dict:
    """One load process (see the module docstring). ``start_at`` is a ``time.monotonic()`` instant
    shared by all load processes (CLOCK_MONOTONIC is system-wide on Linux); the measured window is
    ``[start_at + warmup, start_at + warmup + seconds)``. Returns counts and latencies in ms."""
    request = request_bytes(port)
    sel = selectors.DefaultSelector()
    measure_from = start_at + warmup
    stop_at = measure_from + seconds
    latencies: list[float] = []
    ok = bad_status = failures = warm = 0
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
                statuses, used = parse_responses(conn.buf)
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
            for status in statuses:
                if done_at < measure_from:
                    warm += 1
                elif done_at < stop_at:
                    if status == 200:
                        ok += 1
                        latencies.append((done_at - conn.sent_at) * 1000.0)
                    else:
                        bad_status += 1
            if done_at < stop_at:
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
            "seconds": seconds,
            "cpu_seconds_in_window": None if cpu_at_start is None or cpu_at_stop is None
            else cpu_at_stop - cpu_at_start}
