"""What an HTTP/1.x parser adapter hands the connection: request events, the parser interface, and
the error that carries the status to answer.

Theory of operation
-------------------
An adapter (``http_httptools.py``, ``http_h11.py``; chosen by ``http_parsers.make_parser``) is fed the bytes
a client sends and hands back events, one at a time, from ``next_event()``::

    RequestHead -> BodyData* -> EndOfBody -> PAUSED ... start_next() -> RequestHead -> ...

It never touches a socket, so the connection decides when to read more (``NEED_DATA``) and when the
next pipelined request may begin (``PAUSED`` until ``start_next()``, which the connection calls once
the previous response is complete: responses go out in request order). Bytes or events of
pipelined requests stay inside the adapter, which reports them as ``buffered``; the connection
bounds that by pausing the transport.

A request the server will not accept raises :class:`ClientError` from ``next_event()`` carrying the
status to answer with (400, 413, 414, 431, 501, 505): the connection answers it and closes. The
rules deciding those statuses live in ``http_policy.py``, once, for every adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Union

__all__ = [
    "BodyData",
    "ClientError",
    "EndOfBody",
    "Event",
    "NEED_DATA",
    "PAUSED",
    "RequestHead",
    "RequestParser",
]


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
    """The request line and headers of one request, as accepted by the policy.

    ``headers`` holds ``(lower-cased name, value)`` pairs in arrival order, duplicates kept, values
    without surrounding whitespace.
    """

    method: str
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
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

    @property
    def raw(self) -> bytes:
        """The head serialised again (request line, headers, blank line): what a WebSocket
        upgrade hands to Autobahn, which validates the handshake itself. Built from the
        validated fields, so every parser choice hands over the same, unambiguous bytes."""
        lines = [b"%s %s HTTP/%s" % (self.method.encode("ascii"), self.target, self.http_version.encode())]
        lines += [b"%s: %s" % (name, value) for name, value in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n"


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
#: The current request is complete; call ``start_next()`` for the next one.
PAUSED = _Sentinel("PAUSED")

Event = Union[RequestHead, BodyData, EndOfBody, _Sentinel]


class RequestParser(Protocol):
    """The interface every parser adapter offers the connection."""

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as events (bounded by pausing the socket)."""

    def feed(self, data: bytes) -> None:
        """Take bytes received from the client."""

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA`` or ``PAUSED``; raises :class:`ClientError`."""

    def start_next(self) -> None:
        """Allow the next pipelined request once the previous response is complete."""

    def take_buffer(self) -> bytes:
        """Remove and return the bytes after the current head (a WebSocket upgrade's frames)."""
