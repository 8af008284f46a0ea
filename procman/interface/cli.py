"""``procman interface LAYER``: run one interface process (also ``python -m procman.interface``).

Exit codes: 0 clean stop, 2 bad configuration or cannot listen (do not restart), 75 the channel
layer was lost (EX_TEMPFAIL: restart me), 130 fast stop after a second SIGINT or SIGQUIT.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

from procman.interface.layer_source import (
    LayerSourceError,
    layer_from_reference,
    layer_from_settings,
)
from procman.interface.options import ServerOptions

__all__ = ["EXIT_CONFIG", "build_parser", "endpoint_strings", "main", "parse_size"]

EXIT_CONFIG = 2

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*$")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str) -> int:
    """Parse a byte count such as ``1048576``, ``512K``, ``1M``, ``2GiB`` (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use a number of bytes, optionally with K, M or G (e.g. 10M)"
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``procman interface``."""
    parser = argparse.ArgumentParser(
        prog="procman interface",
        description=(
            "Serve HTTP and WebSocket, speaking ASGI-1 over a channel layer (the role Daphne 1.x "
            "played). Runs no application code: workers answer through the layer."
        ),
    )
    parser.add_argument(
        "layer",
        nargs="?",
        help="the channel layer object, as 'package.module:attribute' (omit with --settings)",
    )
    parser.add_argument(
        "--settings",
        help="Django settings module whose CHANNEL_LAYERS['default'] names the layer",
    )
    where = parser.add_argument_group("where to listen (default 127.0.0.1:8000)")
    where.add_argument("-b", "--bind", dest="host", help="TCP address (default 127.0.0.1)")
    where.add_argument("-p", "--port", type=int, help="TCP port (default 8000; 0 picks a free one)")
    where.add_argument("-u", "--unix-socket", help="listen on this UNIX socket path")
    where.add_argument(
        "--fd",
        type=int,
        action="append",
        default=[],
        help="serve an inherited, already listening socket with this file descriptor (repeatable)",
    )
    where.add_argument(
        "-e",
        "--endpoint",
        action="append",
        default=[],
        help="a Twisted server endpoint string, e.g. ssl:443:privateKey=key.pem:certKey=crt.pem "
        "(repeatable)",
    )
    http = parser.add_argument_group("HTTP")
    http.add_argument(
        "-t",
        "--http-timeout",
        type=float,
        default=120.0,
        help="seconds without progress on a request before 503/408 (default 120)",
    )
    http.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (default 5)",
    )
    http.add_argument(
        "--max-request-body",
        type=parse_size,
        default=ServerOptions.max_request_body,
        help="largest request body; more gets 413 (default 100M, 0 = unlimited)",
    )
    http.add_argument(
        "--max-response-buffer",
        type=parse_size,
        default=ServerOptions.max_response_buffer,
        help="response bytes held for a slow client before it is dropped (default 16M)",
    )
    http.add_argument("--root-path", default="", help="ASGI root_path (the SCRIPT_NAME prefix)")
    http.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Port/-Proto for the client address and scheme",
    )
    ws = parser.add_argument_group("WebSocket")
    ws.add_argument(
        "--websocket-timeout",
        "--websocket_timeout",
        type=float,
        default=None,
        help="close sockets older than this many seconds (default: the layer's group_expiry; "
        "negative = never)",
    )
    ws.add_argument(
        "--websocket-connect-timeout",
        "--websocket_connect_timeout",
        type=float,
        default=5.0,
        help="seconds to wait for the application to accept a handshake before 403 "
        "(default 5; negative = wait forever)",
    )
    ws.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="ping a socket idle for this many seconds (default 20; 0 = never)",
    )
    ws.add_argument(
        "--ping-timeout",
        type=float,
        default=30.0,
        help="close a socket whose pong does not come within this many seconds (default 30)",
    )
    ws.add_argument(
        "--ws-protocol",
        nargs="*",
        action="extend",
        default=[],
        help="WebSocket subprotocols to accept (the first the client offers that is listed wins)",
    )
    ws.add_argument(
        "--max-ws-message",
        type=parse_size,
        default=ServerOptions.max_ws_message,
        help="largest incoming WebSocket message; more closes with 1009 (default 1M, 0 = "
        "unlimited)",
    )
    process = parser.add_argument_group("process")
    process.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="stop accepting above this many open connections (default 0 = unlimited)",
    )
    process.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds a graceful stop waits for in-flight responses (default 10)",
    )
    process.add_argument(
        "--access-log",
        help="file to append access-log lines to, or '-' for stdout (default: stdout when "
        "verbosity >= 1)",
    )
    process.add_argument(
        "-v",
        "--verbosity",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="0 warnings, 1 info (default), 2 debug",
    )
    return parser


def endpoint_strings(args: argparse.Namespace) -> list[str]:
    """Twisted endpoint strings for --bind/--port/--unix-socket/-e (``--fd`` is handled apart).

    Nothing given at all means ``127.0.0.1:8000``; a host without a port gets 8000, a port
    without a host gets 127.0.0.1.
    """
    endpoints = list(args.endpoint)
    if args.host is not None or args.port is not None:
        host = (args.host or "127.0.0.1").strip("[]")
        port = 8000 if args.port is None else args.port
        endpoints.append(f"tcp:port={port}:interface={host.replace(':', chr(92) + ':')}")
    if args.unix_socket:
        endpoints.append("unix:" + args.unix_socket.replace(":", "\\:"))
    if not endpoints and not args.fd:
        endpoints.append("tcp:port=8000:interface=127.0.0.1")
    return endpoints


def _options(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(
        http_timeout=args.http_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        websocket_timeout=args.websocket_timeout,
        websocket_connect_timeout=args.websocket_connect_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        ws_protocols=list(args.ws_protocol),
        root_path=args.root_path,
        proxy_headers=args.proxy_headers,
        max_request_body=args.max_request_body,
        max_ws_message=args.max_ws_message,
        max_connections=args.max_connections,
        max_response_buffer=args.max_response_buffer,
        shutdown_timeout=args.shutdown_timeout,
    )


def _configure_logging(verbosity: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[verbosity]
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from twisted.logger import (  # noqa: PLC0415
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        STDLibLogObserver,
        globalLogBeginner,
    )

    twisted_level = LogLevel.debug if verbosity >= 2 else LogLevel.warn
    predicate = LogLevelFilterPredicate(defaultLogLevel=twisted_level)
    observer = FilteringLogObserver(STDLibLogObserver(name="twisted"), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)


def _open_access_log(args: argparse.Namespace) -> Any:
    from procman.interface.access_log import AccessLog  # noqa: PLC0415

    if args.access_log == "-" or (args.access_log is None and args.verbosity >= 1):
        return AccessLog(sys.stdout)
    if args.access_log:
        return AccessLog(open(args.access_log, "a", buffering=1, encoding="utf-8"))  # noqa: SIM115
    return None


def main(argv: list[str] | None = None) -> int:
    """Run an interface process until it is stopped; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for protocol in args.ws_protocol:
        if not _TOKEN.match(protocol):
            parser.error(
                f"--ws-protocol {protocol!r} is not a valid subprotocol name (an HTTP token); if it "
                "is the LAYER, put LAYER before --ws-protocol (which takes several values)"
            )
    if (args.layer is None) == (args.settings is None):
        parser.error("give exactly one of LAYER ('package.module:attribute') or --settings")
    options = _options(args)
    try:
        options.validate()
    except ValueError as exc:
        parser.error(str(exc))
    _configure_logging(args.verbosity)
    log = logging.getLogger("procman.interface")
    try:
        layer = layer_from_reference(args.layer) if args.layer else layer_from_settings(args.settings)
    except LayerSourceError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG

    from twisted.internet import reactor  # noqa: PLC0415

    from procman.interface.server import InterfaceServer, LayerNotSupported  # noqa: PLC0415

    try:
        server = InterfaceServer(layer, options, reactor=reactor, access_log=_open_access_log(args))
    except (LayerNotSupported, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    failures: list[str] = []
    try:
        for fd in args.fd:
            server.adopt(fd)
        for description in endpoint_strings(args):
            deferred = server.listen(description)
            deferred.addErrback(lambda f, d=description: failures.append(f"{d}: {f.getErrorMessage()}"))
    except ValueError as exc:
        failures.append(str(exc))
    if failures:
        for failure in failures:
            log.error("cannot listen on %s", failure)
        return EXIT_CONFIG

    def stop_reactor(code: int) -> None:
        reactor.callLater(0, reactor.stop)

    server.on_exit = stop_reactor
    server.install_signal_handlers()
    server.start()
    reactor.run(installSignalHandlers=False)
    close = getattr(layer, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - the process is exiting anyway
            log.exception("closing the channel layer failed")
    return server.exit_code if server.exit_code is not None else 0
