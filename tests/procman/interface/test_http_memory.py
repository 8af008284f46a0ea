"""HTTP/1.x and HTTP/2 protocols in memory: string transports, a fake clock, a real layer.

The test plays the application on the layer (``site.app``) and the client on the transport; the
clock moves only when the test says, so every timeout is exact and nothing waits.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from procman.interface.http2_protocol import HTTP2Connection
from tests.procman.interface.memory import MemorySite

GET = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"


@pytest.fixture
def site(layer: Any) -> MemorySite:
    return MemorySite(layer, keep_alive_timeout=5.0, http_timeout=30.0)


def test_a_request_becomes_one_message_and_its_reply_a_response(site: MemorySite) -> None:
    client = site.connect()
    client.send(b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Thing: 1\r\n\r\n")
    request = site.app.request(timeout=1)
    assert (request["method"], request["path"], request["query_string"]) == ("GET", "/a/b", b"x=1")
    assert request["http_version"] == "1.1" and request["body"] == b""
    assert [b"x-thing", b"1"] in [list(pair) for pair in request["headers"]]
    assert request["client"] == ["127.0.0.1", 40001] and request["server"] == ["127.0.0.1", 8000]
    assert request["reply_channel"].startswith(site.server.process_channel)
    site.respond(request, 200, b"hello", headers=[[b"content-type", b"text/plain"]])
    status, headers, body = client.response()
    assert (status, body) == (200, b"hello")
    assert headers[b"content-length"] == b"5" and headers[b"content-type"] == b"text/plain"
    assert b"date" in headers and not client.closing
    assert site.server.finished_exchanges == 1
    assert site.server.replies == {}  # the reply channel is released with the response


def test_keep_alive_serves_requests_one_after_another(site: MemorySite) -> None:
    client = site.connect()
    channels = set()
    for number in range(3):
        client.send(f"GET /{number} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        request = site.app.request(timeout=1)
        assert request["path"] == f"/{number}"
        channels.add(request["reply_channel"])
        site.respond(request, content=str(number).encode())
        assert client.response()[2] == str(number).encode()
    assert len(channels) == 3 and not client.closing


def test_http_1_0_closes_unless_asked_to_keep_alive(site: MemorySite) -> None:
    client = site.connect()
    for path in (b"/a", b"/b"):
        client.send(b"GET " + path + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        request = site.app.request(timeout=1)
        assert request["http_version"] == "1.0"
        site.respond(request, content=path)
        status, headers, body = client.response()
        assert body == path and headers[b"connection"] == b"keep-alive" and not client.closing
    client.send(b"GET /old HTTP/1.0\r\n\r\n")
    site.respond(site.app.request(timeout=1), content=b"bye")
    assert client.response()[::2] == (200, b"bye") and client.closing


def test_pipelined_requests_are_answered_in_order(site: MemorySite) -> None:
    client = site.connect()
    client.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
    for index in range(3):
        # The next request reaches the application only after the previous response is done,
        # so responses can never be reordered on the connection.
        request = site.app.request(timeout=1)
        assert request["path"] == f"/p{index}"
        site.app.receive_nothing("http.request")
        site.respond(request, content=b"r%d" % index)
        assert client.response()[2] == b"r%d" % index


def test_a_streamed_response_is_chunked(site: MemorySite) -> None:
    client = site.connect()
    client.send(GET)
    request = site.app.request(timeout=1)
    site.app.send(request["reply_channel"], {"status": 200, "headers": [], "content": b"ab", "more_content": True})
    site.app.send(request["reply_channel"], {"content": b"cd", "more_content": True})
    site.app.send(request["reply_channel"], {"content": b"", "more_content": False})
    assert site.deliver() == 3
    status, headers, body = client.response()
    assert headers[b"transfer-encoding"] == b"chunked" and body == b"abcd"


def test_a_large_body_streams_through_a_body_channel(layer: Any) -> None:
    site = MemorySite(layer, body_chunk_size=4)
    client = site.connect()
    client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
    request = site.app.request(timeout=1)
    assert request["body"] == b"0123" and request["body_channel"].startswith("http.request.body?")
    chunks = [site.app.receive(request["body_channel"], timeout=1)[1] for _ in range(2)]
    assert chunks == [{"content": b"4567", "more_content": True}, {"content": b"89", "more_content": False}]


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(site: MemorySite) -> None:
    client = site.connect()
    site.advance(5.0)
    assert not client.closing
    site.advance(1.0)
    assert client.closing and client.pending() == b""  # nothing to say to an idle client


def test_a_head_not_finished_in_time_gets_408(site: MemorySite) -> None:
    client = site.connect()
    client.send(b"GET / HTTP/1.1\r\nHost:")
    site.advance(6.0)
    status, headers, _ = client.response()
    assert status == 408 and headers[b"connection"] == b"close" and client.closing


def test_a_stalled_body_gets_408_and_the_application_hears_of_it(site: MemorySite) -> None:
    client = site.connect()
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    site.advance(29.0)
    assert client.pending() == b""
    site.advance(2.0)
    assert client.response()[0] == 408 and client.closing
    site.app.receive_nothing("http.request")  # it never reached the application


def test_a_silent_application_gets_503_and_a_disconnect(site: MemorySite) -> None:
    client = site.connect()
    client.send(GET)
    request = site.app.request(timeout=1)
    site.advance(31.0)
    assert client.response()[0] == 503 and client.closing
    _, disconnect = site.app.receive("http.disconnect", timeout=1)
    assert disconnect == {"reply_channel": request["reply_channel"], "path": "/a/b"}
    site.app.respond(request)  # too late: dropped
    assert site.deliver() == 1 and client.pending() == b""


def test_the_client_leaving_mid_request_sends_a_disconnect(site: MemorySite) -> None:
    client = site.connect()
    client.send(GET)
    request = site.app.request(timeout=1)
    client.lose()
    assert site.app.receive("http.disconnect", timeout=1)[1]["reply_channel"] == request["reply_channel"]
    assert site.server.connections == set()


@pytest.mark.parametrize("data", [
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_malformed_input_gets_400_and_close(layer: Any, parser: str, data: bytes) -> None:
    site = MemorySite(layer, http=parser)
    client = site.connect()
    client.send(data)
    status, headers, _ = client.response()
    assert status == 400 and headers[b"connection"] == b"close" and client.closing
    site.app.receive_nothing("http.request")


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(layer: Any) -> None:
    site = MemorySite(layer, max_request_body=100)
    client = site.connect()
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n")
    status, headers, body = client.response()
    assert status == 413 and b"100 bytes" in body and headers[b"connection"] == b"close"
    assert client.closing and not client.pending()  # no "100 Continue" before it
    site.app.receive_nothing("http.request")


def test_a_head_over_the_limit_gets_431(layer: Any) -> None:
    site = MemorySite(layer, max_head_size=1024)
    client = site.connect()
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert client.response()[0] == 431 and client.closing


def test_connections_past_the_cap_get_503(layer: Any) -> None:
    site = MemorySite(layer, max_connections=2)
    first, second = site.connect(), site.connect()
    third = site.connect()
    status, headers, _ = third.response()
    assert status == 503 and headers[b"retry-after"] == b"1" and third.closing
    first.lose()
    fourth = site.connect()
    fourth.send(GET)
    site.respond(site.app.request(timeout=1))
    assert fourth.response()[0] == 200 and not second.closing


def test_a_full_request_channel_gets_503_with_retry_after(make_layer: Any) -> None:
    site = MemorySite(make_layer(channel_capacity={"http.request": 1}))
    site.app.send("http.request", {"filler": True})
    client = site.connect()
    client.send(GET)
    status, headers, _ = client.response()
    assert status == 503 and headers[b"retry-after"].isdigit() and client.closing


def test_graceful_stop_lets_the_response_finish_then_closes(site: MemorySite) -> None:
    exits: list[int] = []
    site.server.on_exit = exits.append
    busy, idle = site.connect(), site.connect()
    busy.send(GET)
    request = site.app.request(timeout=1)
    site.server.graceful_stop()
    assert idle.closing and not busy.closing
    site.respond(request)
    status, headers, _ = busy.response()
    assert status == 200 and headers[b"connection"] == b"close" and busy.closing
    busy.lose()
    idle.lose()
    site.clock.advance(0)
    assert exits == [0]


# -- HTTP/2 ------------------------------------------------------------------------------------------


class H2Client:
    """An ``h2`` client connection on one in-memory HTTP/2 server connection."""

    def __init__(self, site: MemorySite) -> None:
        plain = site.connect()
        self.transport = plain.transport
        # TLS finished and ALPN chose h2: the HTTP/1.1 protocol hands the socket over.
        self.transport.negotiatedProtocol = b"h2"
        plain.protocol.handshakeCompleted()
        self.server_side = plain.protocol.successor
        assert isinstance(self.server_side, HTTP2Connection)
        self.plain = plain
        self.clock = site.clock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> list[Any]:
        """Exchange pending bytes both ways; the client's events."""
        events: list[Any] = []
        for _ in range(10):
            self.clock.advance(0)  # the connection batches its writes to the end of a reactor turn
            outgoing = self.h2.data_to_send()
            if outgoing:
                self.server_side.dataReceived(outgoing)
            incoming = self.transport.value()
            self.transport.clear()
            if incoming:
                events += self.h2.receive_data(incoming)
            if not outgoing and not incoming:
                return events
        raise AssertionError("the HTTP/2 exchange did not settle")

    def get(self, path: str) -> int:
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, [(":method", "GET"), (":path", path), (":scheme", "https"),
                                      (":authority", "example.com")], end_stream=True)
        self.flush()
        return stream


