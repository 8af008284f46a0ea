"""The interface server: listening sockets, the reply loop, timeouts and the process lifecycle.

Theory of operation
-------------------
One process channel (``ifc.<12 random letters>!``) is made per process; every HTTP request and
WebSocket gets ``<process channel><local id>`` as its reply channel and is registered under that
full name. A single ``receive_twisted([process channel])`` loop reads every reply and dispatches
it by name: no polling, no per-request receive.

A periodic check (every ``check_interval`` seconds) runs each connection's timeout checks, each in
its own ``try``, and always reschedules itself: one bad connection can never stop the checks for
the others (Daphne 1.x's checker died on a streaming response past ``http_timeout``).

Lifecycle (exit codes are the contract with the supervisor; which stop a signal asks for is the
table of :mod:`asgi_ipc.stop_signals`):

* graceful (SIGTERM, or the first SIGINT): stop listening, close WebSockets with 1001, let
  in-flight HTTP responses finish for up to ``shutdown_timeout`` seconds, then exit :data:`EXIT_OK`.
* fast (a SIGINT during the graceful stop, or SIGQUIT): drop every connection, exit :data:`EXIT_FAST`.
* SIGHUP - re-read ``--certfile``/``--keyfile`` for new connections; nothing else changes.
* the layer's segment is gone (``SegmentLost``) - drop every connection, exit
  :data:`EXIT_LAYER_LOST` so the supervisor restarts us against a fresh layer.
"""

from __future__ import annotations

import logging
import random
import os
import signal
import string
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import protocol
from twisted.internet.interfaces import IListeningPort, IProtocolNegotiationFactory, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from asgi_ipc.stop_signals import StopSignals
from procman.interface.access_log import AccessLog
from procman.interface.exitcodes import EXIT_FAST, EXIT_LAYER_LOST, EXIT_OK
from procman.interface.http_parsers import resolve_parser_name
from procman.interface.http_policy import HeadLimits
from procman.interface.http_protocol import HTTPConnection
from procman.interface.options import ServerOptions
from procman.interface.lean_imports import endpoint_kind
from procman.interface.ws_protocol import build_websocket_factory

if TYPE_CHECKING:
    from procman.interface.tls import TLSFiles

__all__ = [
    "EXIT_FAST",
    "EXIT_LAYER_LOST",
    "EXIT_OK",
    "InterfaceServer",
    "LayerNotSupported",
]

logger = logging.getLogger("procman.interface")

_DISCONNECT_RETRY_SECONDS = 5.0
#: Replies dispatched by non-blocking receives after one from ``receive_twisted``.
_DRAIN_BATCH = 256


class LayerNotSupported(Exception):
    """The configured channel layer lacks something the interface server needs."""


def _segment_lost_types() -> tuple[type[BaseException], ...]:
    """Errors meaning the layer itself is gone or unusable (asgi_ipc's ``SegmentError`` family:
    ``SegmentLost``, ``SegmentCorrupt``); other ASGI-1 layers have none."""
    try:
        from asgi_ipc import SegmentError  # noqa: PLC0415 - optional: any ASGI-1 layer may be used
    except ImportError:
        return ()
    return (SegmentError,)


