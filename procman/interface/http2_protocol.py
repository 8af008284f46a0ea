"""HTTP/2 on a TLS connection that negotiated ``h2``: every stream is one ASGI-1 HTTP request.

Theory of operation
-------------------
The ``h2`` library holds the protocol state; this module only feeds it the socket's bytes, turns
its events into the same ASGI-1 messages HTTP/1.1 produces and writes what it wants sent. A
stream's request head passes the HTTP/1.1 rules (``http_policy.request_head``: methods, targets,
header count, ``Content-Length``) after its pseudo-header fields become a request line and
``Host``; it then becomes an :class:`HTTP2Exchange` - the HTTP/1.1 exchange (reply channel,
inline body or ``body_channel``, limits, timeouts, response validation) with HTTP/2 framing of the
response head. The exchange talks to a :class:`_Stream`, which offers it the connection interface
HTTP/1.1 offers (``write``, ``error_response``, ``update_reading``, ``exchange_finished``, ``drop``)
for one stream: an error answers and ends that stream only.

Flow control is the backpressure: request body bytes are acknowledged (``WINDOW_UPDATE``) only
while the stream's body chunks are not waiting for room in the layer, so a client can have at most
one flow-control window in flight per stream. Response bytes wait per stream for the client's
window; all that waits on one connection is bounded by ``max_response_buffer`` (then the client is
dropped, as for HTTP/1.1), and reading stops while the socket's send buffer is full.

Hostile clients: ``h2`` enforces ``SETTINGS_MAX_CONCURRENT_STREAMS`` (``--h2-max-concurrent-
streams``) and the header list size (``SETTINGS_MAX_HEADER_LIST_SIZE`` = ``--max-head-size``),
answering violations with ``GOAWAY``. Resets are counted per connection per second; more than
``--h2-max-resets`` (the "rapid reset" attack, CVE-2023-44487) gets ``GOAWAY ENHANCE_YOUR_CALM``
and the connection is closed. Server push is never used (``http.response.push`` is not part of
the ASGI-1 messages we accept; the spec lets a server ignore it).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from procman.interface.http_events import ClientError, RequestHead
from procman.interface.http_exchange import HTTPExchange, http_date
from procman.interface.http_policy import request_head
from procman.interface.request_messages import base_message

if TYPE_CHECKING:
    from procman.interface.context import ServerContext

__all__ = ["HTTP2Connection", "HTTP2Exchange", "http2_request_head"]

logger = logging.getLogger("procman.interface.http2")


def http2_request_head(headers: list[tuple[bytes, bytes]], limits: Any) -> RequestHead:
    """The :class:`RequestHead` of an HTTP/2 request, checked by the HTTP/1.1 rules.

    ``:method`` and ``:path`` become the request line, ``:authority`` the ``Host`` field (unless
    one is sent), and several ``cookie`` fields one, joined by ``"; "`` (RFC 9113 section 8.2.3).
    ``h2`` has already refused malformed HTTP/2 fields (upper case names, connection-specific
    fields, missing pseudo-header fields).

    :raises ClientError: the status to answer (400, 431, 501...).
    """
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for name, value in headers:
        if name.startswith(b":"):
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    authority = pseudo.get(b":authority")
    if authority and not any(name == b"host" for name, _ in fields):
        fields.insert(0, (b"host", authority))
    target = pseudo.get(b":path", b"")
    if not target:
        # CONNECT has no :path; the method rule answers it with 501.
        target = b"*" if pseudo.get(b":method") == b"CONNECT" else b""
    head = request_head(pseudo.get(b":method", b""), target, "1.1", fields, limits)
    head.http_version = "2"
    head.keep_alive = True
    return head


class HTTP2Exchange(HTTPExchange):
    """An :class:`HTTPExchange` whose response head is an HTTP/2 ``HEADERS`` frame."""

    def _send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], more: bool, content: Any, app_close: bool
    ) -> None:
        if self._declared_length is None and not more and status not in (204, 304):
            headers.append((b"content-length", str(len(content)).encode()))
        if not any(name.lower() == b"date" for name, _ in headers):
            headers.append((b"date", http_date(self.server.clock.seconds())))
        self.connection.send_head(status, headers)


class _Stream:
    """One stream: what an :class:`HTTP2Exchange` sees as its connection."""

    def __init__(self, connection: HTTP2Connection, stream_id: int) -> None:
        self.connection = connection
        self.server = connection.server
        self.stream_id = stream_id
        self.client = connection.client
        self.close_after_response = False
        self.exchange: HTTP2Exchange | None = None
        self.method = "GET"
        #: Request body bytes received and not yet acknowledged to the client (flow control).
        self.unacknowledged = 0
        self.remote_ended = False
        self.output: deque[bytes] = deque()
        self.ending = False
        self.closed = False
        self.last_progress = connection.server.clock.seconds()

    # -- the interface HTTPExchange uses -----------------------------------------------------------------

    def send_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the response's ``HEADERS`` frame (raises ValueError for fields h2 refuses)."""
        self.connection.send_headers(self, status, headers)

    def write(self, data: bytes) -> None:
        """Queue response body bytes; they leave as the client's flow-control window allows."""
        if data and not self.closed:
            self.output.append(data)
            self.connection.output_queued(self, len(data))

    def exchange_finished(self, exchange: HTTPExchange, keep_alive: bool) -> None:
        """The response is complete: end the stream once its bytes are sent."""
        self.ending = True
        self.connection.flush(self)

    def update_reading(self) -> None:
        """Acknowledge received body bytes unless they wait for room in the layer."""
        self.connection.acknowledge(self)

    def error_response(
        self,
        status: int,
        text: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        head: RequestHead | None = None,
    ) -> None:
        """Answer this stream with a small plain-text error and end it (the connection stays).

        If its response has already started, the stream is reset instead.
        """
        exchange = self.exchange
        if exchange is not None:
            if exchange.response_started:
                self.drop()
                return
            exchange.abandon()
        if self.closed:
            return
        body = text.encode("utf-8") + b"\n"
        headers = [
            (b"date", http_date(self.server.clock.seconds())),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ] + (extra_headers or [])
        self.connection.send_headers(self, status, headers)
        if self.method != "HEAD":
            self.write(body)
        path = exchange.path if exchange is not None else (head.target.decode("ascii", "replace") if head else "-")
        self.server.log_access(self.client, f"{self.method} {path}", status, len(body))
        self.ending = True
        self.connection.flush(self)

    def drop(self) -> None:
        """Reset this stream at once (the response cannot be completed)."""
        if self.exchange is not None:
            self.exchange.abandon()
        self.connection.reset(self, ErrorCodes.INTERNAL_ERROR)


