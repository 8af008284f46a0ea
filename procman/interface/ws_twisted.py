"""Autobahn's WebSocket server protocol and factory on Twisted, without ``autobahn.twisted``.

Autobahn's framing, handshake and close logic (``autobahn.websocket.protocol``) is independent of
the network framework; its Twisted glue lives in ``autobahn.twisted.websocket``, whose package
``__init__`` also imports WAMP, ``autobahn.wamp.auth`` (``cryptography``) and
``twisted.application`` - about 8.5 MiB per interface process that serves no WAMP. This module is
the same glue for the server side only: Twisted's calls go to Autobahn's framework-neutral
entry points (``_connectionMade``, ``_dataReceived``, ``_connectionLost``), Autobahn's callbacks
to the public ``on*`` methods.

Left out, as this server never uses them: TLS channel binding (``tls-unique``) and peer
certificate details in ``transport_details`` (the ASGI-1 messages carry neither), and the client
side.
"""

from __future__ import annotations

from typing import Any

import txaio

txaio.use_twisted()

from autobahn.websocket import protocol as autobahn_protocol  # noqa: E402 - after use_twisted
from twisted.internet import protocol as twisted_protocol  # noqa: E402
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

__all__ = ["WebSocketServerFactory", "WebSocketServerProtocol", "peer_string"]


def peer_string(address: Any) -> str:
    """Autobahn's peer descriptor for a Twisted address: ``tcp4:HOST:PORT``, ``tcp6:...``,
    ``unix:PATH`` (``unix`` for an unnamed socket), else the address's ``str``."""
    if isinstance(address, IPv4Address):
        return f"tcp4:{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"tcp6:{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name.decode("utf-8", "replace") if isinstance(address.name, bytes) else address.name
        return f"unix:{name}" if name else "unix"
    return str(address)


class WebSocketServerProtocol(twisted_protocol.Protocol, autobahn_protocol.WebSocketServerProtocol):
    """A Twisted protocol running Autobahn's server-side WebSocket state machine."""

    log = txaio.make_logger()
    is_server = True
    peer: str | None = None

    # -- called by Twisted ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.peer = peer_string(self.transport.getPeer())
        if self._transport_details is not None:
            self._transport_details.peer = self.peer
            self._transport_details.is_server = True
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except (AttributeError, OSError):  # a UNIX socket has no Nagle to switch off
            pass
        self._connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def connectionLost(self, reason: Failure = twisted_protocol.connectionDone) -> None:  # type: ignore[assignment]
        self._connectionLost(reason)

    # -- called by Autobahn --------------------------------------------------------------------

    def _closeConnection(self, abort: bool = False) -> None:
        if abort and hasattr(self.transport, "abortConnection"):
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _onOpen(self) -> None:
        self.onOpen()

    def _onMessageBegin(self, isBinary: bool) -> None:
        self.onMessageBegin(isBinary)

    def _onMessageFrameBegin(self, length: int) -> None:
        self.onMessageFrameBegin(length)

    def _onMessageFrameData(self, payload: bytes) -> None:
        self.onMessageFrameData(payload)

    def _onMessageFrameEnd(self) -> None:
        self.onMessageFrameEnd()

    def _onMessageFrame(self, payload: list[bytes]) -> None:
        self.onMessageFrame(payload)

    def _onMessageEnd(self) -> None:
        self.onMessageEnd()

    def _onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.onMessage(payload, isBinary)

    def _onPing(self, payload: bytes) -> None:
        self.onPing(payload)

    def _onPong(self, payload: bytes) -> None:
        self.onPong(payload)

    def _onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.onClose(wasClean, code, reason)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()


class WebSocketServerFactory(autobahn_protocol.WebSocketServerFactory, twisted_protocol.ServerFactory):
    """Autobahn's server factory (protocol options, counters) as a Twisted ``ServerFactory``.

    :param reactor: the reactor (default: the global one, imported only then).
    Other arguments are Autobahn's ``WebSocketServerFactory``'s.
    """

    log = txaio.make_logger()

    def __init__(self, *args: Any, reactor: Any = None, **kwargs: Any) -> None:
        if reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415 - installs the default reactor
        self.reactor = reactor
        autobahn_protocol.WebSocketServerFactory.__init__(self, *args, **kwargs)
