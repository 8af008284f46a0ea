"""The periodic checks, driven by a fake clock over in-memory transports (no sockets, no sleeps),
with the real layer carrying the messages."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from procman.interface.options import ServerOptions
from procman.interface.server import InterfaceServer, LayerNotSupported


class FakeReactor(Clock):
    """A Clock that also takes ``callFromThread`` (the server needs nothing else here)."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


def _connect(server: InterfaceServer, port: int = 40000) -> tuple[Any, StringTransport]:
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8000),
        peerAddress=IPv4Address("TCP", "127.0.0.1", port),
    )
    connection = server.factory.buildProtocol(transport.getPeer())
    connection.makeConnection(transport)
    return connection, transport


@pytest.fixture
def server(layer) -> InterfaceServer:
    options = ServerOptions(http_timeout=5, keep_alive_timeout=60, check_interval=1)
    server = InterfaceServer(layer, options, reactor=FakeReactor())
    server._check_call = server.clock.callLater(options.check_interval, server._check)
    return server


def test_a_failing_check_does_not_stop_the_others(server, app):
    class Exploding:
        client = ["203.0.113.1", 1]

        def check_timeouts(self, now: float) -> None:
            raise RuntimeError("a bug in one connection's check")

    server.connections.add(Exploding())
    connection, transport = _connect(server)
    connection.dataReceived(b"GET /waits HTTP/1.1\r\nHost: x\r\n\r\n")
    app.request()
    for _ in range(7):
        server.clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert b"time limit" in transport.value()
    assert server._check_call.active()  # still rescheduled after every failing round


def test_stalled_stream_is_dropped_and_checks_go_on(server, app):
    streaming, stream_transport = _connect(server, 40001)
    streaming.dataReceived(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    server._dispatch(request["reply_channel"], {"status": 200, "content": b"a", "more_content": True})
    waiting, wait_transport = _connect(server, 40002)
    server.clock.advance(3)
    waiting.dataReceived(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
    app.request()
    for _ in range(4):  # t = 7: the stream (stalled since t = 0) is past 5 s
        server.clock.advance(1)
    assert stream_transport.disconnecting or stream_transport.disconnected
    assert wait_transport.value() == b""  # its own 5 s (since t = 3) have not passed yet
    for _ in range(2):
        server.clock.advance(1)
    assert wait_transport.value().startswith(b"HTTP/1.1 503 ")
    _, disconnect = app.receive("http.disconnect")
    assert disconnect["reply_channel"] == request["reply_channel"]


def test_slow_reader_is_buffered_up_to_the_limit_then_dropped(layer, app):
    options = ServerOptions(max_response_buffer=1000)
    server = InterfaceServer(layer, options, reactor=FakeReactor())
    connection, transport = _connect(server)
    connection.dataReceived(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    channel = request["reply_channel"]
    server._dispatch(channel, {"status": 200, "content": b"x" * 100, "more_content": True})
    connection.pauseProducing()  # what the transport does when the client stops reading
    server._dispatch(channel, {"content": b"y" * 600, "more_content": True})
    written = transport.value()
    assert b"y" not in written  # held back while paused
    connection.resumeProducing()
    assert transport.value().endswith(b"y" * 600 + b"\r\n")
    connection.pauseProducing()
    server._dispatch(channel, {"content": b"z" * 1200, "more_content": True})
    assert connection.closing and transport.disconnecting
    _, disconnect = app.receive("http.disconnect")
    assert disconnect["reply_channel"] == channel


def test_a_layer_without_the_twisted_extension_is_refused():
    class PollOnly:
        extensions = ["groups"]
        ChannelFull = Exception

        def send(self, channel, message):
            pass

        def receive_twisted(self, channels):
            pass

        def new_channel(self, pattern):
            return pattern + "x"

    with pytest.raises(LayerNotSupported, match="'twisted' extension"):
        InterfaceServer(PollOnly(), reactor=FakeReactor())


def test_upload_pauses_the_socket_while_the_body_channel_is_full(make_layer):
    from tests.procman.interface.conftest import Application

    layer = make_layer(channel_capacity={"http.request.body*": 1})
    app = Application(layer)
    server = InterfaceServer(layer, ServerOptions(body_chunk_size=1000), reactor=FakeReactor())
    connection, transport = _connect(server)
    connection.dataReceived(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
    connection.dataReceived(b"a" * 4000)  # chunk 1 rides in http.request, 2 fills the channel
    request = app.request()
    assert request["body"] == b"a" * 1000
    exchange = connection.exchange
    assert transport.producerState == "paused"  # chunk 3 waits: the socket is not read
    assert len(exchange.body_outbox) == 2 and exchange.body_size == 4000
    received = request["body"]
    while len(received) < 4000:
        _, chunk = app.receive(request["body_channel"])
        received += chunk["content"]
        server.clock.advance(0.3)  # the retry timer sends the next waiting chunk
    assert not exchange.body_outbox
    assert transport.producerState == "producing"  # room again: reading resumed
    connection.dataReceived(b"b" * 6000)
    body = received
    while True:
        server.clock.advance(0.3)
        _, chunk = app.receive(request["body_channel"])
        body += chunk["content"]
        if not chunk["more_content"]:
            break
    assert body == b"a" * 4000 + b"b" * 6000


def test_a_body_trickled_with_progress_still_meets_the_request_deadline(layer, app):
    options = ServerOptions(http_timeout=100, max_request_time=3, check_interval=1)
    server = InterfaceServer(layer, options, reactor=FakeReactor())
    server._check_call = server.clock.callLater(options.check_interval, server._check)
    connection, transport = _connect(server)
    connection.dataReceived(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for _ in range(5):  # a byte a second: progress every second, never finished
        connection.dataReceived(b"z")
        server.clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.disconnecting
    app.receive_nothing("http.request")  # the application never saw the half body
