"""The sans-IO HTTP/1.x parser and response framing (no sockets, no processes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procman.interface.http_wire import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ClientError,
    EndOfBody,
    RequestHead,
    RequestParser,
    chunk,
    response_head,
)


def events(parser: RequestParser, data: bytes = b"") -> list:
    """Feed ``data`` and collect events until the parser needs data or pauses; merge body data."""
    parser.feed(data)
    out: list = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA or event is PAUSED:
            out.append(event)
            return out
        if isinstance(event, BodyData) and out and isinstance(out[-1], BodyData):
            out[-1] = BodyData(out[-1].data + event.data)
        else:
            out.append(event)


def test_get_without_body():
    parser = RequestParser()
    head, end, paused = events(parser, b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.http_version) == ("GET", b"/a?b=1", "1.1")
    assert head.headers == [(b"host", b"x"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert head.keep_alive and not head.has_body
    assert isinstance(end, EndOfBody) and paused is PAUSED


def test_pipelined_requests_wait_for_start_next():
    parser = RequestParser()
    stream = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
    first = events(parser, stream)
    assert first[0].target == b"/1" and first[-1] is PAUSED
    assert events(parser) == [PAUSED]  # nothing more until the response is done
    parser.start_next()
    assert events(parser)[0].target == b"/2"


def test_content_length_body_arrives_in_pieces():
    parser = RequestParser()
    assert events(parser, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234")[1:] == [BodyData(b"01234"), NEED_DATA]
    assert events(parser, b"56789GET") == [BodyData(b"56789"), EndOfBody(), PAUSED]


def test_chunked_body_with_extensions_and_trailers():
    parser = RequestParser()
    raw = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    head, body, end, paused = events(parser, raw)
    assert head.chunked and body == BodyData(b"hello world")
    assert end == EndOfBody(trailers=[(b"x-trailer", b"t")]) and paused is PAUSED


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [("1.1", b"", True), ("1.1", b"close", False), ("1.0", b"", False), ("1.0", b"keep-alive", True)],
)
def test_keep_alive_rules(version, connection, keep_alive):
    raw = b"GET / HTTP/%s\r\n" % version.encode()
    if connection:
        raw += b"Connection: " + connection + b"\r\n"
    head = events(RequestParser(), raw + b"\r\n")[0]
    assert head.keep_alive is keep_alive


def test_websocket_upgrade_is_recognised():
    raw = b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
    assert events(RequestParser(), raw)[0].upgrade_websocket
    raw = b"POST /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert not events(RequestParser(), raw)[0].upgrade_websocket


def test_expect_continue_is_recognised():
    raw = b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    assert events(RequestParser(), raw)[0].expect_continue


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GET /\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", 400),
        (b"GET / HTTP/3.0\r\n\r\n", 505),
    ],
)
def test_malformed_requests_raise_client_errors(raw, status):
    with pytest.raises(ClientError) as info:
        events(RequestParser(), raw)
    assert info.value.status == status


def test_size_limits():
    with pytest.raises(ClientError) as info:
        events(RequestParser(max_request_line=100), b"GET /" + b"a" * 200)
    assert info.value.status == 414
    with pytest.raises(ClientError) as info:
        events(RequestParser(max_head_size=1000), b"GET / HTTP/1.1\r\nX: " + b"a" * 2000)
    assert info.value.status == 431
    with pytest.raises(ClientError) as info:
        events(RequestParser(max_header_count=3), b"GET / HTTP/1.1\r\n" + b"A: 1\r\n" * 4 + b"\r\n")
    assert info.value.status == 431


def test_empty_lines_before_a_request_are_ignored():
    assert events(RequestParser(), b"\r\n\r\nGET / HTTP/1.1\r\n\r\n")[0].target == b"/"


REQUESTS = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /b HTTP/1.1\r\nContent-Length: 7\r\n\r\npayload"
    b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    b"GET /d HTTP/1.0\r\n\r\n"
)


def _parse_all(pieces: list[bytes]) -> list:
    parser = RequestParser()
    seen: list = []
    for piece in pieces:
        parser.feed(piece)
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                parser.start_next()
                continue
            if isinstance(event, RequestHead):
                seen.append(("head", event.method, event.target))
            elif isinstance(event, BodyData):
                if seen and seen[-1][0] == "body":
                    seen[-1] = ("body", seen[-1][1] + event.data)
                else:
                    seen.append(("body", event.data))
            else:
                seen.append(("end",))
    return seen


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REQUESTS)), max_size=20))
def test_any_split_of_the_stream_gives_the_same_events(cuts):
    points = sorted(set(cuts))
    pieces = [REQUESTS[a:b] for a, b in zip([0, *points], [*points, len(REQUESTS)])]
    assert _parse_all(pieces) == _parse_all([REQUESTS])


def test_response_framing():
    assert response_head(200, [(b"content-length", b"2")], "1.1") == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    )
    assert response_head(599, [], "1.0").startswith(b"HTTP/1.0 599 Unknown\r\n")
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"") == b""  # an empty piece must not end a chunked body early
