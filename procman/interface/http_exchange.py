"""One HTTP request and its response: the ASGI-1 side of an exchange on a connection.

Theory of operation
-------------------
An :class:`HTTPExchange` is registered under its own reply channel for as long as its response is
not complete. Request bodies up to ``body_chunk_size`` travel inline in ``http.request``; a larger
body opens a ``body_channel`` and is sent in chunks as it arrives. When the layer answers
``ChannelFull`` the chunk waits, the connection stops reading its socket (backpressure reaches the
client through TCP) and the send is retried with a growing delay, so at most about one chunk plus
one socket read is buffered.

Response messages are framed (``Content-Length``, chunked, or close-delimited on HTTP/1.0) and
handed to the connection, which writes them or holds them (bounded) for a slow client.

Every exchange has a progress clock (request sent, body chunk, response message). The server's
periodic check closes exchanges whose clock is older than ``http_timeout``: 408 when the client
stalls its upload, 503 when the application has not started a response, a dropped connection when
a started streaming response stalls (a status line can no longer be sent).
"""

from __future__ import annotations

import logging
from collections import deque
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from procman.interface.http_events import RequestHead
from procman.interface.http_response import HOP_BY_HOP, LAST_CHUNK, chunk, response_head

if TYPE_CHECKING:
    from procman.interface.context import ExchangeConnection

__all__ = ["HTTPExchange", "http_date"]

logger = logging.getLogger("procman.interface.http")

_RETRY_FIRST = 0.005
_RETRY_MAX = 0.25

_date_cache: tuple[int, bytes] = (-1, b"")


