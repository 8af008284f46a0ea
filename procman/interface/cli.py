"""``procman interface LAYER``: run one interface process (also ``python -m procman.interface``).

Exit codes: 0 clean stop, 2 bad configuration or cannot listen (do not restart), 75 the channel
layer was lost (EX_TEMPFAIL: restart me), 130 fast stop after a second SIGINT or SIGQUIT.

Whatever the exit, a layer this process attached to (or created) is closed, so a failed start
never leaves a segment behind in ``/dev/shm``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable

from procman.interface.exitcodes import EXIT_CONFIG
from procman.interface.options import ServerOptions, add_arguments, options_from_namespace, parse_size
from procman.interface.lean_imports import AUTOBAHN_EXTRAS, TLS_MODULES, endpoint_kind, needs_tls, refuse_imports

if TYPE_CHECKING:
    from procman.interface.server import InterfaceServer

__all__ = ["EXIT_CONFIG", "build_parser", "endpoint_strings", "main", "parse_bind", "parse_size"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``procman interface`` (tuning options from ``options.py``)."""
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
    where.add_argument(
        "-b",
        "--bind",
        help="TCP address as HOST:PORT or [IPV6]:PORT, as for 'procman run' (port 0 picks a free one)",
    )
    where.add_argument("-p", "--port", type=int, help="TCP port on 127.0.0.1 (same as --bind 127.0.0.1:PORT)")
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
    add_arguments(parser)
    process = parser.add_argument_group("output")
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


