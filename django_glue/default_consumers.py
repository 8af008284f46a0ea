"""Consumers the router appends after the user's routes.

* ``http.request`` -> :class:`~.handler.ViewConsumer` (Django views through
  :class:`~.handler.AsgiHandler`; defined beside the handler, re-exported here).
* ``websocket.connect`` -> :func:`connect_accept` (accept every connection nobody else routed).
* ``websocket.receive`` / ``websocket.disconnect`` / ``http.disconnect`` -> :func:`no_op`.
"""
from __future__ import annotations

from typing import Any

from .handler import ViewConsumer

__all__ = ["ViewConsumer", "connect_accept", "no_op"]


def connect_accept(message: Any, *args: Any, **kwargs: Any) -> None:
    """Accept a WebSocket that no user route took (Channels 1: ``routing.connect_consumer``)."""
    message.reply_channel.send({"accept": True})


def no_op(*args: Any, **kwargs: Any) -> None:
    """Consume a message nobody routed (Channels 1: ``routing.null_consumer``)."""