def http_date(now: float) -> bytes:
    """The ``Date`` header value for ``now`` (formatted once per second)."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True).encode("ascii"))
    return _date_cache[1]


def _as_header_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("latin-1")
    else:
        raise ValueError(f"response header {what} must be bytes, got {type(value).__name__}")
    if b"\r" in data or b"\n" in data or b"\x00" in data:
        raise ValueError(f"response header {what} contains CR, LF or NUL: {data[:60]!r}")
    return data


class HTTPExchange:
    """One request and its response; registered under its own reply channel.

    Created by an HTTP/1.x connection (or an HTTP/2 stream) when a request head arrives; :meth:`deliver` receives the
    application's Response / Response Chunk messages.
    """

    def __init__(self, connection: ExchangeConnection, head: RequestHead, message: dict[str, Any]):
        self.connection = connection
        self.server = connection.server
        self.head = head
        self.message = message
        self.reply_channel: str = message["reply_channel"]
        self.path: str = message["path"]
        now = self.server.clock.seconds()
        self.started = now
        self.last_progress = now
        self.body = bytearray()
        self.body_size = 0
        self.body_channel: str | None = None
        self.body_outbox: deque[dict[str, Any]] = deque()
        self.body_complete = False
        self.request_sent = False
        self.response_started = False
        self.done = False
        self.status: int | None = None
        self.bytes_out = 0
        self._head_out = b""
        self.keep_alive = head.keep_alive
        self._chunked = False
        self._no_body = False
        self._declared_length: int | None = None
        self._retry_call: Any = None
        self._retry_delay = _RETRY_FIRST
        self._complained = False
        self.server.register(self.reply_channel, self)

    # -- request side --------------------------------------------------------------------------------

    @property
    def body_backlogged(self) -> bool:
        """True while body chunks wait for room in the layer (the socket must not be read)."""
        return bool(self.body_outbox)

    def on_body(self, data: bytes) -> None:
        """Take a piece of the request body from the parser."""
        if self.done:
            return
        self.body_size += len(data)
        self.last_progress = self.server.clock.seconds()
        limit = self.server.options.max_request_body
        if limit and self.body_size > limit:
            self._body_too_large()
            return
        self.body += data
        size = self.server.options.body_chunk_size
        if len(self.body) < size:
            return
        if not self.request_sent:
            self.body_channel = self.server.layer.new_channel("http.request.body?")
            if not self._send_request(bytes(self.body[:size]), self.body_channel):
                return
            del self.body[:size]
        while len(self.body) >= size:
            self.body_outbox.append({"content": bytes(self.body[:size]), "more_content": True})
            del self.body[:size]
        self._flush_body()

    def on_body_end(self) -> None:
        """The request body is complete (or there was none)."""
        if self.done:
            return
        self.body_complete = True
        self.last_progress = self.server.clock.seconds()
        if not self.request_sent:
            self._send_request(bytes(self.body), None)
        else:
            self.body_outbox.append({"content": bytes(self.body), "more_content": False})
            self._flush_body()
        self.body.clear()

    def _send_request(self, body: bytes, body_channel: str | None) -> bool:
        message = self.message  # sent once: completed in place, no copy
        message["body"] = body
        if body_channel is not None:
            message["body_channel"] = body_channel
        try:
            self.server.send("http.request", message)
        except self.server.ChannelFull:
            logger.warning("http.request is full; answering 503 for %s", self.path)
            self.connection.error_response(
                503,
                "Request queue full.",
                extra_headers=[(b"retry-after", str(self.server.options.retry_after).encode())],
            )
            return False
        except self.server.MessageTooLarge:
            self.connection.error_response(431, "Request headers too large for the channel layer.")
            return False
        self.request_sent = True
        return True

    def _flush_body(self) -> None:
        if self._retry_call is not None and self._retry_call.active():
            return
        self._retry_call = None
        while self.body_outbox and not self.done:
            try:
                self.server.send(self.body_channel, self.body_outbox[0])
            except self.server.ChannelFull:
                # The application reads the body slower than the client sends it: stop reading
                # the socket and retry; the delay grows so a stuck consumer costs little CPU.
                self._retry_call = self.server.clock.callLater(self._retry_delay, self._flush_body)
                self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)
                self.connection.update_reading()
                return
            except self.server.MessageTooLarge:
                logger.error(
                    "body chunks of %d bytes exceed the layer's max message size; lower "
                    "body_chunk_size or raise max_message_size", len(self.body_outbox[0]["content"])
                )
                self.connection.error_response(413, "Request body chunk too large for the channel layer.")
                return
            self.body_outbox.popleft()
            self._retry_delay = _RETRY_FIRST
            self.last_progress = self.server.clock.seconds()
        self.connection.update_reading()

    def _body_too_large(self) -> None:
        limit = self.server.options.max_request_body
        logger.warning("request body for %s exceeds %d bytes; answering 413", self.path, limit)
        self._abandon_body()
        self.connection.error_response(413, f"Request body exceeds {limit} bytes.")

    def _abandon_body(self) -> None:
        """Tell a consumer reading ``body_channel`` that no more body will come."""
        self.body_outbox.clear()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        if self.body_channel is not None and self.request_sent and not self.body_complete:
            self.server.send_disconnect(self.body_channel, {"closed": True})
            self.body_complete = True

    # -- response side -------------------------------------------------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """Apply one Response or Response Chunk message from the application."""
        if self.done:
            return
        self.last_progress = self.server.clock.seconds()
        if "status" in message:
            if self.response_started:
                if not self._complained:
                    self._complained = True
                    logger.error(
                        "application sent a second Response (with 'status') for %s; "
                        "ignoring it (send chunks without 'status')",
                        self.path,
                    )
                return
            try:
                self._start_response(message)
            except ValueError as exc:
                logger.error("invalid Response for %s: %s; answering 500", self.path, exc)
                self.connection.error_response(500, "Invalid response from the application.")
                return
        elif not self.response_started:
            logger.error(
                "application sent a Response Chunk before a Response (no 'status') for %s; "
                "answering 500",
                self.path,
            )
            self.connection.error_response(500, "Invalid response from the application.")
            return
        content = message.get("content", b"")
        if not isinstance(content, bytes):
            logger.error("response 'content' for %s must be bytes; dropping the chunk", self.path)
            content = b""
        self._write_body(content)
        if not message.get("more_content", False):
            self._finish()
        elif self._head_out:
            self._emit(b"")  # a streamed response: the head goes out now

    def _start_response(self, message: dict[str, Any]) -> None:
        status = message["status"]
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise ValueError(f"'status' must be an int from 200 to 599, got {status!r}")
        raw_headers = message.get("headers", [])
        if not isinstance(raw_headers, (list, tuple)):
            raise ValueError("'headers' must be a list of [name, value] pairs")
        headers: list[tuple[bytes, bytes]] = []
        app_close = False
        has_date = False
        for pair in raw_headers:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"each header must be a [name, value] pair, got {pair!r}")
            name = _as_header_bytes(pair[0], "name")
            value = _as_header_bytes(pair[1], "value")
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                app_close = app_close or (lowered == b"connection" and b"close" in value.lower())
                continue
            if lowered == b"content-length":
                if not value.strip().isdigit():
                    raise ValueError(f"invalid content-length {value!r}")
                self._declared_length = int(value)
            elif lowered == b"date":
                has_date = True
            headers.append((name, value))
        self._no_body = self.head.method == "HEAD" or status in (204, 304)
        self.status = status
        self.response_started = True
        self._has_date = has_date
        self._send_head(status, headers, bool(message.get("more_content", False)),
                        message.get("content", b""), app_close)

    def _send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], more: bool, content: Any, app_close: bool
    ) -> None:
        """Frame and write the response head (HTTP/1.x: length, chunked or close-delimited).

        :param headers: the application's validated headers, hop-by-hop ones removed.
        :param more: more Response Chunks follow. :param content: the first message's body.
        :param app_close: the application asked for ``Connection: close``.
        """
        version = self.head.http_version
        if self._declared_length is None and status not in (204, 304):
            if not more:
                headers.append((b"content-length", str(len(content)).encode()))
            elif self._no_body:
                pass
            elif version == "1.1":
                self._chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
            else:
                self.keep_alive = False  # HTTP/1.0 streaming: the body ends when we close
        if not self._has_date:
            headers.append((b"date", http_date(self.server.clock.seconds())))
        if app_close or self.server.shutting_down or self.connection.close_after_response:
            self.keep_alive = False
        if not self.body_complete:
            # We would have to drain an unread body before the next request; just close.
            self.keep_alive = False
        if not self.keep_alive:
            headers.append((b"connection", b"close"))
        elif version == "1.0":
            headers.append((b"connection", b"keep-alive"))
        # Held until this reply's body is added: head and body leave in one write (one send, and
        # no small second segment for Nagle to hold back until the client's delayed ACK).
        self._head_out = response_head(status, headers, version)

    def _write_body(self, content: bytes) -> None:
        if self._no_body or not content:
            return
        if self._declared_length is not None:
            room = self._declared_length - self.bytes_out
            if len(content) > room:
                logger.error(
                    "response for %s is longer than its content-length; truncating", self.path
                )
                content = content[:room]
        self.bytes_out += len(content)
        self._emit(chunk(content) if self._chunked else content)

    def _emit(self, data: bytes) -> None:
        """Write ``data``, after the response head if that is still held."""
        head, self._head_out = self._head_out, b""
        self.connection.write(head + data if head else data)

    def _finish(self) -> None:
        if self._chunked:
            self._emit(LAST_CHUNK)
        elif self._head_out:
            self._emit(b"")
        if self._declared_length is not None and self.bytes_out < self._declared_length:
            if not self._no_body:
                logger.error("response for %s is shorter than its content-length", self.path)
                self.keep_alive = False
        self.done = True
        self._release()
        self.server.log_access(
            self.connection.client, f"{self.head.method} {self.path}", self.status, self.bytes_out
        )
        self.connection.exchange_finished(self, self.keep_alive)

    # -- endings ---------------------------------------------------------------------------------------

    def _release(self) -> None:
        self.server.unregister(self.reply_channel)
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None

    def abandon(self) -> None:
        """The request ends without a complete response (client gone, timeout, shutdown).

        Sends ``http.disconnect`` if the application has the request, and closes an unfinished
        ``body_channel``. Idempotent.
        """
        if self.done:
            return
        self.done = True
        self._abandon_body()
        self._release()
        if self.request_sent:
            self.server.send_disconnect(
                "http.disconnect", {"reply_channel": self.reply_channel, "path": self.path}
            )

    def check_timeout(self, now: float) -> None:
        """Enforce ``max_request_time`` on the upload and ``http_timeout`` on the progress clock."""
        if self.done:
            return
        total = self.server.options.max_request_time
        if total and not self.body_complete and not self.body_backlogged and now - self.started > total:
            # A body trickled in just fast enough to keep the progress clock alive would hold the
            # connection (and the application's body channel) forever; the whole upload has a
            # deadline. Not while the application is the slow side (backlogged).
            logger.warning("request body for %s not complete within %ss; answering 408", self.path, total)
            self.connection.error_response(408, "Request body not received in time.")
            return
        limit = self.server.options.http_timeout
        if now - self.last_progress <= limit:
            return
        if not self.body_complete and not self.body_backlogged:
            logger.warning("client stalled its request body for %s; answering 408", self.path)
            self.connection.error_response(408, "Request body not received in time.")
        elif not self.response_started:
            logger.warning("no response for %s within %ss; answering 503", self.path, limit)
            self.connection.error_response(
                503, "Worker server failed to respond within time limit."
            )
        else:
            logger.warning("streaming response for %s stalled for %ss; closing", self.path, limit)
            self.connection.drop()
