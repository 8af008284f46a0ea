"""The hostile-request table against every HTTP parser choice, in memory: a Twisted
``StringTransport`` and ``Clock`` (no sockets, no sleeps), the real layer carrying the requests."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from procman.interface.options import ServerOptions
from procman.interface.server import InterfaceServer
from tests.procman.interface.hostile_requests import (
    HOSTILE_REQUESTS,
    MAX_REQUEST_BODY,
    PARSER_GAPS,
    Vector,
)

PARSERS = ["httptools", "h11"]
PROBE = b"GET /probe HTTP/1.1\r\nHost: example.com\r\n\r\n"


class FakeReactor(Clock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


def parse_responses(data: bytes) -> list[int]:
    """Status codes of the responses in ``data`` (bodies skipped by their Content-Length)."""
    statuses = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data[:200]!r}"
        lines = head.split(b"\r\n")
        statuses.append(int(lines[0].split(b" ")[1]))
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = rest[length:]
    return statuses


class Session:
    """One in-memory connection whose application answers every request with 200."""

    def __init__(self, server: InterfaceServer, layer: Any) -> None:
        self.server = server
        self.layer = layer
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.connection = server.factory.buildProtocol(self.transport.getPeer())
        self.connection.makeConnection(self.transport)
        self.seen: list[tuple[str, str, bytes]] = []

    def send(self, data: bytes) -> None:
        self.connection.dataReceived(data)
        self.answer()

    def answer(self) -> None:
        for _ in range(20):  # bounded: no vector holds more than a few requests
            channel, message = self.layer.receive(["http.request"], block=False)
            if channel is None:
                return
            self.seen.append((message["method"], message["path"], message["body"]))
            self.server._dispatch(message["reply_channel"], {"status": 200, "content": b"ok"})

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected


def run_vector(server: InterfaceServer, layer: Any, vector: Vector) -> tuple:
    """(statuses, closed, app_sees) for ``vector``; an open connection must answer a probe."""
    session = Session(server, layer)
    session.send(vector.data)
    statuses = parse_responses(session.transport.value())
    closed = session.closed
    seen = list(session.seen)
    if not closed and statuses == list(vector.statuses):
        session.transport.clear()
        session.send(PROBE)
        assert session.seen[-1:] == [("GET", "/probe", b"")], "connection desynchronised"
        assert parse_responses(session.transport.value()) == [200]
    session.connection.connectionLost(None)
    return statuses, closed, seen


@pytest.fixture
def make_server(layer):
    def make(http: str) -> InterfaceServer:
        options = ServerOptions(http=http, max_request_body=MAX_REQUEST_BODY)
        return InterfaceServer(layer, options, reactor=FakeReactor())

    return make


@pytest.mark.parametrize("http", PARSERS)
@pytest.mark.parametrize("vector", HOSTILE_REQUESTS, ids=lambda v: v.name)
def test_hostile_request(make_server, layer, http, vector, request):
    gap = PARSER_GAPS.get((http, vector.name))
    if gap:
        request.applymarker(pytest.mark.xfail(reason=gap, strict=True))
    statuses, closed, seen = run_vector(make_server(http), layer, vector)
    assert (statuses, closed, seen) == (list(vector.statuses), vector.closed, list(vector.app_sees))
