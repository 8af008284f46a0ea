"""Consumers the router appends after the user's routes.

* ``http.request`` -> :class:`ViewConsumer` (Django views through :class:`~.handler.AsgiHandler`).
* ``websocket.connect`` -> :func:`connect_accept` (accept every connection nobody else routed).
* ``websocket.receive`` / ``websocket.disconnect`` / ``http.disconnect`` -> :func:`no_op`.
"""
from __future__ import annotations

import logging
from typing import Any

from .handler import AsgiHandler
from .outbox import OutboxFull, send_with_retry

__all__ = ["ViewConsumer", "connect_accept", "no_op"]

logger = logging.getLogger("django_glue.views")


class ViewConsumer:
    """Runs Django for ``http.request`` messages and sends each response message at once.

    A full reply channel is retried for :attr:`send_timeout` seconds per message, then the
    response is abandoned with a warning (the client has most likely gone away) - the worker is
    never wedged by a vanished client.
    """

    handler_class: type[AsgiHandler] = AsgiHandler
    #: Seconds one response message may wait for room on the reply channel.
    send_timeout: float = 10.0

    def __init__(self) -> None:
        self.handler = self.handler_class()

    def __call__(self, message: Any) -> None:
        if message.reply_channel is None:
            raise ValueError("http.request message has no reply_channel; cannot answer it")
        layer = message.channel_layer
        name = message.reply_channel.name
        replies = self.handler(message)
        try:
            for reply in replies:
                send_with_retry(
                    lambda: layer.send(name, reply), layer.ChannelFull, self.send_timeout,
                    f"reply channel {name!r}",
                )
        except OutboxFull as exc:
            logger.warning("abandoning response to %s %s: %s", message.get("method"), message.get("path"), exc)
        finally:
            replies.close()


def connect_accept(message: Any, *args: Any, **kwargs: Any) -> None:
    """Accept a WebSocket that no user route took (Channels 1: ``routing.connect_consumer``)."""
    message.reply_channel.send({"accept": True})


def no_op(*args: Any, **kwargs: Any) -> None:
    """Consume a message nobody routed (Channels 1: ``routing.null_consumer``)."""
