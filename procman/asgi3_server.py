"""A Daphne 4 server process under supervision: the ASGI 3 application in-process, on an inherited
socket, with heartbeats from its reactor and a graceful drain.

Why Daphne's ``Server`` in-process rather than ``daphne --fd N``: the supervision promises need
hooks inside the server process that the ``daphne`` command does not offer - readiness once every
adopted socket listens and the application imported (a broken application is a boot error with its
traceback, exit 3, not a restart loop), heartbeats written by the reactor itself (a blocked event
loop stops them and the supervisor replaces the process), a request counter for ``procman status``,
and a drain on SIGTERM that closes WebSockets with 1001 (Daphne's own SIGTERM handling drops them
with no close frame and cancels running requests). The listening sockets are adopted exactly as
``daphne --fd`` does (an ``AdoptedStreamServerEndpoint``), so the kernel's accept queue is shared
by every server process and by the supervisor, which never closes it. Daphne's own ``fd:`` endpoint
parser hands the ``domain`` through as a string and so adopts IPv4 sockets only; the endpoint
strings ``fd:fileno=N:domain=INET|INET6|UNIX`` given here are parsed by :func:`adopted_endpoint`,
which honours the address family (IPv6 and UNIX sockets work too).

Drain on a graceful stop (SIGTERM or a first SIGINT, as the table of :mod:`asgi_ipc.stop_signals`
says; also the old process of a reload once its replacement is ready): stop accepting (the accept
queue stays with the other processes), send a 1001 "going away" close frame to every open WebSocket,
answer every HTTP request still arriving on a keep-alive connection with ``Connection: close`` (the
client reconnects, to another server), let HTTP requests in flight finish, wait until no request
arrived for :data:`DRAIN_QUIET` and every application instance has ended (consumers' ``disconnect``
runs: ``group_discard`` and friends), then stop the reactor; a server with no connection at all
stops at once. Bounded by ``--graceful-timeout`` (less a margin, so the supervisor's SIGKILL at the
same deadline is never needed for a well-behaved application). A fast stop (SIGINT during the drain,
or SIGQUIT) exits at once with ``exitcodes.FAST``, even if the application blocks the event loop.
"""

from __future__ import annotations

import argparse
import importlib
import functools
import os
import sys
import time
from typing import Any, Callable

from asgi_ipc.stop_signals import StopSignals

from . import exitcodes
from .heartbeat import HeartbeatSender

__all__ = ["parse_args", "server_entry", "import_application", "adopted_endpoint"]

#: Seconds of the graceful timeout left to the supervisor after the drain gave up.
DRAIN_MARGIN = 1.0
#: Seconds between two checks of the drain's progress.
DRAIN_POLL = 0.05
#: Seconds without any request in flight before a draining server stops: a keep-alive client
#: that got its previous response before the drain sends its next request within this time, gets
#: the answer with ``Connection: close`` and reconnects elsewhere, instead of finding its
#: connection closed under the request it is sending.
DRAIN_QUIET = 1.0
#: WebSocket close code "going away" (RFC 6455 7.4.1): the server is shutting down.
GOING_AWAY = 1001


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m procman.boot daphne")
    parser.add_argument("--application", required=True, metavar="MODULE:APP", help="the ASGI 3 application")
    parser.add_argument("--endpoint", action="append", required=True,
                        help="Twisted server endpoint, e.g. fd:fileno=3:domain=INET; repeatable")
    parser.add_argument("--graceful-timeout", type=float, default=30.0)
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="log every request and WebSocket to stdout (default on)")
    return parser.parse_args(argv)


def import_application(path: str) -> Any:
    """Set Django up (as ``get_asgi_application`` does) and import ``module:attribute``.

    Any exception propagates: before ``ready`` it is a boot error with its traceback.
    """
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django

        django.setup(set_prefix=False)
    module_name, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attribute!r} (from {path!r})") from None
    if not callable(target):
        raise TypeError(f"{path} is {type(target).__name__}, not an ASGI application (a callable)")
    return target


def adopted_endpoint(reactor: Any, description: str) -> Any:
    """Twisted's ``serverFromString`` for Daphne, except that ``fd:fileno=N:domain=FAMILY`` adopts
    descriptor N with the address family ``socket.AF_<FAMILY>`` (default INET).

    :raises ValueError: a malformed ``fd:`` description (names what is wrong).
    """
    import socket

    from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString

    if not description.startswith("fd:"):
        return serverFromString(reactor, description)
    fields = dict(part.partition("=")[::2] for part in description[3:].split(":"))
    family = getattr(socket, "AF_" + fields.get("domain", "INET"), None)
    if not fields.get("fileno", "").isdigit() or family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        raise ValueError(f"endpoint {description!r}: use fd:fileno=N:domain=INET|INET6|UNIX")
    return AdoptedStreamServerEndpoint(reactor, int(fields["fileno"]), family)


def server_entry(argv: list[str]) -> Callable[[HeartbeatSender], int]:
    """The entry point :func:`procman.boot.supervised_main` runs for a Daphne server."""

    def entry(beats: HeartbeatSender) -> int:
        args = parse_args(argv)
        # daphne.server installs the asyncio reactor: it must come before anything imports Twisted.
        import daphne.server
        from daphne.server import Server

        daphne.server.serverFromString = adopted_endpoint  # the one name Daphne parses endpoints with

        application = import_application(args.application)
        return _serve(Server, application, args, beats)

    return entry


