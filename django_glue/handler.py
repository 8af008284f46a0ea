"""``AsgiHandler``: runs Django (middleware, URLconf, views, request signals) for one message.

Calling the handler with an ``http.request`` :class:`~.message.Message` returns a generator of
ASGI-1 response messages (a Response, then Response Chunks); :class:`ViewConsumer` (the consumer
the router appends for ``http.request``, also importable from :mod:`.default_consumers`) sends them
to the reply channel. Streaming and file responses become one message per chunk of at most
:attr:`AsgiHandler.chunk_size` bytes, so a large download never has to fit in one message.
"""
from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, Iterator

from django import http
from django.conf import settings
from django.core import signals
from django.core.handlers import base
from django.urls import get_resolver, set_script_prefix

from .exceptions import RequestAborted, RequestTimeout, ResponseLater
from .outbox import OutboxFull, send_with_retry
from .request import AsgiRequest

__all__ = ["AsgiHandler", "AsgiRequest", "ViewConsumer", "chunk_bytes", "encode_response"]

logger = logging.getLogger("django.request")
views_logger = logging.getLogger("django_glue.views")

#: Largest ``content`` of one response message (the layer accepts 1 MiB messages).
CHUNK_SIZE = 512 * 1024


def chunk_bytes(data: bytes, size: int) -> Iterator[tuple[bytes, bool]]:
    """``(piece, is_last)`` for ``data`` cut into ``size`` pieces; empty data is one empty piece."""
    if not data:
        yield data, True
        return
    for start in range(0, len(data), size):
        yield data[start:start + size], start + size >= len(data)


def encode_response(response: http.HttpResponseBase, chunk_size: int = CHUNK_SIZE) -> Iterator[dict[str, Any]]:
    """Yield the ASGI-1 messages for a Django response, message by message as Channels 1 did.

    The first message has ``status`` and ``headers`` (``(name, value)`` tuples: names ASCII,
    values latin-1, case kept; one ``Set-Cookie`` per cookie) and the first piece of content. A
    plain response is cut into ``chunk_size`` pieces with ``more_content`` true on all but the
    last; a streaming (or file) response sends every part re-cut with ``more_content`` true, then
    a final ``{"more_content": False}``.
    """
    headers = [
        (str(name).encode("ascii"), str(value).encode("latin-1"))
        for name, value in response.items()
    ]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").strip().encode("ascii")))
    message: dict[str, Any] = {"status": response.status_code, "headers": headers}
    if response.streaming:
        for part in response:  # __iter__, not streaming_content: subclasses may override it
            if isinstance(part, str):
                part = part.encode(response.charset)
            for piece, _ in chunk_bytes(bytes(part), chunk_size):
                message["content"] = piece
                message["more_content"] = True
                yield message
                message = {}
        message["more_content"] = False
        yield message
        return
    for piece, last in chunk_bytes(response.content, chunk_size):
        message["content"] = piece
        message["more_content"] = not last
        yield message
        message = {}


class AsgiHandler(base.BaseHandler):
    """Django's request pipeline for ASGI-1 messages; one instance serves many messages/threads."""

    request_class = AsgiRequest
    chunk_size = CHUNK_SIZE

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware()

    def __call__(self, message: Any) -> Iterator[dict[str, Any]]:
        """Yield the response messages for ``message`` (nothing for ResponseLater/aborts).

        Django's ``request_started`` fires before the request is built and ``request_finished``
        when the response is closed - also when the caller stops iterating early.
        """
        set_script_prefix(message.content.get("root_path") or "")
        signals.request_started.send(sender=self.__class__, message=message)
        try:
            request = self.request_class(message)
        except RequestAborted:
            signals.request_finished.send(sender=self.__class__)
            return
        except RequestTimeout:
            response: http.HttpResponseBase = http.HttpResponse(
                "408 Request Timeout (upload too slow)", status=408, content_type="text/plain"
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Bad request message on %s: %r", message.channel.name, exc)
            response = http.HttpResponseBadRequest(
                f"400 Bad Request: {exc}", content_type="text/plain"
            )
        else:
            try:
                response = self.get_response(request)
            except Exception:  # Django converts view errors itself; this is for the rest
                response = self.handle_uncaught_exception(request, get_resolver(), sys.exc_info())
            if getattr(request, "_response_later", False):
                response.close()
                return
        chunk_size = self.chunk_size_for(message.channel_layer)
        if isinstance(response, http.FileResponse):
            response.block_size = chunk_size
        try:
            yield from encode_response(response, chunk_size)
        finally:
            response.close()

    def handle_uncaught_exception(self, request: http.HttpRequest, resolver: Any, exc_info: Any) -> http.HttpResponseBase:
        """The response for an exception that escaped Django's own handling (Channels 1 API).

        Logged with its traceback; the 500 shows the traceback as text when ``DEBUG``. With
        ``DEBUG_PROPAGATE_EXCEPTIONS`` the exception is re-raised, as Django does.
        """
        if settings.DEBUG_PROPAGATE_EXCEPTIONS:
            raise exc_info[1]
        logger.error("Unhandled error answering %s %s", request.method, request.path, exc_info=exc_info)
        if settings.DEBUG:
            text = "".join(traceback.format_exception(*exc_info))
            return http.HttpResponseServerError(text, content_type="text/plain")
        return http.HttpResponseServerError("500 Internal Server Error", content_type="text/plain")

    def chunk_size_for(self, layer: Any) -> int:
        """:attr:`chunk_size`, lowered to half the layer's ``max_message_size`` (not below 1 KiB)."""
        limit = getattr(layer, "max_message_size", None)
        if not isinstance(limit, int) or limit <= 0:
            return self.chunk_size
        return min(self.chunk_size, max(1024, limit // 2))

    @classmethod
    def encode_response(cls, response: http.HttpResponseBase) -> Iterator[dict[str, Any]]:
        """The ASGI-1 messages for ``response`` (Channels 1 API; see :func:`encode_response`)."""
        return encode_response(response, cls.chunk_size)

    @classmethod
    def chunk_bytes(cls, data: bytes) -> Iterator[tuple[bytes, bool]]:
        """``(piece, is_last)`` pieces of :attr:`chunk_size` (Channels 1 API; see :func:`chunk_bytes`)."""
        return chunk_bytes(data, cls.chunk_size)

    def _get_response(self, request: http.HttpRequest) -> http.HttpResponseBase:
        # ResponseLater must pass the exception middleware untouched; mark the request and give
        # middleware a placeholder response that __call__ then discards.
        try:
            return super()._get_response(request)
        except ResponseLater:
            request._response_later = True  # type: ignore[attr-defined]
            return http.HttpResponse(status=204)



class ViewConsumer:
    """Runs Django for ``http.request`` messages and sends each response message at once.

    A full reply channel is retried for :attr:`send_timeout` seconds per message, then the
    response is abandoned with a warning (the client has most likely gone away) - the worker is
    never wedged by a vanished client. It lives beside the handler it drives (Channels 1 imported
    it as ``channels.handler.ViewConsumer``); :mod:`.default_consumers` routes to it.
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
            views_logger.warning(
                "abandoning response to %s %s: %s", message.get("method"), message.get("path"), exc
            )
        finally:
            replies.close()
