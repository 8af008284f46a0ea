"""Turn a parsed request head plus transport addresses into ASGI-1 message fields.

Shared by HTTP (``http.request``) and WebSocket (``websocket.connect``): path and query string
from the request target, sanitised headers, client/server addresses, scheme, and the optional
``X-Forwarded-*`` override (only when proxy headers are trusted).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from procman.interface.http_events import RequestHead

__all__ = [
    "address_pair", "base_message", "client_pair", "proxy_trusted", "sanitise_headers", "split_target",
]


def split_target(target: bytes) -> tuple[str, bytes]:
    """Split a request target into (percent-decoded UTF-8 path, raw query string).

    Absolute-form targets (``http://host/path``) are reduced to their path. Percent-escapes that
    do not decode as UTF-8 become U+FFFD (as Daphne and Django's WSGI handler tolerate them) rather
    than failing the request; raw non-ASCII bytes never reach here (the parser answers 400).
    """
    if target[:1] != b"/" and target[:8].lower().startswith((b"http://", b"https://")):
        after_scheme = target.index(b"//") + 2
        slash = target.find(b"/", after_scheme)
        target = target[slash:] if slash >= 0 else b"/"
    raw_path, _, query = target.partition(b"?")
    if b"%" not in raw_path:  # nothing to decode (and the bytes are ASCII, see above)
        return raw_path.decode("ascii"), query
    path = unquote_to_bytes(raw_path).decode("utf-8", errors="replace")
    return path, query


def sanitise_headers(headers: list[tuple[bytes, bytes]]) -> list[list[bytes]]:
    """ASGI header list: names lower-case (already), duplicates kept, names with ``_`` dropped.

    Dropping underscore names stops ``X_Forwarded_For``-style spoofing of ``HTTP_X_FORWARDED_FOR``
    once a WSGI-style environ folds ``-`` and ``_`` together (CVE-2015-0219).
    """
    return [[name, value] for name, value in headers if b"_" not in name]


def address_pair(address: object) -> list[Any] | None:
    """``[host, port]`` for IP addresses, None for anything else (UNIX sockets, pipes)."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return [address.host, address.port]
    return None


def client_pair(peer: object) -> list[Any] | None:
    """The ASGI ``client`` of a connection: ``[host, port]`` of an IP peer; a peer on a UNIX
    socket is on this machine, so it is ``["127.0.0.1", 0]`` (Django's ``REMOTE_ADDR`` is never
    None behind a local proxy that sends no ``X-Forwarded-For``)."""
    if isinstance(peer, UNIXAddress):
        return ["127.0.0.1", 0]
    return address_pair(peer)


def proxy_trusted(peer: object, allowed: str) -> bool:
    """Whether ``peer`` may set the client address through ``X-Forwarded-*`` headers.

    :param allowed: the ``--forwarded-allow-ips`` list: IPs, ``unix`` for UNIX-socket peers,
        ``*`` for any peer.
    """
    items = {item.strip() for item in allowed.split(",")}
    if "*" in items:
        return True
    if isinstance(peer, UNIXAddress):
        return "unix" in items
    return isinstance(peer, (IPv4Address, IPv6Address)) and peer.host in items


def _proxy_override(
    head: RequestHead, client: list[Any] | None, scheme: str
) -> tuple[list[Any] | None, str]:
    forwarded_for = head.header(b"x-forwarded-for")
    if not forwarded_for:
        return client, scheme
    host = forwarded_for.split(b",")[0].strip().decode("latin-1")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = 0
    forwarded_port = head.header(b"x-forwarded-port")
    if forwarded_port and forwarded_port.strip().isdigit():
        port = int(forwarded_port.strip())
    forwarded_proto = head.header(b"x-forwarded-proto")
    if forwarded_proto:
        proto = forwarded_proto.split(b",")[0].strip().lower().decode("latin-1")
        if proto in ("http", "https", "ws", "wss"):
            secure = proto in ("https", "wss")
            websocket = scheme in ("ws", "wss")
            scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    return [host, port], scheme


def base_message(
    head: RequestHead,
    *,
    reply_channel: str,
    peer: object,
    host: object,
    secure: bool,
    websocket: bool,
    root_path: str,
    proxy_headers: bool,
    forwarded_allow_ips: str = "*",
) -> dict[str, Any]:
    """The fields common to ``http.request`` and ``websocket.connect``.

    :param peer: the transport's ``getPeer()``; :param host: its ``getHost()``.
    :param secure: the transport is TLS. :param websocket: choose ``ws``/``wss`` schemes.
    :param proxy_headers: trust ``X-Forwarded-For``/``-Port``/``-Proto`` for client and scheme,
        when the peer is one of ``forwarded_allow_ips`` (see :func:`proxy_trusted`).
    """
    path, query = split_target(head.target)
    scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    client = client_pair(peer)
    if proxy_headers and proxy_trusted(peer, forwarded_allow_ips):
        client, scheme = _proxy_override(head, client, scheme)
    return {
        "reply_channel": reply_channel,
        "scheme": scheme,
        "path": path,
        "query_string": query,
        "root_path": root_path,
        "headers": sanitise_headers(head.headers),
        "client": client,
        "server": address_pair(host),
    }
