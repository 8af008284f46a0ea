"""One WebSocket connection: Autobahn does the framing, this class speaks ASGI-1 for it.

Theory of operation
-------------------
The HTTP connection parses the upgrade request, then hands the raw handshake bytes to a
:class:`WebSocketConnection`. Autobahn validates the handshake and calls :meth:`onConnect`, where
``websocket.connect`` (order 0) is sent and a Deferred is returned: the handshake stays open until
the application answers on the reply channel (:meth:`deliver`), following the spec's table:

============================  ==================================================================
state / reply                 effect
============================  ==================================================================
CONNECTING, ``accept: True``  complete the handshake (101), then send data / close if also given
CONNECTING, ``accept: False`` reject with HTTP 403; anything else in the message is ignored
CONNECTING, text/bytes        implicit accept, then send the frame (and close, if given)
CONNECTING, close only        reject with HTTP 403 (the close code is meaningless before 101)
OPEN, text/bytes              send one frame (empty payloads included)
OPEN, close                   close with the code (``True`` means 1000) after any frame
OPEN, accept                  ignored
CLOSING/CLOSED, anything      dropped
============================  ==================================================================

Frames become ``websocket.receive`` with ``order`` 1, 2, ...; ``websocket.disconnect`` carries
``order`` one past the last delivered frame and is sent exactly once for every connection whose
``websocket.connect`` reached the layer - including rejected, timed-out and backpressured
(1013) ones, a Daphne 1.x gap. A ``ChannelFull`` on ``websocket.connect`` answers HTTP 503 and
sends no disconnect (the application never heard of the socket).

Bounded buffers
---------------
* Bytes a client sends before the application accepts wait in Autobahn's buffer; past
  ``max_ws_pending`` the handshake is rejected with HTTP 400 and nothing more is read.
* Output for a client that does not read waits in the transport. This class is the transport's
  producer (through :class:`_OutputWatch`): while the transport says "pause", bytes sent are
  counted, and past ``max_ws_output_buffer`` the connection is dropped; the application's
  ``websocket.disconnect`` carries 1008 (policy violation). Pausing our reads from the layer
  instead is not possible per socket: one receive loop serves every socket of the process.
* An invalid close code from the client is answered with a 1002 close frame (Autobahn's
  protocol-violation path); the application is told 1002, the code actually sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport

from procman.interface.http_events import RequestHead
from procman.interface.request_messages import address_pair, base_message
from procman.interface.write_now import write_now
from procman.interface.ws_frames import FrameCache, send_prepared
from procman.interface.ws_twisted import WebSocketServerFactory, WebSocketServerProtocol

if TYPE_CHECKING:
    from procman.interface.context import ServerContext

__all__ = ["WebSocketConnection", "build_websocket_factory", "valid_close_code"]

logger = logging.getLogger("procman.interface.websocket")

_REPLY_KEYS = frozenset({"bytes", "text", "close", "accept"})


def valid_close_code(code: int) -> bool:
    """True if an endpoint may send ``code`` in a close frame (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def build_websocket_factory(server: ServerContext) -> WebSocketServerFactory:
    """The Autobahn factory holding the options every connection of ``server`` shares.

    Autobahn's own handshake timeout is off: the handshake bytes are already complete when they
    reach Autobahn, and the wait for the application's answer is ``--websocket-connect-timeout``,
    enforced by the server's timeout checks (so a negative value really means "never").
    """
    options = server.options
    factory = WebSocketServerFactory(server="procman")
    factory.protocol = WebSocketConnection
    factory.setProtocolOptions(
        allowNullOrigin=True,
        openHandshakeTimeout=0,
        closeHandshakeTimeout=1,
        failByDrop=False,
        maxMessagePayloadSize=options.max_ws_message,
        maxFramePayloadSize=options.max_ws_message,
        autoPingInterval=options.ping_interval,
        autoPingTimeout=options.ping_timeout,
        autoPingRestartOnAnyTraffic=True,
    )
    factory.interface_server = server
    #: One frame shared by the members of a group broadcast (see ws_frames).
    factory.frames = FrameCache()
    return factory


class _OutputWatch:
    """The transport's push producer for one WebSocket: tracks whether the client keeps up."""

    def __init__(self, connection: WebSocketConnection) -> None:
        self.connection = connection
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.connection.unsent_bytes = 0

    def stopProducing(self) -> None:
        self.paused = True


class WebSocketConnection(WebSocketServerProtocol):
    """ASGI-1 side of one WebSocket; created by the HTTP connection on upgrade.

    The HTTP connection sets :attr:`head` (the parsed upgrade request) before feeding bytes in.
    """

    head: RequestHead
    reply_channel: str | None = None
    path: str = ""
    order: int = 0
    connect_sent: bool = False
    disconnect_sent: bool = False
    muted: bool = False
    opened_at: float = 0.0
    client: list[Any] | None = None
    _handshake: defer.Deferred | None = None
    _close_code: int | None = None
    _was_opened: bool = False
    offered_protocols: list[str] = []
    #: Bytes received while the handshake waits for the application (bounded by max_ws_pending).
    early_bytes: int = 0
    #: Bytes sent while the transport asked us to pause (bounded by max_ws_output_buffer).
    unsent_bytes: int = 0
    _overflowed: bool = False
    _watch: _OutputWatch | None = None

    @property
    def server(self) -> ServerContext:
        return self.factory.interface_server

    # -- Autobahn callbacks ------------------------------------------------------------------------

    def onConnect(self, request: Any) -> defer.Deferred:
        """Send ``websocket.connect`` and hold the handshake until the application answers."""
        server = self.server
        self.opened_at = server.clock.seconds()
        self.reply_channel = server.new_reply_channel()
        message = base_message(
            self.head,
            reply_channel=self.reply_channel,
            peer=self.transport.getPeer(),
            host=self.transport.getHost(),
            secure=ISSLTransport.providedBy(self.transport),
            websocket=True,
            root_path=server.options.root_path,
            proxy_headers=server.options.proxy_headers,
            forwarded_allow_ips=server.options.forwarded_allow_ips,
        )
        message["subprotocols"] = list(request.protocols)
        message["order"] = 0
        self.path = message["path"]
        self.client = message["client"] or address_pair(self.transport.getPeer())
        self.offered_protocols = list(request.protocols)
        self._access("WSCONNECTING")
        if server.shutting_down:
            raise ConnectionDeny(503, "Server shutting down")
        try:
            server.send("websocket.connect", message)
        except server.ChannelFull:
            self.muted = True
            logger.warning("websocket.connect is full; refusing %s with 503", self.path)
            self._access("WSREJECT")
            raise ConnectionDeny(503, "Connection queue at capacity")
        except server.MessageTooLarge:
            self.muted = True
            raise ConnectionDeny(431, "Request header fields too large for the channel layer")
        self.connect_sent = True
        server.register(self.reply_channel, self)
        self._handshake = defer.Deferred()
        return self._handshake

    def onOpen(self) -> None:
        self._was_opened = True
        self._watch = _OutputWatch(self)
        self.transport.registerProducer(self._watch, True)
        self._access("WSCONNECT")

    def dataReceived(self, data: bytes) -> None:
        """Bound what a client may send before the application accepted the handshake."""
        if self._overflowed:
            return
        if self.connect_sent and self.state == WebSocketProtocol.STATE_CONNECTING:
            self.early_bytes += len(data)
            limit = self.server.options.max_ws_pending
            if self.early_bytes > limit:
                logger.warning(
                    "%s sent more than %d bytes before the handshake was accepted; rejecting",
                    self.path,
                    limit,
                )
                # The 400 goes out first: once overflowed, sendData writes nothing more.
                self.reject(400, "Too much data before the handshake was accepted")
                self._overflowed = True
                return
        super().dataReceived(data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Every frame goes out here; past ``max_ws_output_buffer`` unread bytes, drop the client."""
        watch = self._watch
        if watch is not None and watch.paused and not self._overflowed:
            self.unsent_bytes += len(data)
            limit = self.server.options.max_ws_output_buffer
            if self.unsent_bytes > limit:
                logger.warning(
                    "WebSocket client %s on %s reads too slowly (%d bytes waiting); dropping it",
                    self.client,
                    self.path,
                    self.unsent_bytes,
                )
                self._overflowed = True
                self.muted = True
                self._close_code = 1008
                self.transport.abortConnection()
                return
        if self._overflowed:
            return
        if sync or chopsize or self.send_queue or self.logOctets or self.state != WebSocketProtocol.STATE_OPEN:
            super().sendData(data, sync, chopsize)
            return
        # Autobahn's sendData for this case, without its debug-log call (it formats its arguments,
        # qualified names and the peer, on every frame even when debug logging is off), and sent
        # at once when the socket is idle.
        write_now(self.transport, data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Forward one frame as ``websocket.receive``; a full channel closes with 1013."""
        if self.muted or self.state != WebSocketProtocol.STATE_OPEN:
            return
        message: dict[str, Any] = {
            "reply_channel": self.reply_channel,
            "path": self.path,
            "order": self.order + 1,
        }
        if isBinary:
            message["bytes"] = payload
        else:
            message["text"] = payload.decode("utf-8")  # Autobahn validated the UTF-8
        try:
            self.server.send("websocket.receive", message)
        except self.server.ChannelFull:
            logger.warning("websocket.receive is full; closing %s with 1013", self.path)
            self.muted = True
            self.close_with(1013, "Try again later")
            return
        except self.server.MessageTooLarge:
            self.muted = True
            self.close_with(1009, "Message too big for the channel layer")
            return
        self.order += 1

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool:
        """A close frame with a code no endpoint may send fails the connection (RFC 6455
        section 7.4.1): answer 1002 and close once it is written. Autobahn would answer 1002 too,
        then take the invalid frame as the reply to it and abort the socket before the 1002 left,
        and the application would be told a code the client never saw."""
        if code is not None and not valid_close_code(code) and self.state == WebSocketProtocol.STATE_OPEN:
            logger.info("invalid close code %d from %s; closing with 1002", code, self.client)
            self._close_code = 1002
            self.sendCloseFrame(1002, b"invalid close code", isReply=False)
            self.dropConnection(abort=False)
            return True
        return super().onCloseFrame(code, reasonRaw)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Send ``websocket.disconnect`` exactly once (if ``websocket.connect`` was sent)."""
        if self.reply_channel is not None:
            self.server.unregister(self.reply_channel)
        if self._handshake is not None and not self._handshake.called:
            # Client left while the application was deciding; the Deferred must not fire later.
            self._handshake = None
        if not self.connect_sent or self.disconnect_sent:
            return
        self.disconnect_sent = True
        final_code = self._final_close_code(wasClean, code)
        self.server.send_disconnect(
            "websocket.disconnect",
            {
                "reply_channel": self.reply_channel,
                "path": self.path,
                "code": final_code,
                "order": self.order + 1,
            },
        )
        if self.opened:
            self._access("WSDISCONNECT")

    # -- replies from the application --------------------------------------------------------------

    @property
    def opened(self) -> bool:
        """True once the handshake completed (101 sent)."""
        return self._was_opened

    def deliver(self, message: dict[str, Any]) -> None:
        """Apply one reply from the application (see the table in the module docstring).

        A data-only reply to an OPEN socket writes the frame shared with the other receivers of
        the same payload (a group broadcast is framed once per process, see ws_frames).
        """
        if self.state == WebSocketProtocol.STATE_OPEN:
            prepared = self.factory.frames.frame_for(message)
            if prepared is not None:
                send_prepared(self, prepared)
                return
        unknown = set(message) - _REPLY_KEYS
        if unknown:
            logger.error(
                "WebSocket reply for %s has unknown keys %s (allowed: bytes, text, close, accept); "
                "message dropped",
                self.path,
                sorted(unknown),
            )
            return
        text = message.get("text")
        data = message.get("bytes")
        if text is not None and data is not None:
            logger.error("WebSocket reply for %s has both 'text' and 'bytes'; message dropped", self.path)
            return
        if text is not None and not isinstance(text, str):
            logger.error("WebSocket reply 'text' must be str, got %s; dropped", type(text).__name__)
            return
        if data is not None and not isinstance(data, bytes):
            logger.error("WebSocket reply 'bytes' must be bytes, got %s; dropped", type(data).__name__)
            return
        close = message.get("close", False)
        has_data = text is not None or data is not None
        if self.state == WebSocketProtocol.STATE_CONNECTING:
            accept = message.get("accept")
            if accept is False:
                self.reject(403, "Access denied")
                return
            if accept or has_data:
                self.accept()
            elif close:
                self.reject(403, "Access denied")
                return
            else:
                logger.debug("empty WebSocket reply during handshake for %s ignored", self.path)
                return
        if self.state != WebSocketProtocol.STATE_OPEN:
            return
        if text is not None:
            self.sendMessage(text.encode("utf-8"), isBinary=False)
        elif data is not None:
            self.sendMessage(data, isBinary=True)
        if close:
            code = 1000 if close is True else close
            if not isinstance(code, int) or isinstance(code, bool) or not valid_close_code(code):
                logger.error("invalid close code %r from the application; closing with 1000", close)
                code = 1000
            self.close_with(code)

    # -- actions -----------------------------------------------------------------------------------

    def accept(self) -> None:
        """Complete the handshake with the first offered subprotocol we support."""
        if self._handshake is None or self._handshake.called:
            return
        chosen = None
        for protocol in self.offered_protocols:
            if protocol in self.server.options.ws_protocols:
                chosen = protocol
                break
        self._handshake.callback(chosen)

    def reject(self, status: int, reason: str) -> None:
        """Refuse the handshake with an HTTP error (the connection closes)."""
        if self._handshake is None or self._handshake.called:
            return
        self._access("WSREJECT")
        self._handshake.errback(ConnectionDeny(status, reason))

    def close_with(self, code: int, reason: str | None = None) -> None:
        """Start the closing handshake with ``code`` (any RFC-valid code, 1001/1009/1013 too)."""
        if self.state == WebSocketProtocol.STATE_CONNECTING:
            self.reject(503 if code in (1001, 1013) else 403, reason or "Connection refused")
            return
        if self.state != WebSocketProtocol.STATE_OPEN:
            return
        self._close_code = code
        self.sendCloseFrame(code, reason.encode("utf-8") if reason else None, isReply=False)

    def abort(self) -> None:
        """Drop the TCP connection at once (fast shutdown, lost layer)."""
        self.transport.abortConnection()

    def check_timeouts(self, now: float) -> None:
        """Reject a handshake the application has not answered; close over-age sockets."""
        options = self.server.options
        age = now - self.opened_at
        if self.state == WebSocketProtocol.STATE_CONNECTING and self.connect_sent:
            limit = options.websocket_connect_timeout
            if limit >= 0 and age > limit:
                logger.warning(
                    "no answer to websocket.connect for %s within %ss; rejecting", self.path, limit
                )
                self.reject(403, "Application did not answer in time")
        elif self.state == WebSocketProtocol.STATE_OPEN:
            limit = self.server.websocket_timeout
            if limit >= 0 and age > limit:
                self.close_with(1000, "Connection lifetime exceeded")

    def shutdown(self) -> None:
        """Graceful stop: close open sockets with 1001, refuse pending handshakes with 503."""
        if self.state == WebSocketProtocol.STATE_CONNECTING:
            self.reject(503, "Server shutting down")
        else:
            self.close_with(1001, "Server shutting down")

    # -- helpers -----------------------------------------------------------------------------------

    def _final_close_code(self, was_clean: bool, code: int | None) -> int:
        if self._close_code is not None:
            return self._close_code
        local = getattr(self, "localCloseCode", None)
        if getattr(self, "closedByMe", False) and local is not None:
            return local
        remote = getattr(self, "remoteCloseCode", None)
        if remote is not None:
            return remote
        if was_clean and code is not None:
            return code
        return 1006

    def _access(self, action: str) -> None:
        log = self.server.access_log
        if log is not None:
            log.write(self.client, f"{action} {self.path}")
