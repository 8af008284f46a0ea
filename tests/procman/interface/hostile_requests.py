"""The shared table of hostile requests: request bytes -> the outcome the server must produce.

Every entry is run against every HTTP parser choice in memory (``test_hostile_memory.py``, a
Twisted ``StringTransport``, no sockets) and through a real socket against a running ``procman
interface`` (``test_hostile_socket.py``). The test plays the application: it answers every
``http.request`` that reaches the layer with ``200 ok``, and records what the request looked like.

An outcome is the list of response statuses in order, whether the server closes the connection
after them, and the ``(method, path, body)`` of every request the application saw. When the
connection is expected to stay open, the runner sends a probe request afterwards and checks that
it is answered as itself: a framing disagreement that desynchronised the connection shows there.

Outcomes follow RFC 9110/9112 as enforced by ``procman/interface/http_policy.py``: every framing
ambiguity is a 400 that closes the connection, limits are 413/414/431, unknown (including
lower-case) methods 501, other transfer codings 501, other HTTP versions 505.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HOSTILE_REQUESTS", "Vector", "PARSER_GAPS"]

HOST = b"Host: example.com\r\n"


@dataclass(frozen=True)
class Vector:
    """One request (or several pipelined) and the outcome the server must produce."""

    name: str
    data: bytes
    statuses: tuple[int, ...]
    closed: bool
    #: (method, path, body) of each request the application must see, in order.
    app_sees: tuple[tuple[str, str, bytes], ...] = field(default=())


def _chunked(body: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST /up HTTP/" + version + b"\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + body


def _rejected(name: str, data: bytes, status: int = 400) -> Vector:
    return Vector(name, data, (status,), closed=True)


HOSTILE_REQUESTS: list[Vector] = [
    # -- well-formed requests: the baseline every parser must keep -----------------------------
    Vector("get", b"GET /a?b=1 HTTP/1.1\r\n" + HOST + b"\r\n", (200,), False, (("GET", "/a", b""),)),
    Vector(
        "post-content-length",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhello",
        (200,), False, (("POST", "/up", b"hello"),),
    ),
    Vector(
        "content-length-with-ows",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length:  5 \r\n\r\nhello",
        (200,), False, (("POST", "/up", b"hello"),),
    ),
    Vector(
        "chunked", _chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        (200,), False, (("POST", "/up", b"hello world"),),
    ),
    Vector(
        "chunk-extension", _chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        (200,), False, (("POST", "/up", b"hello"),),
    ),
    Vector(
        "chunked-trailer", _chunked(b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
        (200,), False, (("POST", "/up", b"hello"),),
    ),
    Vector("http10-without-host", b"GET /old HTTP/1.0\r\n\r\n", (200,), True, (("GET", "/old", b""),)),
    Vector(
        "empty-line-before-request", b"\r\nGET /a HTTP/1.1\r\n" + HOST + b"\r\n",
        (200,), False, (("GET", "/a", b""),),
    ),
    Vector(
        "absolute-form-target", b"GET http://example.com/p?q HTTP/1.1\r\n" + HOST + b"\r\n",
        (200,), False, (("GET", "/p", b""),),
    ),
    Vector(
        "pipelined-after-body",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhello"
        b"GET /next HTTP/1.1\r\n" + HOST + b"\r\n",
        (200, 200), False, (("POST", "/up", b"hello"), ("GET", "/next", b"")),
    ),
    Vector(
        "pipelined-then-malformed",
        b"GET /first HTTP/1.1\r\n" + HOST + b"\r\nGET /x\n HTTP/1.1\r\n" + HOST + b"\r\n",
        (200, 400), True, (("GET", "/first", b""),),
    ),
    Vector(
        "pipelined-then-smuggled-framing",
        b"GET /first HTTP/1.1\r\n" + HOST + b"\r\n"
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n",
        (200, 400), True, (("GET", "/first", b""),),
    ),
    # -- the vectors of issue 9 ----------------------------------------------------------------
    _rejected("chunk-size-leading-space", _chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-size-vertical-tab", _chunked(b"5\x0b\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-size-bare-lf", _chunked(b"5\n\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-extension-bare-cr", _chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-extension-bare-lf", _chunked(b"5;a\n\r\nhello\r\n0\r\n\r\n")),
    _rejected("bare-lf-in-request-target", b"GET /x\n HTTP/1.1\r\n" + HOST + b"\r\n"),
    _rejected("bare-lf-after-method", b"GET\n /x HTTP/1.1\r\n" + HOST + b"\r\n"),
    _rejected("head-ends-lf-crlf", b"GET / HTTP/1.1\r\n" + HOST[:-2] + b"\n\r\n"),
    _rejected(
        "header-name-ends-in-lf",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length\n: 5\r\n\r\nhello",
    ),
    _rejected("lower-case-method", b"head / HTTP/1.1\r\n" + HOST + b"\r\n", 501),
    _rejected("two-host-headers", b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
    _rejected("http11-without-host", b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n"),
    # -- our own -------------------------------------------------------------------------------
    _rejected(
        "content-length-and-transfer-encoding",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
    ),
    _rejected("transfer-encoding-on-http10", _chunked(b"5\r\nhello\r\n0\r\n\r\n", b"1.0")),
    _rejected(
        "duplicate-content-length",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ),
    _rejected(
        "conflicting-content-length",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    _rejected(
        "content-length-list", b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 5, 5\r\n\r\nhello"
    ),
    _rejected(
        "content-length-with-sign", b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: +5\r\n\r\nhello"
    ),
    _rejected(
        "content-length-inner-space",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 1 5\r\n\r\nhello",
    ),
    _rejected(
        "content-length-overflow",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 99999999999999999999999\r\n\r\nhello",
    ),
    _rejected("chunk-size-overflow", _chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-size-negative", _chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-size-0x-prefix", _chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    _rejected("chunk-data-longer-than-size", _chunked(b"5\r\nhelloXX\r\n0\r\n\r\n")),
    _rejected(
        "transfer-encoding-chunked-twice",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
    _rejected(
        "transfer-encoding-chunked-not-last",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    ),
    _rejected(
        "transfer-encoding-gzip",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    _rejected(
        "transfer-encoding-vertical-tab",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
    ),
    _rejected("bare-cr-in-header-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n"),
    _rejected("nul-in-header-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n"),
    _rejected("obs-fold", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n"),
    _rejected("space-before-colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-A : a\r\n\r\n"),
    _rejected("space-in-header-name", b"GET / HTTP/1.1\r\n" + HOST + b"X A: a\r\n\r\n"),
    _rejected("control-byte-in-target", b"GET /a\x01b HTTP/1.1\r\n" + HOST + b"\r\n"),
    _rejected("raw-8-bit-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + HOST + b"\r\n"),
    _rejected("connect-method", b"CONNECT example.com:443 HTTP/1.1\r\n" + HOST + b"\r\n", 501),
    _rejected("unknown-method", b"BREW /pot HTTP/1.1\r\n" + HOST + b"\r\n", 501),
    _rejected("http-version-2", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    _rejected("http-version-1-2", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 505),
    _rejected("http2-prior-knowledge-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    _rejected("empty-header-name", b"GET / HTTP/1.1\r\n" + HOST + b": x\r\n\r\n"),
    _rejected("header-without-colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-A x\r\n\r\n"),
    _rejected("oversized-head", b"GET / HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
    _rejected(
        "too-many-header-fields",
        b"GET / HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
        431,
    ),
    _rejected("long-request-line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
    _rejected(
        "body-over-limit",
        b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 2000000\r\n\r\n",
        413,
    ),
]

#: Vectors a parser choice is known to get wrong, with the reason (the test marks them xfail).
PARSER_GAPS: dict[tuple[str, str], str] = {}

#: The request body limit the runners configure, so "body-over-limit" is over it.
MAX_REQUEST_BODY = 1_000_000
