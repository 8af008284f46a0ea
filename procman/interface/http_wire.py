"""HTTP/1.0 and HTTP/1.1 on the wire, without I/O: a request parser and response framing.

Theory of operation
-------------------
:class:`RequestParser` is fed the bytes a client sends and hands back events, one at a time, from
:meth:`RequestParser.next_event`::

    RequestHead -> BodyData* -> EndOfBody -> PAUSED ... start_next() -> RequestHead -> ...

It never touches a socket, so the connection protocol decides when to read more (``NEED_DATA``)
and when the next pipelined request may begin (``PAUSED`` until :meth:`RequestParser.start_next`,
which the protocol calls once the previous response is complete: responses go out in request
order). Bytes of pipelined requests stay buffered in the parser; the protocol bounds that buffer by
pausing the transport.

A request the server cannot accept raises :class:`ClientError` carrying the status to answer with
(400, 413, 414, 431, 501, 505): the client sent it, the connection must close after the answer.

:func:`response_head` and :func:`chunk` frame the response the application sends.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass, field
from typing import Union

__all__ = [
    "BodyData",
    "ClientError",
    "EndOfBody",
    "NEED_DATA",
    "PAUSED",
    "RequestHead",
    "RequestParser",
    "chunk",
    "response_head",
    "LAST_CHUNK",
]

#: RFC 9110 token characters (method and header names).
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: A request target may hold visible ASCII only (no spaces, no control bytes, no 8-bit bytes).
_TARGET = re.compile(rb"^[\x21-\x7e]+$")
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,16})(?:;.*)?$")


class ClientError(Exception):
    """The client sent something we will not process; answer ``status`` and close.

    :param status: HTTP status code to answer with.
    :param message: human-readable reason, safe to show to the client and to log.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class RequestHead:
    """The request line and headers of one request.

    ``headers`` holds ``(lower-cased name, raw value)`` pairs in arrival order, duplicates kept.
    ``raw`` is the exact bytes of the head (request line to the blank line), which a WebSocket
    upgrade hands to the WebSocket protocol.
    """

    method: str
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    raw: bytes
    keep_alive: bool
    content_length: int | None = None
    chunked: bool = False
    expect_continue: bool = False
    upgrade_websocket: bool = False

    @property
    def has_body(self) -> bool:
        """True when a body follows the head (chunked, or a non-zero Content-Length)."""
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass
class BodyData:
    """A piece of the request body (already de-chunked)."""

    data: bytes


@dataclass
class EndOfBody:
    """The request body is complete (also emitted for requests without a body)."""

    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: More bytes are needed before the next event.
NEED_DATA = _Sentinel("NEED_DATA")
#: The current request is complete; call :meth:`RequestParser.start_next` for the next one.
PAUSED = _Sentinel("PAUSED")

Event = Union[RequestHead, BodyData, EndOfBody, _Sentinel]

_HEAD, _BODY_LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _DONE = range(7)


