"""Writing HTTP/1.x responses: the status line and header block, and chunked framing.

The application's Response messages are validated in ``http_exchange.py``; this module only turns
validated values into bytes.
"""

from __future__ import annotations

import http

__all__ = ["HOP_BY_HOP", "LAST_CHUNK", "chunk", "reason_phrase", "response_head"]

#: Headers the server frames itself; the application's values for them are replaced.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})

LAST_CHUNK = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase for ``status`` (``b"Unknown"`` for unregistered codes)."""
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


#: ``(http_version, status)`` -> status line, made on first use (a few dozen at most: status is
#: an int from 200 to 599, checked before it gets here).
_STATUS_LINES: dict[tuple[str, int], bytes] = {}


def response_head(status: int, headers: list[tuple[bytes, bytes]], http_version: str) -> bytes:
    """Serialise a status line and header block (ending with the blank line).

    ``headers`` must already be validated bytes pairs; nothing is added here.
    """
    line = _STATUS_LINES.get((http_version, status))
    if line is None:
        version = b"HTTP/1.1" if http_version == "1.1" else b"HTTP/1.0"
        line = _STATUS_LINES[(http_version, status)] = b"%s %d %s\r\n" % (version, status, reason_phrase(status))
    return line + b"".join([b"%s: %s\r\n" % pair for pair in headers]) + b"\r\n"


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one chunk of a chunked body (empty data gives nothing to write)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)