def _serve(server_class: type, application: Any, args: argparse.Namespace, beats: HeartbeatSender) -> int:
    from daphne.access import AccessLogGenerator
    from daphne.http_protocol import WebRequest
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor, task

    served = [0]
    access = AccessLogGenerator(sys.stdout) if args.access_log else None

    def action_logger(protocol: Any, action: str, details: dict[str, Any]) -> None:
        # HTTP exchanges and WebSockets that ended: the "requests" column of `procman status`
        if (protocol, action) in (("http", "complete"), ("websocket", "disconnected")):
            served[0] += 1
        if access is not None:
            access(protocol, action, details)

    class SupervisedServer(server_class):  # type: ignore[misc, valid-type]
        """Daphne's server, keeping its listening ports (to stop accepting) and saying when it is
        ready (every endpoint listens, inside the running reactor)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ports: list[Any] = []
            self.failed = False  # could not listen, or lost its supervisor: exit 1
            self.draining = False

        async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
            channel = getattr(protocol, "channel", None)
            if self.draining and message.get("type") == "http.response.start" and isinstance(protocol, WebRequest) \
                    and hasattr(channel, "persistent"):
                # HTTP/1.1 keep-alive: Twisted decided to keep the connection when the request
                # arrived; now it closes it after this response, which tells the client so.
                channel.persistent = False
                protocol.responseHeaders.setRawHeaders(b"connection", [b"close"])
            await super().handle_reply(protocol, message)

        def listen_success(self, port: Any) -> None:
            super().listen_success(port)
            self.ports.append(port)
            if len(self.ports) == len(self.endpoints):
                beats.ready()
                beating.start(0.5, now=False)

        def listen_error(self, failure: Any) -> None:
            self.failed = True
            print(f"cannot listen: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
            super().listen_error(failure)

    def beat() -> None:
        if not beats.beat(served[0]):
            print("supervisor gone: exiting", flush=True)
            server.failed = True
            server.stop()

    beating = task.LoopingCall(beat)
    server = SupervisedServer(application, endpoints=args.endpoint, signal_handlers=False,
                              action_logger=action_logger, server_name="daphne")
    drain = _Drain(server, WebSocketProtocol, max(0.5, args.graceful_timeout - DRAIN_MARGIN))

    signals = StopSignals(drain.start, call=reactor.callFromThread, announce=functools.partial(print, flush=True),
                          fast_exit_code=exitcodes.FAST)
    reactor.callWhenRunning(signals.install)  # a signal before then: the default action, as before
    server.run()
    signals.restore()
    if beating.running:
        beating.stop()
    if server.failed:
        return 1
    return 0


class _Drain:
    """The graceful stop of one server (see the module docstring)."""

    def __init__(self, server: Any, websocket_class: type, timeout: float) -> None:
        self.server = server
        self.websocket_class = websocket_class
        self.timeout = timeout
        self.deadline: float | None = None
        self.quiet_since: float | None = None

    def start(self) -> None:
        from twisted.internet import reactor

        if self.deadline is not None:
            return
        self.deadline = time.monotonic() + self.timeout
        self.server.draining = True
        for port in self.server.ports:
            port.stopListening()
        closing = self.close_websockets()
        print(f"draining: stopped accepting; closing {closing} WebSocket(s) with 1001", flush=True)
        if not getattr(self.server, "connections", None):
            # No connection at all: no request can still arrive and no application instance runs
            # (instances belong to connections), so the quiet period has nothing to wait for.
            reactor.callLater(0, self.server.stop)
            return
        reactor.callLater(DRAIN_POLL, self.check)

    def close_websockets(self) -> int:
        """Send 1001 to every open WebSocket (also those accepted during the drain); how many."""
        closing = 0
        for protocol in list(getattr(self.server, "connections", {})):
            if isinstance(protocol, self.websocket_class) and protocol.state == protocol.STATE_OPEN:
                # Autobahn's public sendClose refuses 1001 (an endpoint's code, not an
                # application's); the frame method is what Daphne itself uses for 1011.
                protocol.sendCloseFrame(code=GOING_AWAY, reasonUtf8=b"server shutting down")
                closing += 1
        return closing

    def busy(self) -> int:
        """Connections whose request, socket or application instance has not finished."""
        count = 0
        for protocol, details in getattr(self.server, "connections", {}).items():
            instance = details.get("application_instance")
            if "disconnected" not in details or (instance is not None and not instance.done()):
                count += 1
        return count

    def check(self) -> None:
        from twisted.internet import reactor

        self.close_websockets()
        left = self.busy()
        now = time.monotonic()
        if left:
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = now
        quiet = self.quiet_since is not None and now - self.quiet_since >= DRAIN_QUIET
        if not quiet and now < (self.deadline or 0):
            reactor.callLater(DRAIN_POLL, self.check)
            return
        if left:
            print(f"drain timed out with {left} connection(s) still busy; stopping", flush=True)
        self.server.stop()
