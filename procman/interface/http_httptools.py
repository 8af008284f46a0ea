"""The httptools (llhttp) parser adapter: llhttp's callbacks turned into the connection's events.

Theory of operation
-------------------
llhttp parses everything it is fed and reports it through callbacks; this adapter queues what they
report as events (:mod:`procman.interface.http_events`) and hands them out one at a time. After a
request's ``EndOfBody`` it answers ``PAUSED`` until ``start_next()``, so events of pipelined
requests wait in the queue; their bytes count in ``buffered``, which the connection bounds by
pausing the socket. llhttp runs strict (no lenient flags): bare CR/LF, obs-fold, bad chunk lines,
duplicate or malformed ``Content-Length`` and CL+TE are its errors, answered 400.

At ``on_headers_complete`` the head goes through :func:`~procman.interface.http_policy.request_head`.
A refusal, or any llhttp error, becomes a queued :class:`ClientError` after the events that
preceded it (so earlier pipelined requests are still answered first) and the adapter reads nothing
more. llhttp keeps a head it has not finished in its own buffers, so the adapter counts the bytes
fed while a head is open and refuses past the limits (414, 431) before llhttp holds more.

A WebSocket upgrade stops llhttp (``HttpParserUpgrade``); the bytes after the head are kept for
``take_buffer()``, which hands them to the WebSocket protocol.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import httptools

from procman.interface.http_events import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ClientError,
    EndOfBody,
    Event,
    RequestHead,
)
from procman.interface.http_policy import HeadLimits, request_head

__all__ = ["HttptoolsParser"]

#: What a queued head stands for beyond its bytes (the objects holding it), so a flood of tiny
#: pipelined requests counts in ``buffered`` as the memory it takes.
_EVENT_COST = 64

#: llhttp's messages for a request line whose version it will not parse.
_VERSION_ERRORS = ("Invalid HTTP version", "Pause on PRI")


class HttptoolsParser:
    """One connection's requests, parsed by llhttp. See the module docstring."""

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[tuple[Any, int]] = deque()  # (event, bytes it stands for)
        self._queued_bytes = 0
        self._paused = False
        self._stopped = False  # after an error or an upgrade: bytes are no longer parsed
        self._leftover = bytearray()
        self._in_head = False
        self._head_bytes = 0
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._error: ClientError | None = None

    # -- the parser interface ------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        head = self._head_bytes if self._in_head else 0  # a head llhttp holds unfinished
        return self._queued_bytes + len(self._leftover) + head

    def feed(self, data: bytes) -> None:
        if self._stopped:
            self._leftover += data
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._stopped = True
            self._leftover += data[exc.args[0] :]
            return
        except httptools.HttpParserInvalidMethodError as exc:
            # llhttp knows the registered methods only: a well-formed unknown one (``head``,
            # ``BREW``) is 501 as the policy says; a malformed request line is 400.
            if "Invalid method" in str(exc):
                self._fail(ClientError(501, "Method not implemented (methods are case-sensitive)"))
            else:
                self._fail(ClientError(400, f"Malformed request line: {exc}"))
            return
        except httptools.HttpParserError as exc:
            if self._error is None and str(exc).startswith(_VERSION_ERRORS):
                # A well-formed version llhttp does not serve (HTTP/1.2, 3.0, the HTTP/2
                # preface): 505 as the policy says for every parser, not llhttp's 400.
                self._fail(ClientError(505, "HTTP version not supported (HTTP/1.0 and HTTP/1.1 only)"))
            else:
                self._fail(self._error or ClientError(400, f"Malformed request: {exc}"))
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_size:
                self._fail(ClientError(431, "Request header fields too large"))

    def next_event(self) -> Event:
        if self._paused:
            return PAUSED
        if not self._events:
            return NEED_DATA
        event, size = self._events.popleft()
        self._queued_bytes -= size
        if isinstance(event, ClientError):
            self._events.clear()
            raise event
        if isinstance(event, EndOfBody):
            self._paused = True
        return event

    def start_next(self) -> None:
        if not self._paused:
            raise RuntimeError("start_next() called while a request is still being parsed")
        self._paused = False

    def take_buffer(self) -> bytes:
        data = bytes(self._leftover)
        self._leftover.clear()
        return data

    # -- llhttp callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._url.clear()
        self._headers = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            self._refuse(ClientError(414, "Request line too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if len(self._headers) > self.limits.max_header_count:
            self._refuse(ClientError(431, "Too many request header fields"))
        if self._header_bytes + len(self._url) > self.limits.max_head_size:
            self._refuse(ClientError(431, "Request header fields too large"))

    def on_headers_complete(self) -> None:
        self._in_head = False
        head: RequestHead = self._guard(
            request_head,
            self._parser.get_method(),
            bytes(self._url),
            self._parser.get_http_version(),
            self._headers,
            self.limits,
        )
        self._queue(head, self._header_bytes + len(self._url) + _EVENT_COST)

    def on_body(self, body: bytes) -> None:
        self._queue(BodyData(body), len(body))

    def on_message_complete(self) -> None:
        self._queue(EndOfBody(), 0)

    # -- internals -----------------------------------------------------------------------------

    def _queue(self, event: Any, size: int) -> None:
        self._events.append((event, size))
        self._queued_bytes += size

    def _guard(self, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except ClientError as exc:
            self._refuse(exc)

    def _refuse(self, error: ClientError) -> None:
        """Stop llhttp from inside a callback; :meth:`feed` then queues ``error``."""
        self._error = error
        raise error

    def _fail(self, error: ClientError) -> None:
        self._stopped = True
        self._in_head = False
        self._queue(error, 0)
