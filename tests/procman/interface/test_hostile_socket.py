"""The hostile-request table through a real socket against a running ``procman interface``, once
per parser choice (one process per parser and xdist worker, shared by the table's vectors)."""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest

from tests.procman.interface.conftest import shared_interface
from tests.procman.interface.hostile_requests import HOSTILE_REQUESTS, MAX_REQUEST_BODY, Vector
from tests.procman.interface.test_hostile_memory import PARSERS, PROBE, parse_responses


class Served:
    """A running interface process for one parser, and the test's side of its layer."""

    def __init__(self, layer: Any, port: int) -> None:
        self.layer = layer
        self.port = port

    def answer(self, seen: list) -> None:
        for _ in range(20):
            channel, message = self.layer.receive(["http.request"], block=False)
            if channel is None:
                return
            seen.append((message["method"], message["path"], message["body"]))
            self.layer.send(message["reply_channel"], {"status": 200, "content": b"ok"})

    def exchange(self, sock: socket.socket, data: bytes, responses: int, seen: list) -> tuple[list[int], bool]:
        """Send ``data``; play the application until ``responses`` complete responses arrived
        (or the server closed, or 10 s passed); return (statuses, closed)."""
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused before reading everything; its answer may still be there
        received = b""
        closed = False
        deadline = time.monotonic() + 10
        sock.settimeout(0.02)
        while time.monotonic() < deadline and not closed:
            self.answer(seen)
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                received += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
            if _complete(received) >= responses and responses:
                break
        return parse_responses(received) if _complete(received) else [], closed

    def run(self, vector: Vector) -> tuple[list[int], bool, list]:
        seen: list = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            statuses, closed = self.exchange(sock, vector.data, len(vector.statuses), seen)
            if vector.closed and not closed:
                closed = _wait_closed(sock)
            elif not closed and statuses == list(vector.statuses):
                probe_seen: list = []
                probe, probe_closed = self.exchange(sock, PROBE, 1, probe_seen)
                assert (probe, probe_seen) == ([200], [("GET", "/probe", b"")]), "desynchronised"
        return statuses, closed, seen


def _complete(data: bytes) -> int:
    """How many complete responses (Content-Length framed) ``data`` holds."""
    count = 0
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return count
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return count
        count += 1
        data = rest[length:]


def _wait_closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return True


@pytest.fixture(scope="module", params=PARSERS)
def served(request, tmp_path_factory) -> Iterator[Served]:
    with shared_interface(
        tmp_path_factory, "--http", request.param, "--max-request-body", str(MAX_REQUEST_BODY), "-v", "1"
    ) as shared:
        yield Served(shared.app.layer, shared.interface.port)


@pytest.mark.parametrize("vector", HOSTILE_REQUESTS, ids=lambda v: v.name)
def test_hostile_request_over_a_socket(served, vector):
    statuses, closed, seen = served.run(vector)
    assert (statuses, closed, seen) == (list(vector.statuses), vector.closed, list(vector.app_sees))
