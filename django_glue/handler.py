"""``AsgiHandler``: runs Django (middleware, URLconf, views, request signals) for one message.

Calling the handler with an ``http.request`` :class:`~.message.Message` returns a generator of
ASGI-1 response messages (a Response, then Response Chunks); ``ViewConsumer`` sends them to the
reply channel. Streaming and file responses become one message per chunk of at most
:attr:`AsgiHandler.chunk_size` bytes, so a large download never has to fit in one message.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from django import http
from django.core import signals
from django.core.handlers import base
from django.urls import set_script_prefix

from .exceptions import RequestAborted, RequestTimeout, ResponseLater
from .request import AsgiRequest

__all__ = ["AsgiHandler", "AsgiRequest", "encode_response"]

logger = logging.getLogger("django.request")

#: Largest ``content`` of one response message (the layer accepts 1 MiB messages).
CHUNK_SIZE = 512 * 1024


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def encode_response(response: http.HttpResponseBase, chunk_size: int = CHUNK_SIZE) -> Iterator[dict[str, Any]]:
    """Yield the ASGI-1 messages for a Django response.

    The first message has ``status`` and ``headers`` (names ASCII, values latin-1, case kept;
    one ``Set-Cookie`` per cookie). A plain response is cut into ``chunk_size`` pieces with
    ``more_content`` true on all but the last; a streaming one sends its headers, every part
    re-cut, then a final ``{"more_content": False}``.
    """
    headers = [
        [str(name).encode("ascii"), str(value).encode("latin-1")]
        for name, value in response.items()
    ]
    for cookie in response.cookies.values():
        headers.append([b"Set-Cookie", cookie.output(header="").strip().encode("ascii")])
    first: dict[str, Any] = {"status": response.status_code, "headers": headers}
    if not response.streaming:
        content = response.content
        pieces = list(_chunks(content, chunk_size)) or [b""]
        first["content"] = pieces[0]
        first["more_content"] = len(pieces) > 1
        yield first
        for index, piece in enumerate(pieces[1:], start=2):
            yield {"content": piece, "more_content": index < len(pieces)}
        return
    first["content"] = b""
    first["more_content"] = True
    yield first
    for part in response.streaming_content:  # type: ignore[attr-defined]
        if isinstance(part, str):
            part = part.encode(response.charset)
        for piece in _chunks(bytes(part), chunk_size):
            yield {"content": piece, "more_content": True}
    yield {"more_content": False}


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
                logger.exception("Unhandled error answering %s %s", request.method, request.path)
                response = http.HttpResponseServerError(
                    "500 Internal Server Error", content_type="text/plain"
                )
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

    def chunk_size_for(self, layer: Any) -> int:
        """:attr:`chunk_size`, lowered to half the layer's ``max_message_size`` if that is small."""
        limit = getattr(layer, "max_message_size", None)
        if not isinstance(limit, int) or limit <= 0:
            return self.chunk_size
        return max(1024, min(self.chunk_size, limit // 2))

    @classmethod
    def encode_response(cls, response: http.HttpResponseBase) -> Iterator[dict[str, Any]]:
        """The ASGI-1 messages for ``response`` (Channels 1 API; see :func:`encode_response`)."""
        return encode_response(response, cls.chunk_size)

    def _get_response(self, request: http.HttpRequest) -> http.HttpResponseBase:
        # ResponseLater must pass the exception middleware untouched; mark the request and give
        # middleware a placeholder response that __call__ then discards.
        try:
            return super()._get_response(request)
        except ResponseLater:
            request._response_later = True  # type: ignore[attr-defined]
            return http.HttpResponse(status=204)