@implementer(IProtocolNegotiationFactory)
class _ConnectionFactory(protocol.Factory):
    def __init__(self, server: InterfaceServer) -> None:
        self.server = server

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN over TLS: HTTP/2 when the client offers it, else HTTP/1.1 (WebSocket upgrades
        ride on HTTP/1.1; :class:`HTTPConnection` hands an ``h2`` connection over to HTTP/2).
        Without an answer here Twisted's ALPN callback returns an empty protocol name, which
        OpenSSL turns into an "internal error" alert for every client that offers ALPN."""
        return [b"h2", b"http/1.1"]

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        server = self.server
        limit = server.options.max_connections
        if server.shutting_down or (limit and len(server.connections) >= limit):
            return _Refusal()
        return HTTPConnection(server)


class _Refusal(protocol.Protocol):
    """Answers 503 and closes: a connection accepted past ``max_connections`` (several can be
    accepted in one batch before the listening port is paused) or during shutdown."""

    def connectionMade(self) -> None:
        body = b"Server at connection capacity.\n"
        self.transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
            b"retry-after: 1\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        self.transport.loseConnection()


class InterfaceServer:
    """Serves HTTP and WebSocket for one process, speaking ASGI-1 over ``layer``.

    :param layer: an ASGI-1 channel layer with the ``twisted`` extension (``receive_twisted``).
    :param options: the server's settings; validated here.
    :param reactor: the Twisted reactor (``IReactorTime`` + socket APIs); tests may pass a fake.
    :param access_log: where access-log lines go, or None for none.
    """

    def __init__(
        self,
        layer: Any,
        options: ServerOptions | None = None,
        reactor: Any = None,
        access_log: AccessLog | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor  # noqa: PLC0415

            reactor = default_reactor
        self.options = options or ServerOptions()
        self.options.validate()
        #: HTTP exchanges and WebSocket connections finished so far (access log on or off): what a
        #: supervisor reports as this process's requests.
        self.finished_exchanges = 0
        #: ``httptools`` or ``h11``: the parser every connection of this server uses.
        self.http_parser = resolve_parser_name(self.options.http)
        self.head_limits = HeadLimits(
            max_request_line=self.options.max_request_line,
            max_head_size=self.options.max_head_size,
            max_header_count=self.options.max_header_count,
        )
        for name in ("send", "receive_twisted", "new_channel"):
            if not callable(getattr(layer, name, None)):
                raise LayerNotSupported(
                    f"the channel layer {type(layer).__name__} has no {name}(); the interface "
                    "server needs an ASGI-1 layer with the 'twisted' extension"
                )
        if "twisted" not in getattr(layer, "extensions", ()):
            raise LayerNotSupported(
                f"the channel layer {type(layer).__name__} does not list the 'twisted' extension; "
                "replies are read with receive_twisted() (no polling loop)"
            )
        self.layer = layer
        self.ChannelFull = layer.ChannelFull
        self.MessageTooLarge = getattr(layer, "MessageTooLarge", layer.ChannelFull)
        self._segment_lost = _segment_lost_types()
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.access_log = access_log
        self.process_channel = "ifc." + "".join(random.choices(string.ascii_letters, k=12)) + "!"
        self._next_local_id = 0
        self.replies: dict[str, Any] = {}
        self.connections: set[HTTPConnection] = set()
        self.ports: list[IListeningPort] = []
        self._ports_paused = False
        self.shutting_down = False
        self.exit_code: int | None = None
        self._receiving = False
        self._pump_active = False
        self._sync_result: Any = None
        self._check_call: Any = None
        self._shutdown_deadline: float | None = None
        self._pending_disconnects: deque[tuple[float, str, dict[str, Any]]] = deque()
        self.factory = _ConnectionFactory(self)
        #: ``--certfile``/``--keyfile``: TLS on every socket this process serves (except ``ssl:``
        #: endpoints, which carry their own); None without them.
        self.tls: TLSFiles | None = None
        self.listen_factory: Any = self.factory
        if self.options.certfile:
            # TLS (OpenSSL) and HTTP/2 (h2) load only when a process serves TLS; loaded now,
            # before the first client, rather than on its handshake.
            import procman.interface.http2_protocol  # noqa: F401, PLC0415
            from procman.interface.tls import TLSFiles, tls_factory  # noqa: PLC0415

            self.tls = TLSFiles(self.options.certfile, self.options.keyfile, self.options.ssl_ciphers,
                                self.factory.acceptableProtocols())
            self.listen_factory = tls_factory(self.tls, self.factory)
        self.websocket_factory = build_websocket_factory(self)
        if self.options.websocket_timeout is None:
            self.websocket_timeout = float(getattr(layer, "group_expiry", 86400) or 86400)
        else:
            self.websocket_timeout = self.options.websocket_timeout
        self.on_exit: Callable[[int], None] | None = None
        #: The process's stop signals, once :meth:`install_signal_handlers` ran.
        self.stop_signals: StopSignals | None = None

    # -- channels and dispatch ---------------------------------------------------------------------------

    def new_reply_channel(self) -> str:
        """A reply channel unique within this process: ``<process channel><local id>``."""
        self._next_local_id += 1
        return f"{self.process_channel}{self._next_local_id:x}"

    def register(self, channel: str, endpoint: Any) -> None:
        """Route replies on ``channel`` to ``endpoint.deliver``."""
        self.replies[channel] = endpoint

    def unregister(self, channel: str) -> None:
        """Stop routing ``channel``; later replies to it are dropped."""
        self.replies.pop(channel, None)

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """``layer.send``; ``ChannelFull``/``MessageTooLarge`` propagate, a lost layer is fatal."""
        try:
            self.layer.send(channel, message)
        except self._segment_lost as exc:
            self.layer_lost(exc)
            raise self.ChannelFull(f"channel layer lost: {exc}") from exc

    def send_disconnect(self, channel: str, message: dict[str, Any]) -> None:
        """Send a notification that must not be lost to a momentarily full channel.

        Retried by the periodic check for up to a few seconds, then given up with a warning.
        """
        try:
            self.send(channel, message)
        except self.ChannelFull:
            if self.exit_code is None:
                deadline = self.clock.seconds() + _DISCONNECT_RETRY_SECONDS
                self._pending_disconnects.append((deadline, channel, message))
        except Exception:  # noqa: BLE001 - never let a notification break the caller
            logger.exception("could not send %s", channel)

    def _retry_disconnects(self) -> None:
        now = self.clock.seconds()
        for _ in range(len(self._pending_disconnects)):
            deadline, channel, message = self._pending_disconnects.popleft()
            try:
                self.layer.send(channel, message)
            except self.ChannelFull:
                if now < deadline:
                    self._pending_disconnects.append((deadline, channel, message))
                else:
                    logger.warning("gave up sending %s to a full channel: %r", channel, message)

    def log_access(self, client: Any, request: str, status: int | None, size: int | None) -> None:
        """Record one finished HTTP exchange or WebSocket: counts it in :attr:`finished_exchanges`
        and writes the access-log line when there is an access log."""
        self.finished_exchanges += 1
        if self.access_log is not None:
            self.access_log.write(client, request, status, size)

    def _dispatch(self, channel: str, message: Any) -> None:
        endpoint = self.replies.get(channel)
        if endpoint is None:
            logger.debug("reply for unknown or finished channel %s dropped", channel)
            return
        if not isinstance(message, dict):
            logger.error("reply on %s is not a dict (%s); dropped", channel, type(message).__name__)
            return
        try:
            endpoint.deliver(message)
        except Exception:  # noqa: BLE001 - a bad reply must not stop the reply loop
            logger.exception("error applying a reply on %s", channel)

    # -- the reply loop ----------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Keep exactly one ``receive_twisted`` outstanding; handle results that arrive at once
        in this loop instead of recursing (a busy channel must not grow the stack)."""
        while self._receiving:
            self._sync_result = None
            self._pump_active = True
            try:
                deferred = self.layer.receive_twisted([self.process_channel])
            except Exception as exc:  # noqa: BLE001
                self._pump_active = False
                self._receive_failed(Failure(exc))
                return
            deferred.addBoth(self._on_received)
            self._pump_active = False
            if self._sync_result is None:
                return  # _on_received will run later and restart the loop
            result, self._sync_result = self._sync_result, None
            if not self._handle_received(result):
                return

    def _on_received(self, result: Any) -> None:
        if self._pump_active:
            self._sync_result = (result,)
            return
        if self._handle_received((result,)):
            self._pump()

    def _handle_received(self, box: tuple[Any]) -> bool:
        (result,) = box
        if isinstance(result, Failure):
            self._receive_failed(result)
            return False
        channel, message = result
        if channel is not None:
            self._dispatch(channel, message)
            self.dispatch_waiting()
        return self._receiving

    def dispatch_waiting(self, limit: int = _DRAIN_BATCH) -> int:
        """Dispatch the replies already waiting for this process, with non-blocking receives;
        return how many were taken.

        Called by the reply loop after every reply ``receive_twisted`` hands it: replies that
        arrived together (a busy process answers many connections per wake-up; a group broadcast
        reaches this process as one reply per member) cost no Deferred and no timeout timer each,
        as ``receive_twisted`` would. At most ``limit`` per call, so the loop goes back through
        the reactor. A layer offering ``receive_fanout`` (see :meth:`_take_waiting`) hands one
        fan-out as one decoded message with every local receiver. A lost layer stops the process
        (:meth:`layer_lost`). Tests drive a server on an in-memory reactor with this.
        """
        channels = [self.process_channel]
        take = self._take_waiting
        dispatch = self._dispatch
        taken = 0
        while taken < limit and self.exit_code is None:
            try:
                names, message = take(channels)
            except self._segment_lost as exc:
                self.layer_lost(exc)
                break
            except Exception:  # noqa: BLE001 - receive_twisted will report a lasting fault
                logger.exception("non-blocking receive failed")
                break
            if names is None:
                break
            taken += 1
            for name in names:
                dispatch(name, message)
        return taken

    def _take_waiting(self, channels: list[str]) -> tuple[list[str] | None, Any]:
        """One waiting reply as ``([channel, ...], message)``, or ``(None, None)``.

        With a layer that has ``receive_fanout(channels)`` (non-blocking; returns every local
        channel a group message is for, with the message decoded once and shared read-only),
        that is used; otherwise ``receive(channels, block=False)`` gives one channel.
        """
        fanout = getattr(self.layer, "receive_fanout", None)
        if fanout is not None:
            names, message = fanout(channels)
            return (names or None), message
        channel, message = self.layer.receive(channels, block=False)
        return ([channel] if channel is not None else None), message

    def _receive_failed(self, failure: Failure) -> None:
        if self._segment_lost and failure.check(*self._segment_lost):
            self.layer_lost(failure.value)
            return
        logger.error("receive_twisted failed: %s; retrying in 1s", failure.getErrorMessage())
        if self._receiving:
            self.clock.callLater(1.0, self._pump)

    # -- periodic checks ---------------------------------------------------------------------------------

    def _check(self) -> None:
        try:
            now = self.clock.seconds()
            for connection in list(self.connections):
                try:
                    connection.check_timeouts(now)
                except Exception:  # noqa: BLE001 - isolate each connection
                    logger.exception("timeout check failed for %s", connection.client)
            try:
                self._retry_disconnects()
            except Exception:  # noqa: BLE001
                logger.exception("retrying disconnect messages failed")
            if self.shutting_down:
                self._maybe_finish_shutdown(now)
        finally:
            if self.exit_code is None:
                self._check_call = self.clock.callLater(self.options.check_interval, self._check)

    # -- connections and listening -----------------------------------------------------------------------

    def connection_opened(self, connection: HTTPConnection) -> None:
        self.connections.add(connection)
        limit = self.options.max_connections
        if limit and len(self.connections) >= limit and not self._ports_paused:
            self._ports_paused = True
            for port in self.ports:
                if hasattr(port, "stopReading"):
                    port.stopReading()

    def connection_closed(self, connection: HTTPConnection) -> None:
        self.connections.discard(connection)
        limit = self.options.max_connections
        if self._ports_paused and len(self.connections) < limit and not self.shutting_down:
            self._ports_paused = False
            for port in self.ports:
                if hasattr(port, "startReading"):
                    port.startReading()
        if self.shutting_down and self.exit_code is None and not self.connections:
            self.reactor.callLater(0, self._maybe_finish_shutdown, self.clock.seconds())

    def listen(self, endpoint_description: str) -> Any:
        """Listen on a Twisted server endpoint string; returns the listen Deferred."""
        from twisted.internet.endpoints import serverFromString  # noqa: PLC0415

        try:
            endpoint = serverFromString(self.reactor, endpoint_description)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, OpenSSL errors: say which file and why
            kind = endpoint_kind(endpoint_description)
            advice = (
                "; privateKey= and certKey= must name readable PEM files holding a key and the "
                "certificate that matches it"
                if kind == "ssl"
                else ""
            )
            raise ValueError(f"{endpoint_description}: {type(exc).__name__}: {exc}{advice}") from exc
        if self.tls is not None and endpoint_kind(endpoint_description) == "ssl":
            raise ValueError(
                f"{endpoint_description}: an ssl: endpoint brings its own certificate; with "
                "--certfile/--keyfile listen with tcp: (or --bind/--fd) instead"
            )
        deferred = endpoint.listen(self.listen_factory)
        deferred.addCallback(self._listening, endpoint_description)
        return deferred

    def adopt(self, fd: int) -> IListeningPort:
        """Serve on an inherited, already listening socket (the supervisor's shared port)."""
        import socket  # noqa: PLC0415

        from procman.interface.listen_checks import inherited_socket  # noqa: PLC0415

        family = inherited_socket(fd, nonblocking=True)  # Twisted requires non-blocking mode
        if family == socket.AF_UNIX:
            port = _adopt_unix_port(self.reactor, fd, self.listen_factory)
        else:
            port = self.reactor.adoptStreamPort(fd, family, self.listen_factory)
        self._listening(port, f"fd:{fd}")
        return port

    def close_ports(self) -> None:
        """Stop listening on every port opened so far (a start that failed half-way)."""
        for port in self.ports:
            try:
                port.stopListening()
            except Exception:  # noqa: BLE001 - closing on the way out; nothing else to do
                logger.exception("could not close %s", port)
        self.ports = []

    def _listening(self, port: IListeningPort, description: str) -> IListeningPort:
        self.ports.append(port)
        host = port.getHost()
        if hasattr(host, "port"):
            where = f"{getattr(host, 'host', '')}:{host.port}"
        else:  # a UNIX socket: Twisted gives its path as bytes
            name = getattr(host, "name", host)
            where = os.fsdecode(name) if isinstance(name, bytes) else str(name)
        logger.info("listening on %s (%s)", where, description)
        return port

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin reading replies and checking timeouts (call once the reactor runs or before)."""
        self._receiving = True
        self.reactor.callLater(0, self._pump)
        self.start_checks()

    def start_checks(self) -> None:
        """Run the periodic timeout checks (every ``check_interval`` seconds on :attr:`clock`).

        :meth:`start` does this; a test driving the server on an in-memory clock calls it alone
        and hands replies over with :meth:`dispatch_waiting`."""
        if self._check_call is None or not self._check_call.active():
            self._check_call = self.clock.callLater(self.options.check_interval, self._check)

    def install_signal_handlers(self) -> None:
        """The stop signals of :mod:`asgi_ipc.stop_signals` (graceful: :meth:`graceful_stop`; fast:
        :meth:`fast_stop`), and SIGHUP: :meth:`handle_hup`. The handlers only schedule work on
        the reactor."""
        self.stop_signals = StopSignals(
            self.graceful_stop, self.fast_stop, call=self.reactor.callFromThread, announce=logger.info,
        ).install()

        def on_hup(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.handle_hup)

        signal.signal(signal.SIGHUP, on_hup)

    def handle_hup(self) -> None:
        """SIGHUP: re-read the TLS certificate and key for new connections (nothing else)."""
        if self.tls is not None:
            self.tls.reload()
        else:
            logger.info("SIGHUP: nothing to reload (no --certfile)")

    def graceful_stop(self) -> None:
        """Stop accepting, close WebSockets with 1001, let HTTP responses finish (bounded)."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self._shutdown_deadline = self.clock.seconds() + self.options.shutdown_timeout
        logger.info("graceful stop: %d connection(s) open", len(self.connections))
        for port in self.ports:
            port.stopListening()
        for connection in list(self.connections):
            try:
                connection.shutdown()
            except Exception:  # noqa: BLE001
                logger.exception("error closing %s", connection.client)
        self.reactor.callLater(0, self._maybe_finish_shutdown, self.clock.seconds())

    def _maybe_finish_shutdown(self, now: float) -> None:
        if self.exit_code is not None:
            return
        if self.connections and self._shutdown_deadline is not None and now < self._shutdown_deadline:
            return
        if self.connections:
            logger.warning(
                "shutdown timeout: dropping %d connection(s) still open", len(self.connections)
            )
        self._stop(EXIT_OK)

    def fast_stop(self) -> None:
        """Drop every connection and exit now."""
        logger.info("fast stop")
        self._stop(EXIT_FAST)

    def layer_lost(self, exc: BaseException) -> None:
        """The layer's segment is gone: drop everything and exit non-zero."""
        if self.exit_code is not None:
            return
        logger.error("channel layer lost (%s); dropping connections and exiting", exc)
        self._stop(EXIT_LAYER_LOST)

    def _stop(self, code: int) -> None:
        if self.exit_code is not None:
            return
        self.exit_code = code
        self._receiving = False
        self.shutting_down = True
        if code != EXIT_LAYER_LOST:
            self._retry_disconnects()
        for port in self.ports:
            try:
                port.stopListening()
            except Exception:  # noqa: BLE001
                pass
        for connection in list(self.connections):
            try:
                connection.abort()
            except Exception:  # noqa: BLE001
                logger.exception("error dropping %s", connection.client)
        if self._check_call is not None and self._check_call.active():
            self._check_call.cancel()
        if self.on_exit is not None:
            self.on_exit(code)


def _adopt_unix_port(reactor: Any, fd: int, factory: Any) -> IListeningPort:
    """Listen on an inherited UNIX socket without touching its file.

    Twisted's UNIX port makes its socket file world-writable when it starts and unlinks it when
    it stops, which is right for a socket it bound itself but wrong for an adopted one: the file
    belongs to the process that bound it (the supervisor, or systemd), which chose its mode and
    serves it again through the next interface process.
    """
    import os  # noqa: PLC0415
    import stat  # noqa: PLC0415

    from twisted.internet import tcp, unix  # noqa: PLC0415

    class AdoptedUNIXPort(unix.Port):
        def startListening(self) -> None:
            try:  # chmod to the mode it already has: a no-op, where Twisted would use 0666
                self.mode = stat.S_IMODE(os.stat(self._bindPath).st_mode)
            except (OSError, TypeError, ValueError):
                pass
            super().startListening()

        def connectionLost(self, reason: Any) -> None:
            tcp.Port.connectionLost(self, reason)  # skip unix.Port's unlink of the file

    port = AdoptedUNIXPort._fromListeningDescriptor(reactor, fd, factory)
    port.startListening()
    return port
