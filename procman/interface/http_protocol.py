"""One HTTP/1.x connection: bytes in, one exchange per request, responses back in request order.

Theory of operation
-------------------
:class:`HTTPConnection` feeds socket bytes to a parser adapter (httptools or h11, chosen by
``--http``; see :mod:`procman.interface.http_events`) and turns its events into one :class:`~procman.interface.http_exchange.HTTPExchange` per request
(keep-alive and pipelining: the next request is parsed only once the previous response is
complete, so responses leave in order). Reading pauses while the exchange's body chunks wait for
room in the layer or while pipelined bytes pile up.

Responses are written as they arrive. When the client reads slowly the transport pauses us (we are
its registered producer); output then waits in a per-connection buffer bounded by
``max_response_buffer``, past which the client is dropped rather than letting memory grow.

An upgrade request hands the socket to a :class:`~procman.interface.ws_protocol.WebSocketConnection`;
from then on this protocol only forwards bytes and the connection-lost event to it. A TLS
connection whose ALPN negotiation chose ``h2`` is handed the same way, before any byte is read,
to an :class:`~procman.interface.http2_protocol.HTTP2Connection`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from procman.interface.http_exchange import HTTPExchange, http_date
from procman.interface.http_events import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ClientError,
    EndOfBody,
    RequestHead,
)
from procman.interface.http_parsers import make_parser
from procman.interface.http_response import response_head
from procman.interface.request_messages import address_pair, base_message
from procman.interface.write_now import write_now

if TYPE_CHECKING:
    from procman.interface.context import ServerContext
    from procman.interface.http2_protocol import HTTP2Connection
    from procman.interface.ws_protocol import WebSocketConnection

__all__ = ["HTTPConnection"]

logger = logging.getLogger("procman.interface.http")


@implementer(IHandshakeListener)
class HTTPConnection(Protocol):
    """The protocol for one accepted socket (TCP, UNIX, adopted fd or TLS).

    After an upgrade it forwards everything to its :class:`WebSocketConnection`; after a TLS
    handshake that chose ``h2`` by ALPN, to an :class:`HTTP2Connection`.
    """

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        options = server.options
        self.parser = make_parser(server.http_parser, server.head_limits)
        self.exchange: HTTPExchange | None = None
        #: The protocol that took the socket over: a WebSocket after an upgrade, HTTP/2 after
        #: TLS negotiated ``h2``. From then on this protocol forwards to it.
        self.successor: WebSocketConnection | HTTP2Connection | None = None
        self.idle_since = server.clock.seconds()
        self.client: list[Any] | None = None
        self.close_after_response = False
        self.closing = False
        self.connected = False
        self._read_paused = False
        self._write_paused = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._close_when_flushed = False
        self._producer_registered = False
        self._buffer_limit = options.max_head_size + options.body_chunk_size
        self._peer: Any = None
        self._host: Any = None
        self._secure = False

    # -- Twisted callbacks -------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        # Asked once: Twisted builds a new address object per call, and the interface check
        # is not free either; neither changes while the connection lives.
        self._peer = self.transport.getPeer()
        self._host = self.transport.getHost()
        self._secure = ISSLTransport.providedBy(self.transport)
        self.client = address_pair(self._peer)
        self.transport.registerProducer(self, True)
        self._producer_registered = True
        self.server.connection_opened(self)

    def handshakeCompleted(self) -> None:
        """TLS is up (nothing was read yet): if ALPN chose ``h2``, HTTP/2 takes the socket."""
        if getattr(self.transport, "negotiatedProtocol", None) != b"h2" or self.successor is not None:
            return
        # Loaded on the first h2 handshake, so a process without TLS never imports h2.
        from procman.interface.http2_protocol import HTTP2Connection  # noqa: PLC0415

        successor = HTTP2Connection(self.server, self.client)
        self.successor = successor
        self._producer_registered = False
        self.transport.unregisterProducer()
        successor.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.successor is not None:
            self.successor.dataReceived(data)
            return
        if self.closing:
            return
        self.parser.feed(data)
        self._advance()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected = False
        if self.successor is not None:
            try:
                self.successor.connectionLost(reason)
            finally:
                self.server.connection_closed(self)
            return
        if self.exchange is not None:
            self.exchange.abandon()
            self.exchange = None
        self.server.connection_closed(self)

    # -- IPushProducer: the transport tells us when the client reads too slowly ------------------------

    def pauseProducing(self) -> None:
        self._write_paused = True

    def resumeProducing(self) -> None:
        self._write_paused = False
        if self._pending:
            data, self._pending, self._pending_bytes = self._pending, [], 0
            self.transport.writeSequence(data)
        if self._close_when_flushed:
            self._lose_connection()

    def stopProducing(self) -> None:
        self._pending, self._pending_bytes = [], 0

    # -- request flow ------------------------------------------------------------------------------------

    def _advance(self) -> None:
        try:
            while not self.closing and self.successor is None:
                event = self.parser.next_event()
                if event is NEED_DATA or event is PAUSED:
                    break
                if isinstance(event, RequestHead):
                    self._on_head(event)
                elif isinstance(event, BodyData):
                    if self.exchange is not None:
                        self.exchange.on_body(event.data)
                elif isinstance(event, EndOfBody):
                    if self.exchange is not None:
                        self.exchange.on_body_end()
        except ClientError as exc:
            logger.info("bad request from %s: %s", self.client, exc.message)
            self.error_response(exc.status, exc.message + ".")
        except Exception:  # noqa: BLE001 - our bug or the layer's: answer it, keep serving others
            logger.exception("error handling a request from %s", self.client)
            self.error_response(500, "HTTP processing error.")
        self.update_reading()

    def _on_head(self, head: RequestHead) -> None:
        if head.upgrade_websocket:
            self._upgrade(head)
            return
        server = self.server
        options = server.options
        self.idle_since = server.clock.seconds()
        if server.shutting_down:
            self.error_response(503, "Server shutting down.")
            return
        limit = options.max_request_body
        if limit and head.content_length is not None and head.content_length > limit:
            # Refuse before reading a byte of it (the client may be waiting for 100 Continue).
            self.error_response(413, f"Request body exceeds {limit} bytes.", head=head)
            return
        message = base_message(
            head,
            reply_channel=server.new_reply_channel(),
            peer=self._peer,
            host=self._host,
            secure=self._secure,
            websocket=False,
            root_path=options.root_path,
            proxy_headers=options.proxy_headers,
            forwarded_allow_ips=options.forwarded_allow_ips,
        )
        message["method"] = head.method
        message["http_version"] = head.http_version
        if options.proxy_headers and message["client"] is not None:
            self.client = message["client"]
        self.exchange = HTTPExchange(self, head, message)
        if head.expect_continue and head.has_body and head.http_version == "1.1":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _upgrade(self, head: RequestHead) -> None:
        if self.server.shutting_down:
            self.error_response(503, "Server shutting down.")
            return
        websocket = self.server.websocket_factory.buildProtocol(self.transport.getPeer())
        websocket.head = head
        self.successor = websocket
        self._producer_registered = False
        self.transport.unregisterProducer()
        websocket.makeConnection(self.transport)
        websocket.dataReceived(head.raw + self.parser.take_buffer())

    def update_reading(self) -> None:
        """Pause reading the socket while body chunks wait or pipelined bytes pile up."""
        if not self.connected or self.successor is not None:
            return
        backlogged = self.exchange is not None and self.exchange.body_backlogged
        should_pause = backlogged or self.parser.buffered > self._buffer_limit
        if should_pause and not self._read_paused:
            self._read_paused = True
            self.transport.pauseProducing()
        elif not should_pause and self._read_paused:
            self._read_paused = False
            self.transport.resumeProducing()

    def exchange_finished(self, exchange: HTTPExchange, keep_alive: bool) -> None:
        """Called by an exchange whose response is complete; start the next request or close."""
        if self.exchange is exchange:
            self.exchange = None
        self.idle_since = self.server.clock.seconds()
        if not keep_alive or self.closing or self.close_after_response:
            self.close()
            return
        self.parser.start_next()
        self._advance()

    # -- output ----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write to the client, or buffer (bounded) while the transport asked us to pause."""
        if not data or not self.connected:
            return
        if not self._write_paused:
            write_now(self.transport, data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self.server.options.max_response_buffer:
            logger.warning(
                "client %s reads too slowly (%d bytes waiting); dropping it",
                self.client,
                self._pending_bytes,
            )
            self.drop()

    def error_response(
        self,
        status: int,
        text: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        head: RequestHead | None = None,
    ) -> None:
        """Answer with a small plain-text error and close the connection.

        If a response has already started nothing more can be said: the connection is dropped.
        """
        exchange = self.exchange
        if exchange is not None:
            head = exchange.head
            if exchange.response_started:
                self.drop()
                return
            exchange.abandon()
            self.exchange = None
        body = text.encode("utf-8") + b"\n"
        headers = [
            (b"date", http_date(self.server.clock.seconds())),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ] + (extra_headers or [])
        version = head.http_version if head is not None else "1.1"
        self.write(response_head(status, headers, version))
        if head is None or head.method != "HEAD":
            self.write(body)
        request = f"{head.method} {head.target.decode('ascii', 'replace')}" if head else "-"
        self.server.log_access(self.client, request, status, len(body))
        self.close()

    def close(self) -> None:
        """Close after everything written so far has been sent."""
        if self.closing:
            return
        self.closing = True
        if self._pending:
            self._close_when_flushed = True
        else:
            self._lose_connection()
        # Reading must go on so Twisted notices the close; unpause if we paused it.
        if self._read_paused:
            self._read_paused = False
            self.transport.resumeProducing()

    def _lose_connection(self) -> None:
        # Unregister first: a TLS transport does not start its shutdown while a producer is
        # registered, so the client would wait forever for the end of a close-delimited body.
        if self._producer_registered:
            self._producer_registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def drop(self) -> None:
        """Abort the connection at once (no flushing)."""
        self.closing = True
        self._pending, self._pending_bytes = [], 0
        if self.exchange is not None:
            self.exchange.abandon()
            self.exchange = None
        self.transport.abortConnection()

    # -- server-driven -----------------------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Run this connection's timeout checks (called periodically by the server)."""
        if self.successor is not None:
            self.successor.check_timeouts(now)
            return
        if self.exchange is not None:
            self.exchange.check_timeout(now)
            return
        if not self.closing and now - self.idle_since > self.server.options.keep_alive_timeout:
            if self.parser.buffered:
                self.error_response(408, "Request not received in time.")
            else:
                self.close()

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their response."""
        if self.successor is not None:
            self.successor.shutdown()
        elif self.exchange is None:
            self.close()
        else:
            self.close_after_response = True

    def abort(self) -> None:
        """Fast stop: drop the socket, telling the application about an unfinished request."""
        if self.successor is not None:
            self.successor.abort()
        else:
            self.drop()