def _bodies(events: list[Any]) -> dict[int, bytes]:
    bodies: dict[int, bytes] = {}
    for event in events:
        if isinstance(event, h2.events.DataReceived):
            bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
    return bodies


def test_http2_streams_become_requests_answered_on_their_stream(site: MemorySite) -> None:
    client = H2Client(site)
    first, second = client.get("/one"), client.get("/two")
    requests = {message["path"]: message for message in (site.app.request(timeout=1), site.app.request(timeout=1))}
    assert requests["/one"]["http_version"] == "2"
    assert [b"host", b"example.com"] in [list(pair) for pair in requests["/one"]["headers"]]
    site.app.respond(requests["/two"], content=b"2")
    site.app.respond(requests["/one"], content=b"1")
    assert site.deliver() == 2
    events = client.flush()
    bodies = _bodies(events)
    statuses = {event.stream_id: dict(event.headers)[b":status"] for event in events
                if isinstance(event, h2.events.ResponseReceived)}
    assert bodies == {first: b"1", second: b"2"} and statuses == {first: b"200", second: b"200"}
    ended = {event.stream_id for event in events if isinstance(event, h2.events.StreamEnded)}
    assert ended == {first, second}


def test_http2_a_silent_application_gets_503_on_that_stream_only(site: MemorySite) -> None:
    client = H2Client(site)
    slow = client.get("/slow")
    request = site.app.request(timeout=1)
    site.advance(31.0)
    events = client.flush()
    statuses = [dict(event.headers)[b":status"] for event in events
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == slow]
    assert statuses == [b"503"]
    assert site.app.receive("http.disconnect", timeout=1)[1]["reply_channel"] == request["reply_channel"]
    fast = client.get("/fast")
    site.respond(site.app.request(timeout=1), content=b"ok")
    assert _bodies(client.flush()) == {fast: b"ok"}
