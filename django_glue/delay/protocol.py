"""What a request on ``asgi.delay`` is (the ASGI 1 delay extension).

A message on :data:`DELAY_CHANNEL` asks for ``content`` to be sent to ``channel`` after
``delay`` milliseconds::

    {"channel": "reminders", "delay": 30000, "content": {"text": "..."}}

:func:`parse_request` is the one place these rules live; it knows nothing about storage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgi_ipc.names import validate_channel

__all__ = ["DELAY_CHANNEL", "DelayRequest", "InvalidDelayRequest", "parse_request"]

DELAY_CHANNEL = "asgi.delay"


class InvalidDelayRequest(ValueError):
    """A message on ``asgi.delay`` that is not a valid delay request (the sender's mistake)."""


@dataclass(frozen=True)
class DelayRequest:
    """``content`` to be sent to ``channel`` ``delay_ms`` milliseconds after it was received."""

    channel: str
    content: dict[str, Any]
    delay_ms: int


def parse_request(message: Any) -> DelayRequest:
    """Check a message received on ``asgi.delay``.

    :raises InvalidDelayRequest: saying which key is missing or wrong, and what it must be.
    """
    if not isinstance(message, dict):
        raise InvalidDelayRequest(f"a delay request must be a dict, got {type(message).__name__}")
    missing = [key for key in ("channel", "content", "delay") if key not in message]
    if missing:
        raise InvalidDelayRequest(
            f"delay request lacks {', '.join(missing)}: send "
            '{"channel": name, "delay": milliseconds, "content": {...}} to asgi.delay'
        )
    channel, content, delay = message["channel"], message["content"], message["delay"]
    try:
        validate_channel(channel)
    except TypeError as exc:
        raise InvalidDelayRequest(f"delay request 'channel': {exc}") from None
    if channel == DELAY_CHANNEL:
        raise InvalidDelayRequest("delay request 'channel' must not be asgi.delay itself")
    if not isinstance(content, dict):
        raise InvalidDelayRequest(f"delay request 'content' must be a dict (the message), got {type(content).__name__}")
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise InvalidDelayRequest(f"delay request 'delay' must be a whole number of milliseconds >= 0, got {delay!r}")
    return DelayRequest(channel, content, delay)
