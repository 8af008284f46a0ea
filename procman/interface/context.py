"""What the protocols need from the server, and what an exchange needs from its connection.

The server module builds the protocols (HTTP/1.1, HTTP/2, WebSocket); the protocols only see
the :class:`ServerContext` it implements, so dependencies point one way: ``server`` ->
``http_protocol`` -> ``http2_protocol`` -> ``http_exchange`` -> ``context``. A test can hand a
protocol any object with these members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from procman.interface.access_log import AccessLog
    from procman.interface.http_events import RequestHead
    from procman.interface.http_policy import HeadLimits
    from procman.interface.options import ServerOptions

__all__ = ["ExchangeConnection", "ServerContext"]


class ServerContext(Protocol):
    """The interface server as its connections see it (:class:`~procman.interface.server.InterfaceServer`)."""

    options: ServerOptions
    #: ``IReactorTime``: ``seconds()`` and ``callLater()``.
    clock: Any
    #: The reactor the connections run on (``callLater`` for work after the current callback).
    reactor: Any
    #: The channel layer (``new_channel`` for request-body channels).
    layer: Any
    #: The layer's exceptions for a full channel and a message over its size limit.
    ChannelFull: type[Exception]
    MessageTooLarge: type[Exception]
    #: ``httptools`` or ``h11``: the parser each HTTP/1.x connection makes.
    http_parser: str
    head_limits: HeadLimits
    #: The Autobahn factory that builds the WebSocket taking over an upgraded connection.
    websocket_factory: Any
    #: Seconds a WebSocket may stay open (negative: forever).
    websocket_timeout: float
    access_log: AccessLog | None
    #: True once a graceful stop began: new requests are refused.
    shutting_down: bool

    def new_reply_channel(self) -> str:
        """A reply channel unique within this process."""

    def register(self, channel: str, endpoint: Any) -> None:
        """Route replies on ``channel`` to ``endpoint.deliver(message)``."""

    def unregister(self, channel: str) -> None:
        """Stop routing ``channel``."""

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send on the layer; raises ``ChannelFull`` / ``MessageTooLarge``."""

    def send_disconnect(self, channel: str, message: dict[str, Any]) -> None:
        """Send a notification that must not be lost to a momentarily full channel."""

    def log_access(self, client: Any, request: str, status: int | None, size: int | None) -> None:
        """Count one finished exchange and write its access-log line."""

    def connection_opened(self, connection: Any) -> None:
        """A connection was accepted (it gets ``check_timeouts``, ``shutdown``, ``abort`` calls)."""

    def connection_closed(self, connection: Any) -> None:
        """A connection is gone."""


class ExchangeConnection(Protocol):
    """What an :class:`~procman.interface.http_exchange.HTTPExchange` writes its response to: an
    HTTP/1.x connection, or one HTTP/2 stream."""

    server: ServerContext
    client: list[Any] | None
    #: The connection closes once this response is complete (graceful stop).
    close_after_response: bool

    def write(self, data: bytes) -> None:
        """Write response bytes (buffered, bounded, while the client reads slowly)."""

    def error_response(self, status: int, text: str, extra_headers: list[tuple[bytes, bytes]] | None = None,
                       head: RequestHead | None = None) -> None:
        """Answer a small error and end the exchange (or drop it if a response started)."""

    def update_reading(self) -> None:
        """Pause or resume reading the request body (backpressure from the layer)."""

    def exchange_finished(self, exchange: Any, keep_alive: bool) -> None:
        """The response is complete: start the next request, or close."""

    def drop(self) -> None:
        """Abort at once."""
