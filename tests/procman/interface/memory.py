"""An interface server driven in memory: Twisted's fake reactor and clock, string transports, and
a real shared-memory layer that the test reads and writes as the application.

Nothing here opens a socket or starts a process: a request is bytes fed to the protocol, a
response is the bytes its transport holds, time moves only when the test advances the clock (which
runs the server's periodic timeout checks), and replies reach the connections when the test calls
:meth:`MemorySite.deliver` - the server's own non-blocking dispatch of waiting replies.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from procman.interface.access_log import AccessLog
from procman.interface.options import ServerOptions
from procman.interface.server import InterfaceServer
from tests.procman.interface.conftest import Application, HTTPReader


class _Transport(StringTransport):
    """A string transport that, like Twisted's TCP and TLS transports, accepts
    ``unregisterProducer()`` with no producer registered (Autobahn's ``dropConnection`` always
    calls it; :class:`StringTransport` would raise and the close would never happen)."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class MemorySite:
    """One :class:`InterfaceServer` on a :class:`MemoryReactorClock`, and the application's side
    of its layer (``app``)."""

    def __init__(self, layer: Any, **options: Any) -> None:
        self.layer = layer
        self.app = Application(layer)
        self.clock = MemoryReactorClock()
        #: The access log's lines (``access_log.getvalue()``).
        self.access_log = io.StringIO()
        self.server = InterfaceServer(layer, ServerOptions(**options), reactor=self.clock,
                                      access_log=AccessLog(self.access_log))
        self.server.start_checks()
        self._ports = 40000

    def connect(self) -> MemoryClient:
        """Accept one connection (through the server's factory, caps included)."""
        self._ports += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._ports)
        protocol = self.server.factory.buildProtocol(peer)
        transport = _Transport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8000), peerAddress=peer)
        protocol.makeConnection(transport)
        return MemoryClient(protocol, transport)

    def deliver(self) -> int:
        """Hand the replies waiting in the layer to their connections; how many there were."""
        return self.server.dispatch_waiting()

    def respond(self, request: dict, status: int = 200, content: bytes = b"ok", **extra: Any) -> None:
        """Answer ``request`` as the application and let the server deliver it."""
        self.app.respond(request, status=status, content=content, **extra)
        assert self.deliver() == 1

    def advance(self, seconds: float) -> None:
        """Move the clock forward in ``check_interval`` steps (each runs the periodic checks)."""
        step = self.server.options.check_interval
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step


class _TransportBytes:
    """What :class:`HTTPReader` reads from: the bytes the server wrote so far, then end of file
    once it closed. Reading past them while the connection is open is a test bug (the server
    has not answered), not a wait."""

    def __init__(self, transport: StringTransport) -> None:
        self.transport = transport

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        if data or self.transport.disconnecting:
            return data
        raise AssertionError("the server has written nothing more, and the connection is open")


class MemoryClient:
    """The client's end of one in-memory connection."""

    def __init__(self, protocol: Any, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.reader = HTTPReader(_TransportBytes(transport))  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next complete response the server wrote: (status, headers, body)."""
        return self.reader.response()

    def pending(self) -> bytes:
        """Bytes written and not read yet (without consuming them)."""
        return self.reader.buffer + self.transport.value()

    @property
    def closing(self) -> bool:
        """The server closed (or aborted) the connection."""
        return self.transport.disconnecting

    @property
    def aborted(self) -> bool:
        return self.transport.disconnected

    def lose(self) -> None:
        """The connection is gone (the client left, or the server's close completed)."""
        self.protocol.connectionLost(Failure(ConnectionDone()))
