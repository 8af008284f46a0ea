"""The access log: one NCSA-style line per HTTP request and per WebSocket event.

Format (Daphne's, so existing log tooling keeps working)::

    127.0.0.1:53422 - - [23/Nov/2026:00:41:07] "GET /path" 200 1432
    127.0.0.1:53424 - - [23/Nov/2026:00:41:08] "WSCONNECT /chat/" - -

WebSocket events: ``WSCONNECTING``, ``WSCONNECT``, ``WSREJECT``, ``WSDISCONNECT``.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

__all__ = ["AccessLog"]


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
        """Append one line; ``client`` is ``[host, port]`` or None, ``request`` e.g. ``GET /``."""
        host = f"{client[0]}:{client[1]}" if client else "-"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime())
        status_text = "-" if status is None else str(status)
        size_text = "-" if size is None else str(size)
        try:
            self.stream.write(f'{host} - - [{stamp}] "{request}" {status_text} {size_text}\n')
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken log stream must never take the server down.
            pass
