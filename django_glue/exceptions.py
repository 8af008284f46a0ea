"""Exceptions a consumer or view may raise to steer the worker (the Channels 1 set).

Raising one of these from a consumer is a request to the worker, not an error:

* :class:`ConsumeLater` - put the message back on its channel and try again later (bounded).
* :class:`DenyConnection` - reject a ``websocket.connect`` (the client sees HTTP 403).
* :class:`ChannelSocketException` subclasses (e.g. :class:`WebsocketCloseException`) - the worker
  calls their :meth:`~ChannelSocketException.run` with the message.
* :class:`ResponseLater` - from a view: another consumer will answer this request.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "InvalidChannelLayerError",
    "ConsumeLater",
    "ResponseLater",
    "RequestTimeout",
    "RequestAborted",
    "DenyConnection",
    "ChannelSocketException",
    "WebsocketCloseException",
    "SendNotAvailableOnDemultiplexer",
]


class InvalidChannelLayerError(ImproperlyConfigured):
    """A ``CHANNEL_LAYERS`` entry is missing, malformed or names a backend that cannot be built."""


class ConsumeLater(Exception):
    """Raised by a consumer to have its message re-queued on the same channel and retried.

    The worker gives up (and logs a warning) after ``Worker.message_retries`` re-queues of one
    message, so a consumer that always raises this cannot loop forever.
    """


class ResponseLater(Exception):
    """Raised by a view: no response is sent now; some other code will reply on the channel."""


class RequestTimeout(Exception):
    """The request body did not arrive on its ``body_channel`` in time."""


class RequestAborted(Exception):
    """The client went away while its request body was still being read."""


class DenyConnection(Exception):
    """Raised by a ``websocket.connect`` consumer to reject the connection (HTTP 403)."""


class ChannelSocketException(Exception):
    """Base for exceptions that know how to answer the socket themselves.

    Subclasses implement :meth:`run`, which the worker calls with the message being consumed.
    """

    def run(self, message: Any) -> None:
        """Act on ``message`` (a :class:`~.message.Message`; typically reply on its reply channel).

        Typed ``Any``: this module sits below :mod:`.message` (which imports these exceptions'
        users), so it does not import it.
        """
        raise NotImplementedError("ChannelSocketException subclasses must implement run(message)")


class WebsocketCloseException(ChannelSocketException):
    """Close the WebSocket of the message being consumed, with an optional close code.

    ``code`` must be ``None`` (plain close, 1000) or 1000 / 3000-4999 as RFC 6455 allows
    applications to send.
    """

    def __init__(self, code: int | None = None) -> None:
        if code is not None and not (
            isinstance(code, int) and (code == 1000 or 3000 <= code <= 4999)
        ):
            raise ValueError(
                f"invalid WebSocket close code {code!r}: use None, 1000, or a code in 3000-4999"
            )
        super().__init__(code)
        self.code = code

    def run(self, message: Any) -> None:
        if message.reply_channel is None or not message.channel.name.startswith("websocket."):
            raise ValueError(
                "WebsocketCloseException can only be raised while consuming a websocket.* message "
                f"(got a message on {message.channel.name!r})"
            )
        message.reply_channel.send({"close": self.code or True}, immediately=True)


class SendNotAvailableOnDemultiplexer(Exception):
    """``send``/``group_send`` were called on a demultiplexer; use the multiplexer instead."""
