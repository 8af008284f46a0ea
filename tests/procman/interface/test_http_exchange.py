"""How a response leaves the exchange: head and body in one write; a streamed or empty response
still sends its head at once."""

from __future__ import annotations

import pytest

from procman.interface.options import ServerOptions
from procman.interface.server import InterfaceServer
from tests.procman.interface.test_server_checks import FakeReactor, _connect


@pytest.fixture
def exchange_and_writes(layer, app):
    server = InterfaceServer(layer, ServerOptions(), reactor=FakeReactor())
    connection, transport = _connect(server)
    writes: list[bytes] = []
    original = transport.write
    transport.write = lambda data: (writes.append(data), original(data))

    def request(line: bytes = b"GET / HTTP/1.1"):
        connection.dataReceived(line + b"\r\nHost: x\r\n\r\n")
        message = app.request()
        return server.replies[message["reply_channel"]], writes

    return request


def test_a_whole_response_is_one_write(exchange_and_writes):
    exchange, writes = exchange_and_writes()
    exchange.deliver({"status": 200, "headers": [[b"content-type", b"text/plain"]], "content": b"hello"})
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 ") and writes[0].endswith(b"\r\n\r\nhello")


@pytest.mark.parametrize("line", [b"HEAD / HTTP/1.1", b"GET / HTTP/1.1"])
def test_a_response_without_a_body_still_sends_its_head(exchange_and_writes, line):
    exchange, writes = exchange_and_writes(line)
    exchange.deliver({"status": 204 if line.startswith(b"GET") else 200, "content": b""})
    assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n")


def test_a_streamed_response_sends_its_head_before_the_rest(exchange_and_writes):
    exchange, writes = exchange_and_writes()
    exchange.deliver({"status": 200, "more_content": True})
    assert len(writes) == 1 and b"transfer-encoding: chunked" in writes[0].lower()
    exchange.deliver({"content": b"abc", "more_content": True})
    exchange.deliver({"content": b""})
    assert writes[1:] == [b"3\r\nabc\r\n", b"0\r\n\r\n"]


@pytest.mark.parametrize("name", [b"Date", b"date"])
def test_the_application_s_date_header_is_kept_and_not_doubled(exchange_and_writes, name):
    exchange, writes = exchange_and_writes()
    exchange.deliver({"status": 200, "headers": [[name, b"Mon, 01 Jan 2024 00:00:00 GMT"]], "content": b""})
    head = writes[0].lower()
    assert head.count(b"\r\ndate: ") == 1 and b"date: mon, 01 jan 2024" in head


def test_the_server_counts_finished_exchanges(exchange_and_writes):
    exchange, _ = exchange_and_writes()
    server = exchange.server
    assert server.finished_exchanges == 0
    exchange.deliver({"status": 200, "more_content": True})
    assert server.finished_exchanges == 0  # not finished until the body ends
    exchange.deliver({"content": b""})
    assert server.finished_exchanges == 1