def parse_bind(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPV6]:PORT`` (the form ``procman run`` takes).

    :raises argparse.ArgumentTypeError: with the accepted forms, also for the old ``--bind HOST``.
    """
    forms = "use --bind HOST:PORT or [IPV6]:PORT (e.g. 0.0.0.0:8000), as for 'procman run'"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise argparse.ArgumentTypeError(f"--bind {text!r} has no port; {forms}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise argparse.ArgumentTypeError(
                f"--bind {text!r} has no port: --bind now takes HOST:PORT (it used to take only "
                f"the host, with --port); {forms}"
            )
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"--bind {text!r}: the port must be 0-65535; {forms}")
    return host or "127.0.0.1", int(port)


def endpoint_strings(args: argparse.Namespace, backlog: int = 2048) -> list[str]:
    """Twisted endpoint strings for --bind/--port/--unix-socket/-e (``--fd`` is handled apart).

    Nothing given at all means ``127.0.0.1:8000``. Every socket bound here, and every ``-e``
    string that does not say otherwise, listens with ``backlog`` (``--backlog``).

    :raises argparse.ArgumentTypeError: a malformed --bind, or --bind together with --port.
    """
    endpoints = [_with_backlog(description, backlog) for description in args.endpoint]
    address = tcp_address(args)
    if address is not None:
        endpoints.append(_tcp_endpoint(*address, backlog))
    if args.unix_socket:
        endpoints.append("unix:" + args.unix_socket.replace(":", "\\:") + f":backlog={backlog}")
    return endpoints


def _tcp_endpoint(host: str, port: int, backlog: int) -> str:
    escaped = host.replace(":", "\\:")
    return f"tcp:port={port}:interface={escaped}:backlog={backlog}"


def tcp_address(args: argparse.Namespace) -> tuple[str, int] | None:
    """The ``(host, port)`` of --bind or --port; ``127.0.0.1:8000`` when nowhere to listen is
    given at all; None when only --unix-socket, -e or --fd are.

    :raises argparse.ArgumentTypeError: a malformed --bind, or --bind together with --port.
    """
    if args.bind is not None and args.port is not None:
        raise argparse.ArgumentTypeError(
            "give --bind HOST:PORT or --port PORT, not both (--bind now includes the port)"
        )
    if args.bind is not None:
        return parse_bind(args.bind)
    if args.port is not None:
        return "127.0.0.1", args.port
    if not (args.endpoint or args.unix_socket or args.fd):
        return "127.0.0.1", 8000
    return None


def _with_backlog(description: str, backlog: int) -> str:
    kind = endpoint_kind(description)
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def _configure_logging(verbosity: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[verbosity]
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from procman.interface.access_log import EscapingFilter  # noqa: PLC0415

    for handler in logging.getLogger().handlers:
        handler.addFilter(EscapingFilter())  # log lines quote paths and headers clients chose


def _route_twisted_logs(verbosity: int) -> None:
    """Twisted's log events into the standard library's (imports ``twisted.logger``)."""
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


def main(argv: list[str] | None = None, on_serving: Callable[[InterfaceServer], None] | None = None) -> int:
    """Run an interface process until it is stopped; returns the exit code.

    :param on_serving: called with the server once it listens, inside the running reactor (a
        supervisor reads :attr:`InterfaceServer.finished_exchanges` from there).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.layer is None) == (args.settings is None):
        parser.error("give exactly one of LAYER ('package.module:attribute') or --settings")
    options = options_from_namespace(args)
    try:
        options.validate()
        endpoints = endpoint_strings(args, options.backlog)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    _configure_logging(args.verbosity)
    log = logging.getLogger("procman.interface")
    # Before the layer, Twisted and Autobahn are loaded (about half a second): a misconfigured
    # start fails at once, with the messages the server would give.
    problem = _unusable_configuration(args, options)
    if problem:
        log.error("%s", problem)
        return EXIT_CONFIG
    # Here, not at the top: the supervisor imports this module for build_parser() only.
    from procman.interface.layer_source import (  # noqa: PLC0415
        LayerSourceError,
        layer_from_reference,
        layer_from_settings,
    )

    try:
        layer = layer_from_reference(args.layer) if args.layer else layer_from_settings(args.settings)
    except LayerSourceError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        return _serve(layer, options, args, endpoints, log, on_serving)
    finally:
        close = getattr(layer, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - the process is exiting anyway
                log.exception("closing the channel layer failed")


def _unusable_configuration(args: argparse.Namespace, options: ServerOptions) -> str | None:
    """What makes this start fail, found without Twisted or the layer, or None.

    Inherited sockets (``--fd``), the TCP address of --bind/--port (taken, or not this
    machine's) and the TLS files are checked here; anything else is found by the real start.
    """
    from procman.interface.listen_checks import check_tcp_address, inherited_socket  # noqa: PLC0415

    try:
        for fd in args.fd:
            inherited_socket(fd)
    except ValueError as exc:
        return f"cannot listen on {exc}"
    address = tcp_address(args)
    if address is not None:
        try:
            check_tcp_address(*address)
        except ValueError as exc:
            return f"cannot listen on {_tcp_endpoint(*address, options.backlog)}: {exc}"
    if options.certfile:
        from procman.interface.tls_context import server_context  # noqa: PLC0415

        try:
            server_context(options.certfile, options.keyfile or options.certfile, options.ssl_ciphers, ())
        except ValueError as exc:
            return str(exc)
    return None


def _serve(
    layer: Any,
    options: ServerOptions,
    args: argparse.Namespace,
    endpoints: list[str],
    log: Any,
    on_serving: Callable[[InterfaceServer], None] | None,
) -> int:
    # Before the reactor and Autobahn are imported (see lean_imports): ~2 MiB, and ~5 more without TLS.
    refuse_imports(AUTOBAHN_EXTRAS)
    if not needs_tls(options.certfile, endpoints):
        refuse_imports(TLS_MODULES)
    _route_twisted_logs(args.verbosity)
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
        for description in endpoints:
            deferred = server.listen(description)
            deferred.addErrback(lambda f, d=description: failures.append(f"{d}: {f.getErrorMessage()}"))
    except ValueError as exc:
        failures.append(str(exc))
    if failures:
        for failure in failures:
            log.error("cannot listen on %s", failure)
        server.close_ports()
        return EXIT_CONFIG

    def stop_reactor(code: int) -> None:
        reactor.callLater(0, reactor.stop)

    server.on_exit = stop_reactor
    server.install_signal_handlers()
    server.start()
    if on_serving is not None:
        reactor.callWhenRunning(on_serving, server)
    reactor.run(installSignalHandlers=False)
    return server.exit_code if server.exit_code is not None else 0