class RequestParser:
    """Incremental parser for the requests on one HTTP/1.x connection.

    :param max_request_line: longest request line accepted (longer -> 414).
    :param max_head_size: largest request head (line + headers) accepted (larger -> 431).
    :param max_header_count: most header fields accepted (more -> 431).
    """

    def __init__(
        self,
        max_request_line: int = 8192,
        max_head_size: int = 32768,
        max_header_count: int = 100,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_head_size = max_head_size
        self.max_header_count = max_header_count
        self._buffer = bytearray()
        self._state = _HEAD
        self._remaining = 0  # bytes left in the current Content-Length body or chunk
        self._trailers: list[tuple[bytes, bytes]] = []

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append bytes received from the client."""
        self._buffer += data

    def take_buffer(self) -> bytes:
        """Remove and return all unparsed bytes (used when the connection changes protocol)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def start_next(self) -> None:
        """Allow parsing of the next request after the previous one's response completed."""
        if self._state != _DONE:
            raise RuntimeError("start_next() called while a request is still being parsed")
        self._state = _HEAD

    def next_event(self) -> Event:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``; raise :class:`ClientError`."""
        state = self._state
        if state == _HEAD:
            return self._parse_head()
        if state == _BODY_LENGTH:
            if self._remaining == 0:
                self._state = _DONE
                return EndOfBody()
            if not self._buffer:
                return NEED_DATA
            return BodyData(self._take(self._remaining))
        if state == _CHUNK_SIZE_LINE:
            return self._parse_chunk_size()
        if state == _CHUNK_DATA:
            if not self._buffer:
                return NEED_DATA
            data = self._take(self._remaining)
            if self._remaining == 0:
                self._state = _CHUNK_CRLF
            return BodyData(data)
        if state == _CHUNK_CRLF:
            if len(self._buffer) < 2:
                return NEED_DATA
            if self._buffer[:2] != b"\r\n":
                raise ClientError(400, "Malformed chunked body: chunk data not followed by CRLF")
            del self._buffer[:2]
            self._state = _CHUNK_SIZE_LINE
            return self.next_event()
        if state == _TRAILERS:
            return self._parse_trailers()
        return PAUSED

    # -- internals -------------------------------------------------------------------------------

    def _take(self, limit: int) -> bytes:
        data = bytes(self._buffer[:limit])
        del self._buffer[: len(data)]
        self._remaining -= len(data)
        return data

    def _parse_head(self) -> Event:
        # Tolerate empty lines before a request line (RFC 9112 section 2.2).
        while self._buffer[:2] == b"\r\n":
            del self._buffer[:2]
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0 and len(self._buffer) > self.max_request_line:
                raise ClientError(414, "Request line too long")
            if len(self._buffer) > self.max_head_size:
                raise ClientError(431, "Request header fields too large")
            return NEED_DATA
        if end + 4 > self.max_head_size:
            raise ClientError(431, "Request header fields too large")
        raw = bytes(self._buffer[: end + 4])
        del self._buffer[: end + 4]
        lines = raw[:end].split(b"\r\n")
        head = self._parse_request_line(lines[0])
        head.raw = raw
        if len(lines) - 1 > self.max_header_count:
            raise ClientError(431, "Too many request header fields")
        head.headers = _parse_fields(lines[1:])
        self._apply_framing(head)
        if head.chunked:
            self._state = _CHUNK_SIZE_LINE
        else:
            self._state = _BODY_LENGTH
            self._remaining = head.content_length or 0
        return head

    def _parse_request_line(self, line: bytes) -> RequestHead:
        if len(line) > self.max_request_line:
            raise ClientError(414, "Request line too long")
        parts = line.split(b" ")
        if len(parts) != 3:
            raise ClientError(400, "Malformed request line")
        method, target, version = parts
        if not _TOKEN.match(method):
            raise ClientError(400, "Malformed request method")
        if not _TARGET.match(target):
            raise ClientError(400, "Invalid characters in path")
        match = _VERSION.match(version)
        if not match:
            raise ClientError(400, "Malformed HTTP version")
        if match.group(1) != b"1":
            raise ClientError(505, "HTTP version not supported (HTTP/1.0 and HTTP/1.1 only)")
        http_version = "1.1" if match.group(2) != b"0" else "1.0"
        return RequestHead(
            method=method.decode("ascii").upper(),
            target=target,
            http_version=http_version,
            headers=[],
            raw=b"",
            keep_alive=False,
        )

    @staticmethod
    def _apply_framing(head: RequestHead) -> None:
        lengths = set()
        transfer_codings: list[bytes] = []
        connection_tokens: set[bytes] = set()
        upgrade = b""
        for name, value in head.headers:
            if name == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
            elif name == b"transfer-encoding":
                transfer_codings += [v.strip().lower() for v in value.split(b",")]
            elif name == b"connection":
                connection_tokens.update(v.strip().lower() for v in value.split(b","))
            elif name == b"expect":
                head.expect_continue = value.strip().lower() == b"100-continue"
            elif name == b"upgrade":
                upgrade = value.lower()
        if transfer_codings:
            if lengths:
                raise ClientError(400, "Both Transfer-Encoding and Content-Length given")
            if head.http_version == "1.0":
                raise ClientError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            if transfer_codings != [b"chunked"]:
                raise ClientError(501, "Only the 'chunked' transfer coding is supported")
            head.chunked = True
        elif lengths:
            if len(lengths) != 1:
                raise ClientError(400, "Conflicting Content-Length values")
            (length,) = lengths
            if not length.isdigit() or len(length) > 18:
                raise ClientError(400, "Invalid Content-Length")
            head.content_length = int(length)
        if head.http_version == "1.1":
            head.keep_alive = b"close" not in connection_tokens
        else:
            head.keep_alive = b"keep-alive" in connection_tokens
        head.upgrade_websocket = (
            head.method == "GET" and b"upgrade" in connection_tokens and b"websocket" in upgrade
        )

    def _parse_chunk_size(self) -> Event:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 1024:
                raise ClientError(400, "Malformed chunked body: chunk size line too long")
            return NEED_DATA
        line = bytes(self._buffer[:end]).strip()
        del self._buffer[: end + 2]
        match = _CHUNK_SIZE.match(line)
        if not match:
            raise ClientError(400, "Malformed chunked body: bad chunk size")
        size = int(match.group(1), 16)
        if size == 0:
            self._state = _TRAILERS
            return self.next_event()
        self._remaining = size
        self._state = _CHUNK_DATA
        return self.next_event()

    def _parse_trailers(self) -> Event:
        if self._buffer[:2] == b"\r\n":
            del self._buffer[:2]
            self._state = _DONE
            return EndOfBody()
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 8192:
                raise ClientError(431, "Request trailer fields too large")
            return NEED_DATA
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        self._state = _DONE
        return EndOfBody(trailers=_parse_fields(block.split(b"\r\n")))


def _parse_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise ClientError(400, "Obsolete header line folding is not accepted")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise ClientError(400, "Malformed header line")
        value = value.strip(b" \t")
        if any(b < 0x20 and b != 0x09 or b == 0x7F for b in value):
            raise ClientError(400, "Control characters in a header value")
        fields.append((name.lower(), value))
    return fields


# -- responses -----------------------------------------------------------------------------------

#: Headers the server frames itself; the application's values for them are replaced.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})

LAST_CHUNK = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase for ``status`` (``b"Unknown"`` for unregistered codes)."""
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def response_head(status: int, headers: list[tuple[bytes, bytes]], http_version: str) -> bytes:
    """Serialise a status line and header block (ending with the blank line).

    ``headers`` must already be validated bytes pairs; nothing is added here.
    """
    version = b"HTTP/1.1" if http_version == "1.1" else b"HTTP/1.0"
    parts = [b"%s %d %s\r\n" % (version, status, reason_phrase(status))]
    parts += [b"%s: %s\r\n" % (name, value) for name, value in headers]
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one chunk of a chunked body (empty data gives nothing to write)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)
