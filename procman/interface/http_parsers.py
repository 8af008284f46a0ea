"""The HTTP/1.x parser adapters by name: the ``--http`` choice, and a parser per connection.

Kept apart from ``http_events`` (the events and interface every adapter imports), so that the
adapters never import what chooses between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procman.interface.http_events import RequestParser
    from procman.interface.http_policy import HeadLimits

__all__ = ["HTTP_PARSERS", "make_parser", "resolve_parser_name"]


#: The ``--http`` choices; ``auto`` is httptools when it imports, else h11.
HTTP_PARSERS = ("auto", "httptools", "h11")


def resolve_parser_name(name: str) -> str:
    """``httptools`` or ``h11`` for a ``--http`` choice; ValueError for an unknown or missing one."""
    if name not in HTTP_PARSERS:
        raise ValueError(f"http must be one of {', '.join(HTTP_PARSERS)}, got {name!r}")
    if name == "auto":
        try:
            import httptools  # noqa: F401, PLC0415
        except ImportError:
            return "h11"
        return "httptools"
    try:
        __import__(name)
    except ImportError as exc:
        raise ValueError(f"--http {name}: the {name} package is not installed ({exc})") from exc
    return name


def make_parser(name: str, limits: HeadLimits) -> RequestParser:
    """A fresh parser adapter for one connection (``name`` as returned by
    :func:`resolve_parser_name`)."""
    if name == "httptools":
        from procman.interface.http_httptools import HttptoolsParser  # noqa: PLC0415

        return HttptoolsParser(limits)
    from procman.interface.http_h11 import H11Parser  # noqa: PLC0415

    return H11Parser(limits)
