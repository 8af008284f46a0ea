"""The access log: one NCSA-style line per HTTP request and per WebSocket event, and the escaping
of everything a client controls before it reaches any log.

Format (Daphne's, so existing log tooling keeps working)::

    127.0.0.1:53422 - - [23/Nov/2026:00:41:07] "GET /path" 200 1432
    127.0.0.1:53424 - - [23/Nov/2026:00:41:08] "WSCONNECT /chat/" - -

WebSocket events: ``WSCONNECTING``, ``WSCONNECT``, ``WSREJECT``, ``WSDISCONNECT``.

Paths are logged percent-decoded, so ``/x%0a...`` would put a newline - a forged line - into the
log. :func:`escape_for_log` writes every control character (C0, DEL, C1), the backslash and the
double quote as a ``\\xNN`` escape; the access log applies it to the request it logs, and
:class:`EscapingFilter` applies it to every message of the process's other logs.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, TextIO

__all__ = ["AccessLog", "EscapingFilter", "escape_for_log"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_OR_QUOTE = re.compile(r'[\x00-\x1f\x7f-\x9f\\"]')


def escape_for_log(text: str, quoted: bool = True) -> str:
    """``text`` with control characters written as ``\\xNN`` (one line, no forged lines); with
    ``quoted`` also ``\\`` and ``"``, so a quoted field cannot be closed early."""
    pattern = _CONTROL_OR_QUOTE if quoted else _CONTROL
    return pattern.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class EscapingFilter(logging.Filter):
    """A handler filter: the formatted message of every record is escaped (tracebacks, which
    are ours and multi-line by nature, are left alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_for_log(message, quoted=False)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


class AccessLog:
    """Writes access-log lines to a text stream (flushed per line so tails see them at once)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(
        self,
        client: list[Any] | None,
        request: str,
        status: int | None = None,
        size: int | None = None,
    ) -> None:
        """Append one line; ``client`` is ``[host, port]`` or None, ``request`` e.g. ``GET /``
        (escaped here, as is the client address, which proxy headers may set)."""
        host = escape_for_log(f"{client[0]}:{client[1]}") if client else "-"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime())
        status_text = "-" if status is None else str(status)
        size_text = "-" if size is None else str(size)
        try:
            self.stream.write(f'{host} - - [{stamp}] "{escape_for_log(request)}" {status_text} {size_text}\n')
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken log stream must never take the server down.
            pass