class HTTP2Connection(Protocol):
    """HTTP/2 server side of one TLS connection (it takes the socket over from HTTP/1.1).

    :param server: the interface server. :param client: the peer's ``[host, port]`` (for logs).
    """

    def __init__(self, server: ServerContext, client: list[Any] | None) -> None:
        self.server = server
        self.client = client
        options = server.options
        self.h2 = H2Connection(config=H2Configuration(client_side=False, header_encoding=None))
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: options.h2_max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: options.max_head_size,
            },
        )
        # Initial values take effect without an ACK, so the decoder is told directly.
        self.h2.decoder.max_header_list_size = options.max_head_size
        self.streams: dict[int, _Stream] = {}
        self.buffered = 0
        self.idle_since = server.clock.seconds()
        self.closing = False
        self.close_when_idle = False
        self._lost = False
        self._send_scheduled = False
        self._write_paused = False
        self._resets = 0
        self._reset_window = 0.0
        self._handlers = {
            RequestReceived: self._on_request,
            DataReceived: self._on_data,
            StreamEnded: self._on_stream_ended,
            StreamReset: self._on_reset,
            WindowUpdated: self._on_window,
            RemoteSettingsChanged: self._on_window,
            ConnectionTerminated: self._on_terminated,
        }

    # -- Twisted callbacks -------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.h2.initiate_connection()
        self.transport.registerProducer(self, True)
        self._send_now()

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            # h2 has queued a GOAWAY with the error code (PROTOCOL_ERROR, ENHANCE_YOUR_CALM...).
            logger.info("HTTP/2 protocol error from %s: %s", self.client, exc)
            self._send_now()
            self._lose_connection()
            return
        for event in events:
            handler = self._handlers.get(type(event))
            if handler is not None and not self.closing:
                try:
                    handler(event)
                except Exception:  # noqa: BLE001 - our bug or the layer's: one stream, not all
                    logger.exception("error handling %s from %s", type(event).__name__, self.client)
                    stream = self.streams.get(getattr(event, "stream_id", 0))
                    if stream is not None:
                        stream.drop()
        self._send()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._abandon_streams()

    def _abandon_streams(self) -> None:
        """Every open stream ends now: ``http.disconnect`` for requests the application has."""
        self.closing = True
        for stream in list(self.streams.values()):
            stream.closed = True
            if stream.exchange is not None:
                stream.exchange.abandon()
        self.streams.clear()

    # -- IPushProducer: stop sending (and reading) while the client does not read -------------------

    def pauseProducing(self) -> None:
        self._write_paused = True
        self.transport.pauseProducing()  # no more PING/SETTINGS answers to pile up meanwhile

    def resumeProducing(self) -> None:
        self._write_paused = False
        self.transport.resumeProducing()
        for stream in list(self.streams.values()):
            self.flush(stream)

    def stopProducing(self) -> None:
        self.closing = True

    # -- h2 events ---------------------------------------------------------------------------------------

    def _on_request(self, event: RequestReceived) -> None:
        stream = _Stream(self, event.stream_id)
        self.streams[event.stream_id] = stream
        if self.server.shutting_down or self.close_when_idle:
            self.reset(stream, ErrorCodes.REFUSED_STREAM)
            return
        method = dict(event.headers).get(b":method", b"GET")
        stream.method = method.decode("latin-1")
        try:
            head = http2_request_head(event.headers, self.server.head_limits)
        except ClientError as exc:
            logger.info("bad request from %s: %s", self.client, exc.message)
            stream.error_response(exc.status, exc.message + ".")
            return
        limit = self.server.options.max_request_body
        if limit and head.content_length is not None and head.content_length > limit:
            stream.error_response(413, f"Request body exceeds {limit} bytes.", head=head)
            return
        transport = self.transport
        message = base_message(
            head,
            reply_channel=self.server.new_reply_channel(),
            peer=transport.getPeer(),
            host=transport.getHost(),
            secure=True,
            websocket=False,
            root_path=self.server.options.root_path,
            proxy_headers=self.server.options.proxy_headers,
            forwarded_allow_ips=self.server.options.forwarded_allow_ips,
        )
        message["method"] = head.method
        message["http_version"] = "2"
        stream.exchange = HTTP2Exchange(stream, head, message)

    def _on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        length = event.flow_controlled_length
        if stream is None or stream.exchange is None or stream.exchange.done:
            # Nobody wants these bytes (the stream was answered already): free the window.
            self.h2.acknowledge_received_data(length, event.stream_id)
            return
        stream.unacknowledged += length
        stream.exchange.on_body(event.data)
        self.acknowledge(stream)

    def _on_stream_ended(self, event: StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.remote_ended = True
        if stream.exchange is not None:
            stream.exchange.on_body_end()

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:
            stream.closed = True
            self._forget(stream)
            if stream.exchange is not None:
                stream.exchange.abandon()
        if event.remote_reset:
            self._count_reset()

    def _count_reset(self) -> None:
        now = self.server.clock.seconds()
        if now - self._reset_window >= 1.0:
            self._reset_window, self._resets = now, 0
        self._resets += 1
        if self._resets > self.server.options.h2_max_resets:
            logger.warning(
                "client %s reset more than %d streams in a second; closing (rapid reset)",
                self.client, self.server.options.h2_max_resets,
            )
            self.close(ErrorCodes.ENHANCE_YOUR_CALM)

    def _on_window(self, event: Any) -> None:
        stream_id = getattr(event, "stream_id", 0)
        targets = [self.streams[stream_id]] if stream_id in self.streams else list(self.streams.values())
        for stream in targets:
            self.flush(stream)

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        logger.debug("client %s sent GOAWAY (%s)", self.client, event.error_code)
        self._lose_connection()

    # -- output ------------------------------------------------------------------------------------------

    def send_headers(self, stream: _Stream, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send a response ``HEADERS`` frame; raises ValueError for fields HTTP/2 forbids."""
        if stream.closed:
            return
        fields = [(b":status", str(status).encode())] + [(name.lower(), value) for name, value in headers]
        try:
            self.h2.send_headers(stream.stream_id, fields)
        except ProtocolError as exc:
            raise ValueError(f"response header fields not allowed in HTTP/2: {exc}") from exc
        stream.last_progress = self.server.clock.seconds()
        self._send()

    def output_queued(self, stream: _Stream, size: int) -> None:
        """Account ``size`` queued bytes; drop a client that lets too much pile up."""
        self.buffered += size
        if self.buffered > self.server.options.max_response_buffer:
            logger.warning(
                "client %s reads too slowly (%d bytes waiting); dropping it", self.client, self.buffered
            )
            self.abort()
            return
        self.flush(stream)

    def flush(self, stream: _Stream) -> None:
        """Send what the flow-control windows allow of ``stream``'s queued bytes; end the stream
        when its response is complete and sent."""
        if stream.closed or self.closing:
            return
        stream_id = stream.stream_id
        while stream.output and not self._write_paused:
            room = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if room <= 0:
                break
            data = stream.output[0]
            piece = data[:room]
            if len(piece) == len(data):
                stream.output.popleft()
            else:
                stream.output[0] = data[room:]
            self.h2.send_data(stream_id, piece)
            self.buffered -= len(piece)
            stream.last_progress = self.server.clock.seconds()
        if stream.ending and not stream.output:
            self.h2.end_stream(stream_id)
            if not stream.remote_ended:
                # The response is complete before the request body: ask the client to stop
                # sending it (RFC 9113 section 8.1), after the frames that end the response.
                try:
                    self.h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
                except StreamClosedError:
                    # The client's END_STREAM came in the read being handled (h2 has seen it,
                    # its StreamEnded event is not ours yet): the stream is closed, as wanted.
                    pass
            self._finished(stream)
        self._send()

    def reset(self, stream: _Stream, code: int) -> None:
        """Reset ``stream`` with ``code`` and forget it."""
        if not stream.closed and not self.closing:
            try:
                self.h2.reset_stream(stream.stream_id, code)
            except ProtocolError:
                pass  # already closed on h2's side
        self._finished(stream)
        self._send()

    def acknowledge(self, stream: _Stream) -> None:
        """Open the client's window again for body bytes that no longer wait for the layer."""
        if not stream.unacknowledged or self.closing:
            return
        if stream.exchange is not None and stream.exchange.body_backlogged:
            return
        self.h2.acknowledge_received_data(stream.unacknowledged, stream.stream_id)
        stream.unacknowledged = 0
        self._send()

    def _finished(self, stream: _Stream) -> None:
        stream.closed = True
        self._forget(stream)
        self.streams.pop(stream.stream_id, None)
        if not self.streams:
            self.idle_since = self.server.clock.seconds()
            if self.close_when_idle:
                self.close()

    def _forget(self, stream: _Stream) -> None:
        self.buffered -= sum(len(data) for data in stream.output)
        stream.output.clear()

    def _send(self) -> None:
        """Write what h2 has queued at the end of this reactor turn: the frames of every stream
        that progressed meanwhile leave in one write (one TLS record, not one per frame)."""
        if not self._send_scheduled:
            self._send_scheduled = True
            self.server.reactor.callLater(0, self._send_now)

    def _send_now(self) -> None:
        self._send_scheduled = False
        data = self.h2.data_to_send()
        if data and not self._lost:
            self.transport.write(data)

    # -- server-driven -----------------------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Each stream's exchange timeouts; a stalled finished response is reset; an idle
        connection is closed after ``keep_alive_timeout``."""
        options = self.server.options
        for stream in list(self.streams.values()):
            exchange = stream.exchange
            if exchange is not None and not exchange.done:
                exchange.check_timeout(now)
            elif stream.output and now - stream.last_progress > options.http_timeout:
                logger.warning("client %s stopped reading a response; resetting it", self.client)
                self.reset(stream, ErrorCodes.CANCEL)
        if not self.streams and not self.closing and now - self.idle_since > options.keep_alive_timeout:
            self.close()

    def shutdown(self) -> None:
        """Graceful stop: refuse new streams, close once the open ones have finished."""
        self.close_when_idle = True
        if not self.streams:
            self.close()

    def close(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """Send ``GOAWAY`` with ``code`` and close after it."""
        if self.closing:
            return
        try:
            self.h2.close_connection(error_code=code)
        except ProtocolError:
            pass  # the connection is already closed on h2's side
        self._send_now()
        self._lose_connection()

    def _lose_connection(self) -> None:
        if self.closing and self._lost:
            return
        self.closing = self._lost = True
        self.transport.unregisterProducer()  # a TLS transport will not shut down with a producer
        if self._write_paused:
            self.transport.resumeProducing()  # reading must go on for Twisted to see the close
        self.transport.loseConnection()

    def abort(self) -> None:
        """Fast stop: drop the socket, telling the application about unfinished requests."""
        self._abandon_streams()
        self.transport.abortConnection()
