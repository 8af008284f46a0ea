"""The settings of one interface process: name, default, type, help and flag of every option, in
this one place (see docs/interface.md).

Theory of operation
-------------------
Each :class:`ServerOptions` field that a user may set carries its command-line flag, the function
that parses its text, its help and its group in the field's metadata. :func:`interface_options`
lists them as :class:`OptionSpec` records; ``procman interface`` builds its argument parser from
them (:func:`add_arguments`, :func:`options_from_namespace`), and a supervisor that passes options
through to interface processes reads the same list instead of keeping a second copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from procman.interface.http_parsers import HTTP_PARSERS, resolve_parser_name

__all__ = [
    "OptionSpec",
    "ServerOptions",
    "SizeError",
    "add_arguments",
    "interface_options",
    "options_from_namespace",
    "parse_size",
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class SizeError(argparse.ArgumentTypeError, ValueError):
    """Text that is not a size (or a size below the allowed minimum).

    An :class:`argparse.ArgumentTypeError`, so a parser prints its message as is, and a
    :class:`ValueError`, so configuration readers treat it like any other bad value.
    """


def parse_size(text: str | int, minimum: int = 0) -> int:
    """Parse a byte count in binary units -> bytes: ``1048576``, ``512K``, ``1.5G``, ``300MiB``, ``2TB``.

    The one size grammar of ``procman`` and ``procman interface``: a whole or decimal number, an
    optional unit K, M, G or T (powers of 1024, any case) and an optional ``i``/``B`` suffix; a
    decimal is rounded down to whole bytes. An ``int`` is taken as a byte count.

    :param minimum: smallest accepted result (0 for limits where 0 means unlimited).
    :raises SizeError: not a size, or smaller than ``minimum``; the message says what is accepted.
    """
    if isinstance(text, bool):
        raise SizeError(f"invalid size {text!r}: use a number of bytes, optionally with K, M, G or T (e.g. 10M)")
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise SizeError(
                f"invalid size {text!r}: use a number of bytes, optionally with K, M, G or T "
                "(e.g. 512K, 1.5G, 300MiB)"
            )
        value = int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))
    if value < minimum:
        raise SizeError(f"size {text!r} is too small: it must be at least {minimum} bytes")
    return value


def _parse_protocol(text: str) -> str:
    if not _TOKEN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid subprotocol name (an HTTP token); if it is the LAYER, put "
            "LAYER before --ws-protocol (which takes several values)"
        )
    return text


@dataclass(frozen=True)
class OptionSpec:
    """One user-settable interface option.

    :param name: the :class:`ServerOptions` field (also the ``procman.toml`` key).
    :param flag: the command-line flag, e.g. ``--http-timeout``.
    :param default: the default value (``None`` where the help says what None means).
    :param parse: turns command-line text into the value (raises ``ArgumentTypeError``).
    :param help: one line for ``--help`` and the docs.
    :param group: ``HTTP``, ``WebSocket``, ``TLS``, ``limits`` or ``process``.
    :param kind: ``value``, ``switch`` (a flag without a value) or ``list`` (several values).
    :param aliases: other spellings of the flag (Daphne's).
    """

    name: str
    flag: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    group: str
    kind: str = "value"
    aliases: tuple[str, ...] = ()

    def to_argv(self, value: Any) -> list[str]:
        """Command-line arguments setting this option to ``value`` (none for the default)."""
        if value == self.default:
            return []
        if self.kind == "switch":
            return [self.flag] if value else []
        if self.kind == "list":
            return [f"{self.flag}={item}" for item in value]
        return [f"{self.flag}={value}"]


def _option(default: Any, flag: str, parse: Callable[[str], Any], help: str, group: str, **extra: Any) -> Any:
    meta = {"flag": flag, "parse": parse, "help": help, "group": group, **extra}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _http_choice(text: str) -> str:
    if text not in HTTP_PARSERS:
        raise argparse.ArgumentTypeError(f"invalid --http {text!r}: choose {', '.join(HTTP_PARSERS)}")
    return text


def _parse_proxies(text: str) -> list[str]:
    """``--forwarded-allow-ips``: comma-separated IP addresses, ``unix`` or ``*``."""
    import ipaddress

    items = [item.strip() for item in str(text).split(",") if item.strip()]
    for item in items:
        if item in ("*", "unix"):
            continue
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid --forwarded-allow-ips entry {item!r}: give IP addresses, 'unix' (peers "
                "on a UNIX socket) or '*' (any peer), separated by commas") from None
    return items


def _path(text: str) -> str:
    """A file path, made absolute (relative to the directory procman or the interface runs in),
    so every interface process reads the same file whatever its own working directory."""
    import os

    return os.path.abspath(text) if text else ""


def _switch(text: str) -> bool:
    return str(text).lower() in ("1", "true", "yes", "on")


@dataclass
class ServerOptions:
    """Everything that tunes an :class:`~procman.interface.server.InterfaceServer`.

    Durations are seconds. ``None`` for ``websocket_timeout`` means "the layer's ``group_expiry``"
    (the spec: connections must not outlive their group memberships); a negative duration means
    "never" for ``websocket_timeout`` and ``websocket_connect_timeout``. A limit of 0 means
    "unlimited" / "off" where the help says so.
    """

    http: str = _option("auto", "--http", _http_choice,
                        "HTTP/1.1 parser: httptools (llhttp), h11 (pure Python), or auto "
                        "(httptools when installed)", "HTTP")
    http_timeout: float = _option(120.0, "--http-timeout", float,
                                  "seconds without progress on a request before 503/408", "HTTP",
                                  aliases=("-t",))
    max_request_time: float = _option(600.0, "--max-request-time", float,
                                      "seconds a request body may take in total, however "
                                      "steadily it trickles in; then 408 (0 = no limit)",
                                      "HTTP")
    keep_alive_timeout: float = _option(5.0, "--keep-alive-timeout", float,
                                        "seconds an idle keep-alive connection stays open, and "
                                        "a request head may take (then 408)", "HTTP")
    root_path: str = _option("", "--root-path", str, "ASGI root_path (the SCRIPT_NAME prefix)", "HTTP")
    proxy_headers: bool = _option(False, "--proxy-headers", _switch,
                                  "trust X-Forwarded-For/-Port/-Proto for the client address and "
                                  "scheme", "HTTP", kind="switch")
    forwarded_allow_ips: str = _option("127.0.0.1,::1,unix", "--forwarded-allow-ips", str,
                                       "with --proxy-headers: the peers whose X-Forwarded-* "
                                       "headers are trusted (comma-separated IPs, 'unix' for a "
                                       "UNIX socket, '*' for any); others' are ignored", "HTTP")
    max_request_body: int = _option(100 * 2**20, "--max-request-body", parse_size,
                                    "largest request body; more gets 413 (0 = unlimited)", "limits")
    max_response_buffer: int = _option(16 * 2**20, "--max-response-buffer", parse_size,
                                       "response bytes held for a slow HTTP client before it is "
                                       "dropped", "limits")
    max_request_line: int = _option(8 * 2**10, "--max-request-line", parse_size,
                                    "longest request line; longer gets 414", "limits")
    max_head_size: int = _option(32 * 2**10, "--max-head-size", parse_size,
                                 "largest request head (line and header fields); larger gets 431",
                                 "limits")
    max_header_count: int = _option(100, "--max-header-count", int,
                                    "most header fields in a request; more gets 431", "limits")
    max_ws_message: int = _option(2**20, "--max-ws-message", parse_size,
                                  "largest incoming WebSocket message; more closes with 1009 "
                                  "(0 = unlimited)", "limits")
    max_ws_pending: int = _option(256 * 2**10, "--max-ws-pending", parse_size,
                                  "WebSocket bytes a client may send before the application "
                                  "accepts the handshake; more rejects it with 403", "limits")
    max_ws_output_buffer: int = _option(16 * 2**20, "--max-ws-output-buffer", parse_size,
                                        "WebSocket bytes held for a client that does not read; "
                                        "more drops it (the application sees code 1008)", "limits")
    max_connections: int = _option(0, "--max-connections", int,
                                   "stop accepting above this many open connections (0 = "
                                   "unlimited)", "limits")
    backlog: int = _option(2048, "--backlog", int,
                           "listen backlog of the sockets this process binds itself", "limits")
    websocket_timeout: float | None = _option(None, "--websocket-timeout", float,
                                              "close sockets older than this many seconds "
                                              "(default: the layer's group_expiry; negative = "
                                              "never)", "WebSocket",
                                              aliases=("--websocket_timeout",))
    websocket_connect_timeout: float = _option(5.0, "--websocket-connect-timeout", float,
                                               "seconds to wait for the application to accept a "
                                               "handshake before 403 (negative = wait forever)",
                                               "WebSocket", aliases=("--websocket_connect_timeout",))
    ping_interval: float = _option(20.0, "--ping-interval", float,
                                   "ping a socket idle for this many seconds (0 = never)", "WebSocket")
    ping_timeout: float = _option(30.0, "--ping-timeout", float,
                                  "close a socket whose pong does not come within this many "
                                  "seconds", "WebSocket")
    ws_protocols: list[str] = _option([], "--ws-protocol", _parse_protocol,
                                      "WebSocket subprotocols to accept (the first the client "
                                      "offers that is listed wins)", "WebSocket", kind="list")
    certfile: str = _option("", "--certfile", _path,
                            "serve HTTPS (and HTTP/2 to clients that offer it) with this PEM "
                            "certificate chain; re-read on SIGHUP and on 'procman reload'", "TLS",
                            aliases=("--ssl-certfile",))
    keyfile: str = _option("", "--keyfile", _path,
                           "the PEM private key of --certfile (default: the key is in --certfile)",
                           "TLS", aliases=("--ssl-keyfile",))
    ssl_ciphers: str = _option("", "--ssl-ciphers", str,
                               "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's; TLS 1.3 "
                               "suites are not affected)", "TLS")
    h2_max_concurrent_streams: int = _option(100, "--h2-max-concurrent-streams", int,
                                             "HTTP/2: most requests one connection may have in "
                                             "flight (SETTINGS_MAX_CONCURRENT_STREAMS)", "limits")
    h2_max_resets: int = _option(200, "--h2-max-resets", int,
                                 "HTTP/2: stream resets a client may send in one second before "
                                 "the connection is closed (rapid-reset guard, CVE-2023-44487)",
                                 "limits")
    shutdown_timeout: float = _option(10.0, "--shutdown-timeout", float,
                                      "seconds a graceful stop waits for in-flight responses",
                                      "process")
    # Internal tuning, not user options (no flag).
    body_chunk_size: int = 256 * 2**10
    check_interval: float = 1.0
    retry_after: int = 5

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        resolve_parser_name(self.http)
        positive = (
            "http_timeout", "keep_alive_timeout", "ping_timeout", "shutdown_timeout",
            "body_chunk_size", "max_head_size", "max_request_line", "max_header_count",
            "check_interval", "max_response_buffer", "max_ws_output_buffer", "max_ws_pending",
            "backlog", "h2_max_concurrent_streams", "h2_max_resets",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0, got {getattr(self, name)!r}")
        for name in ("max_request_body", "max_ws_message", "max_connections", "ping_interval",
                     "max_request_time"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off/unlimited) or more, got {getattr(self, name)!r}")
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile is set but certfile is not: give --certfile with --keyfile")
        if self.ssl_ciphers and not self.certfile:
            raise ValueError("ssl_ciphers is set but certfile is not: give --certfile to serve TLS")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(
                f"root_path must start with '/' and not end with '/', got {self.root_path!r}"
            )


def interface_options() -> list[OptionSpec]:
    """Every user-settable interface option, in ``--help`` order (the one list to pass through)."""
    specs = []
    for item in dataclasses.fields(ServerOptions):
        meta = item.metadata
        if "flag" not in meta:
            continue
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default  # type: ignore[misc]
        specs.append(
            OptionSpec(
                name=item.name, flag=meta["flag"], default=default, parse=meta["parse"],
                help=meta["help"], group=meta["group"], kind=meta.get("kind", "value"),
                aliases=meta.get("aliases", ()),
            )
        )
    return specs


def _describe_default(spec: OptionSpec) -> str:
    if spec.kind != "value" or spec.default is None:
        return ""
    return f" (default {spec.default})" if spec.default != "" else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option of :func:`interface_options` to ``parser``, grouped."""
    groups: dict[str, Any] = {}
    for spec in interface_options():
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        flags = [spec.flag, *spec.aliases]
        help_text = spec.help + _describe_default(spec)
        if spec.kind == "switch":
            group.add_argument(*flags, dest=spec.name, action="store_true", help=help_text)
        elif spec.kind == "list":
            group.add_argument(*flags, dest=spec.name, type=spec.parse, nargs="*", action="extend",
                               default=[], help=help_text)
        else:
            metavar = {parse_size: "SIZE", float: "SECONDS", int: "N"}.get(spec.parse)  # type: ignore[call-overload]
            group.add_argument(*flags, dest=spec.name, type=spec.parse, default=spec.default,
                               metavar=metavar, help=help_text)


def options_from_namespace(args: argparse.Namespace) -> ServerOptions:
    """The :class:`ServerOptions` that parsed arguments (from :func:`add_arguments`) describe."""
    return ServerOptions(**{spec.name: getattr(args, spec.name) for spec in interface_options()})
