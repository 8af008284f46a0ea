"""Both parser adapters (httptools, h11) behind the one event interface, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procman.interface.http_events import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ClientError,
    EndOfBody,
    RequestHead,
)
from procman.interface.http_parsers import make_parser, resolve_parser_name
from procman.interface.http_policy import HeadLimits

PARSERS = ["httptools", "h11"]
HOST = b"Host: x\r\n"


def events(parser, data: bytes = b"") -> list:
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


@pytest.fixture(params=PARSERS)
def new_parser(request):
    return lambda limits=HeadLimits(): make_parser(request.param, limits)


def test_get_keeps_duplicate_headers_in_order(new_parser):
    head, end, paused = events(new_parser(), b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.http_version) == ("GET", b"/a?b=1", "1.1")
    assert head.headers == [(b"host", b"x"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert head.keep_alive and not head.has_body
    assert isinstance(end, EndOfBody) and paused is PAUSED


def test_pipelined_requests_wait_for_start_next(new_parser):
    parser = new_parser()
    first = events(parser, b"GET /1 HTTP/1.1\r\n" + HOST + b"\r\nGET /2 HTTP/1.1\r\n" + HOST + b"\r\n")
    assert first[0].target == b"/1" and first[-1] is PAUSED
    assert events(parser) == [PAUSED]  # nothing more until the response is done
    assert parser.buffered > 0
    parser.start_next()
    assert events(parser)[0].target == b"/2"


def test_content_length_body_arrives_in_pieces(new_parser):
    parser = new_parser()
    got = events(parser, b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\n01234")
    assert got[1:] == [BodyData(b"01234"), NEED_DATA]
    assert events(parser, b"56789") == [BodyData(b"56789"), EndOfBody(), PAUSED]


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [("1.1", b"", True), ("1.1", b"close", False), ("1.0", b"", False), ("1.0", b"keep-alive", True)],
)
def test_keep_alive_rules(new_parser, version, connection, keep_alive):
    raw = b"GET / HTTP/%s\r\n" % version.encode() + HOST
    if connection:
        raw += b"Connection: " + connection + b"\r\n"
    assert events(new_parser(), raw + b"\r\n")[0].keep_alive is keep_alive


def test_websocket_upgrade_hands_over_the_following_bytes(new_parser):
    parser = new_parser()
    raw = b"GET /ws HTTP/1.1\r\n" + HOST + b"Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
    parser.feed(raw + b"\x81\x05frame")
    head = parser.next_event()
    assert head.upgrade_websocket
    assert parser.take_buffer() == b"\x81\x05frame"
    assert head.raw.startswith(b"GET /ws HTTP/1.1\r\nhost: x\r\n") and head.raw.endswith(b"\r\n\r\n")


def test_other_upgrades_are_answered_then_closed(new_parser):
    raw = b"GET / HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    head = events(new_parser(), raw)[0]
    assert not head.upgrade_websocket and not head.keep_alive


def test_expect_continue_is_recognised(new_parser):
    raw = b"PUT / HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    assert events(new_parser(), raw)[0].expect_continue


@pytest.mark.parametrize(
    "limits, data, status",
    [
        (HeadLimits(max_request_line=100), b"GET /" + b"a" * 200, 414),
        (HeadLimits(max_head_size=1000), b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 431),
        (HeadLimits(max_head_size=1000), b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 300, 431),
        (HeadLimits(max_header_count=3), b"GET / HTTP/1.1\r\n" + HOST + b"A: 1\r\n" * 4 + b"\r\n", 431),
    ],
)
def test_head_limits_refuse_before_buffering_more(new_parser, limits, data, status):
    parser = new_parser(limits)
    with pytest.raises(ClientError) as info:
        for offset in range(0, len(data), 64):  # fed as a client would trickle it
            events(parser, data[offset : offset + 64])
    assert info.value.status == status
    assert parser.buffered <= 2 * max(limits.max_head_size, limits.max_request_line)


REQUESTS = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\npayload"
    b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    b"GET /d HTTP/1.0\r\n\r\n"
)


def _parse_all(name: str, pieces: list[bytes]) -> list:
    parser = make_parser(name, HeadLimits())
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


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(REQUESTS)), max_size=20))
def test_any_split_of_the_stream_gives_the_same_events(name, cuts):
    points = sorted(set(cuts))
    pieces = [REQUESTS[a:b] for a, b in zip([0, *points], [*points, len(REQUESTS)])]
    whole = _parse_all(name, [REQUESTS])
    assert len([e for e in whole if e[0] == "head"]) == 4
    assert _parse_all(name, pieces) == whole


def test_auto_and_unknown_parser_choices():
    assert resolve_parser_name("auto") == "httptools"
    with pytest.raises(ValueError, match="http must be one of"):
        resolve_parser_name("llhttp")


def test_without_httptools_auto_falls_back_to_h11_and_httptools_says_it_is_missing():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['httptools'] = None\n"
        "from procman.interface.http_parsers import resolve_parser_name\n"
        "print(resolve_parser_name('auto'))\n"
        "try:\n    resolve_parser_name('httptools')\nexcept ValueError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    assert lines[0] == "h11", result.stderr
    assert "--http httptools: the httptools package is not installed" in lines[1]


def test_buffered_returns_to_zero_across_many_keep_alive_requests(new_parser):
    """Nothing accumulates per request: a long-lived connection is never paused for good."""
    parser = new_parser()
    request = b"POST /k HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\nabc"
    for _ in range(500):
        got = events(parser, request)
        assert isinstance(got[0], RequestHead) and got[-1] is PAUSED
        parser.start_next()
        assert parser.buffered == 0


def test_pipelined_requests_count_as_buffered_until_answered(new_parser):
    """A flood of pipelined requests shows in ``buffered`` (the connection stops reading)."""
    parser = new_parser()
    flood = (b"GET /p HTTP/1.1\r\n" + HOST + b"\r\n") * 2000
    events(parser, flood)
    assert parser.buffered >= len(flood) // 2
