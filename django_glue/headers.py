"""Reading the ``headers`` of an ASGI-1 message in every form Channels 1 accepted.

Interface servers send a list of ``[name, value]`` pairs (bytes); Channels 1 code and its tests
also built messages with a dict ``{name: value}``, and with text instead of bytes. This is the one
place that turns all of them into ``(name, value)`` text pairs with lower-case names.
"""
from __future__ import annotations

from typing import Any, Iterator

__all__ = ["MalformedHeaders", "iter_headers", "header_values"]


class MalformedHeaders(ValueError):
    """A header entry is not a ``(name, value)`` pair of text or bytes."""


def _text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode("latin-1")
    if isinstance(item, str):
        return item
    raise MalformedHeaders(f"header names and values must be bytes or str, got {item!r}")


def iter_headers(headers: Any) -> Iterator[tuple[str, str]]:
    """Yield ``(lower-case name, value)`` for a list of pairs or a dict (``None``: nothing).

    Raises :class:`MalformedHeaders` (a ``ValueError``) naming the bad entry, e.g. an empty
    ``[]`` or a one-item ``[b"origin"]``.
    """
    if headers is None:
        return
    if isinstance(headers, dict):
        entries: Any = headers.items()
    elif isinstance(headers, (list, tuple)):
        entries = headers
    else:
        raise MalformedHeaders(
            f"message 'headers' must be a list of [name, value] pairs or a dict, not {type(headers).__name__}"
        )
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise MalformedHeaders(f"header entry {entry!r} is not a [name, value] pair")
        name, value = entry
        # Bytes (what interface servers send) decoded inline: this runs for every header of
        # every request; _text handles (and checks) the rest.
        yield (
            (name.decode("latin-1") if type(name) is bytes else _text(name)).lower(),
            value.decode("latin-1") if type(value) is bytes else _text(value),
        )


def header_values(headers: Any, name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive), in order; raises MalformedHeaders."""
    name = name.lower()
    return [value for key, value in iter_headers(headers) if key == name]
