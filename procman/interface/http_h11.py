"""The h11 parser adapter (pure Python, the fallback when httptools is missing): h11's events
turned into the connection's events.

Theory of operation
-------------------
h11 is a connection state machine for both directions; we write responses ourselves
(``http_response.py``), so the adapter uses one ``h11.Connection`` per request and carries the
bytes after a request's end (``trailing_data``) over to the next one in ``start_next()``. Until
then the adapter answers ``PAUSED`` and those bytes count in ``buffered``.

h11 reads heads leniently where llhttp does not (bare LF line ends, obs-fold, merged duplicate
``Content-Length``). So while waiting for a head the adapter keeps the bytes itself until the
blank line, refuses past the limits (414, 431) without holding more, runs
:func:`~procman.interface.http_policy.check_head_bytes` on the complete head, and passes the
policy the header fields exactly as they were sent. Only then does h11 see the head; its own
errors become :class:`ClientError` with h11's suggested status.

h11 also reads chunk-size lines leniently (extensions as ``;.*``, so a bare CR passes; sizes of up
to 20 hex digits). In a chunked body the adapter therefore notes which bytes h11 consumed for an
event that starts a chunk (or ends the body) and passes the chunk-size line they begin with to
:func:`~procman.interface.http_policy.check_chunk_line`.
"""

from __future__ import annotations

from typing import Any

import h11

from procman.interface.http_events import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ClientError,
    EndOfBody,
    Event,
)
from procman.interface.http_policy import HeadLimits, body_framing, check_chunk_line, check_head_bytes, request_head

__all__ = ["H11Parser"]


class H11Parser:
    """One connection's requests, parsed by h11. See the module docstring."""

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self._pending = bytearray()  # bytes before the current head is complete
        self._conn: Any = None  # the h11.Connection of the current request
        self._paused = False
        self._chunked = False
        self._unchecked = b""  # chunked framing bytes h11 consumed without an event yet
        self._scanned = 0  # bytes of ``_pending`` already checked while waiting for a head

    @property
    def buffered(self) -> int:
        held = len(self._conn.trailing_data[0]) if self._conn is not None else 0
        return len(self._pending) + held

    def feed(self, data: bytes) -> None:
        if self._conn is None or self._paused:
            self._pending += data
        else:
            self._conn.receive_data(data)

    def next_event(self) -> Event:
        if self._paused:
            return PAUSED
        if self._conn is None:
            head = self._take_head()
            if head is None:
                return NEED_DATA
            return head
        before = self._conn.trailing_data[0] if self._chunked else b""
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ClientError(exc.error_status_hint, f"Malformed request body: {exc}") from None
        if self._chunked:
            self._check_chunk_line(before, event)
        if event is h11.NEED_DATA:
            return NEED_DATA
        if isinstance(event, h11.Data):
            return BodyData(bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            self._paused = True
            return EndOfBody(trailers=[(bytes(n), bytes(v)) for n, v in event.headers.raw_items()])
        raise ClientError(400, "Malformed request")  # PAUSED or ConnectionClosed mid-request

    def start_next(self) -> None:
        if not self._paused:
            raise RuntimeError("start_next() called while a request is still being parsed")
        rest = self._conn.trailing_data[0]
        self._conn = None
        self._paused = False
        self._scanned = 0
        self._pending[:0] = rest

    def take_buffer(self) -> bytes:
        data = bytes(self._conn.trailing_data[0]) if self._conn is not None else b""
        data += bytes(self._pending)
        self._pending.clear()
        if self._conn is not None:
            self._conn = h11.Connection(h11.SERVER)  # drop h11's copy of the handed-over bytes
            self._paused = True
        return data

    # -- internals -----------------------------------------------------------------------------

    def _check_chunk_line(self, before: bytes, event: Any) -> None:
        """Check the chunk-size line h11 consumed for an event that starts a chunk or ends the
        body (h11 may have consumed it in earlier calls that returned NEED_DATA)."""
        consumed = self._unchecked + before[: len(before) - len(self._conn.trailing_data[0])]
        if event is h11.NEED_DATA:
            self._unchecked = consumed[-1024:]  # a partial line at most; bounded regardless
            return
        self._unchecked = b""
        if isinstance(event, h11.EndOfMessage) or (isinstance(event, h11.Data) and event.chunk_start):
            # It may start with what is left of the previous chunk's CRLF (h11 checks those).
            skip = 2 if consumed[:2] == b"\r\n" else 1 if consumed[:1] == b"\n" else 0
            check_chunk_line(consumed[skip:])

    def _take_head(self) -> Event | None:
        pending = self._pending
        # RFC 9112 section 2.2: ignore at least one empty line before a request line.
        while pending[:2] == b"\r\n":
            del pending[:2]
            self._scanned = 0
        # Only the bytes not yet looked at are scanned (a head trickled in byte by byte must not
        # cost a scan of the whole head per byte); 3 bytes back catch a terminator split across.
        start = max(0, self._scanned - 3)
        end = pending.find(b"\r\n\r\n", start)
        limits = self.limits
        if end < 0:
            # A bare LF is refused as soon as it arrives (a CR at the very end may still get its LF).
            stop = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
            check_head_bytes(pending, start, stop)
            self._scanned = stop
            if pending.find(b"\r\n") < 0 and len(pending) > limits.max_request_line:
                raise ClientError(414, "Request line too long")
            if len(pending) > limits.max_head_size:
                raise ClientError(431, "Request header fields too large")
            return None
        self._scanned = 0
        raw = bytes(pending[: end + 4])
        if len(raw) > limits.max_head_size:
            raise ClientError(431, "Request header fields too large")
        if raw.find(b"\r\n") > limits.max_request_line:
            raise ClientError(414, "Request line too long")
        check_head_bytes(raw)
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_size)
        self._conn.receive_data(bytes(pending))
        pending.clear()
        # h11 merges duplicate Content-Length fields; the policy judges the fields as sent.
        fields = [line.partition(b":")[::2] for line in raw[:end].split(b"\r\n")[1:]]
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            version = raw[: raw.find(b"\r\n")].rpartition(b"/")[2].decode("latin-1")
            if version in ("1.0", "1.1"):  # h11 refuses framing too; the policy says which status
                body_framing(version, [(n.strip().lower(), v.strip(b" \t")) for n, v in fields])
            raise ClientError(exc.error_status_hint, f"Malformed request: {exc}") from None
        if not isinstance(event, h11.Request):
            raise ClientError(400, "Malformed request")
        head = request_head(
            bytes(event.method), bytes(event.target), event.http_version.decode("ascii"), fields,
            limits,
        )
        self._chunked = head.chunked
        return head
