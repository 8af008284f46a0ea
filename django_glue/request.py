"""``AsgiRequest``: a Django ``HttpRequest`` built from an ASGI-1 ``http.request`` message.

The body is the message's ``body`` plus, when ``body_channel`` is set, the chunks read from that
channel. It is spooled to a temporary file beyond ``FILE_UPLOAD_MAX_MEMORY_SIZE`` so a large upload
never sits whole in memory, and ``CONTENT_LENGTH`` is set to the real length so Django's own limits
(``DATA_UPLOAD_MAX_MEMORY_SIZE``, ``DATA_UPLOAD_MAX_NUMBER_FIELDS``) apply exactly as under WSGI.
"""
from __future__ import annotations

import tempfile
import time
from io import BytesIO
from typing import IO, Any

from django import http
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.utils.functional import cached_property

from .exceptions import RequestAborted, RequestTimeout, ResponseLater
from .headers import iter_headers

__all__ = ["AsgiRequest"]


class AsgiRequest(http.HttpRequest):
    """Request for one ``http.request`` message (``message`` is a :class:`~.message.Message`).

    Raises :class:`RequestTimeout` if the body channel stays silent past
    :attr:`body_receive_timeout`, :class:`RequestAborted` if the client went away, and
    ``UnicodeDecodeError``/``ValueError`` for a malformed message (the handler answers 400).
    """

    #: Channels 1 code raises ``AsgiRequest.ResponseLater`` from views (same class).
    ResponseLater = ResponseLater

    #: Seconds allowed for the whole body to arrive on ``body_channel``.
    body_receive_timeout: float = 60.0

    def __init__(self, message: Any) -> None:
        # Like WSGIRequest, HttpRequest.__init__ is not called: it would assign empty POST/FILES
        # over the lazy properties below.
        self.message = message
        self._post_parse_error = False
        self.resolver_match = None
        content = message.content
        self.reply_channel = content.get("reply_channel")
        path = content["path"]
        if isinstance(path, bytes):
            path = path.decode("utf-8")
        self.path = path
        root_path = content.get("root_path") or ""
        if isinstance(root_path, bytes):
            root_path = root_path.decode("utf-8")
        self.script_name = root_path
        if root_path and (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
            self.path_info = path[len(root_path.rstrip("/")):] or "/"
        else:
            self.path_info = path
        self.method = str(content["method"]).upper()
        query_string = content.get("query_string", b"")
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        self.META = {
            "REQUEST_METHOD": self.method,
            "QUERY_STRING": query_string,
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": self.path_info,
            "SERVER_PROTOCOL": "HTTP/" + str(content.get("http_version", "1.1")),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.url_scheme": content.get("scheme") or "http",
        }
        client = content.get("client")
        if client:
            self.META["REMOTE_ADDR"] = client[0]
            self.META["REMOTE_HOST"] = client[0]
            self.META["REMOTE_PORT"] = client[1]
        server = content.get("server")
        self.META["SERVER_NAME"] = server[0] if server else "unknown"
        self.META["SERVER_PORT"] = str(server[1]) if server else "0"
        self._add_headers(content.get("headers") or [])
        self._set_content_type_params(self.META)
        body_file, length = self._read_body(content)
        self.META["CONTENT_LENGTH"] = str(length)
        self._body_file = body_file
        self._stream = LimitedStream(body_file, length)
        self._read_started = False

    # GET and COOKIES are parsed when first read, as WSGIRequest does: most views read neither.

    @cached_property
    def GET(self) -> http.QueryDict:  # type: ignore[override]
        return http.QueryDict(self.META["QUERY_STRING"], encoding=self._encoding)

    @cached_property
    def COOKIES(self) -> dict[str, str]:  # type: ignore[override]
        return http.parse_cookie(self.META.get("HTTP_COOKIE", ""))

    def _add_headers(self, headers: Any) -> None:
        for name, value in iter_headers(headers):  # MalformedHeaders is a ValueError: 400
            if "_" in name:
                # "x_forwarded_for" would otherwise overwrite X-Forwarded-For in META
                # (CVE-2015-0219); servers drop these, and so do we.
                continue
            if name == "content-length":
                continue  # set from the real body length below
            key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
            if key in self.META:
                joiner = "; " if key == "HTTP_COOKIE" else ","
                value = self.META[key] + joiner + value
            self.META[key] = value

    def _read_body(self, content: dict[str, Any]) -> tuple[IO[bytes], int]:
        body = content.get("body", b"")
        if not isinstance(body, bytes):
            raise ValueError("http.request 'body' must be bytes")
        channel = content.get("body_channel")
        if not channel:
            return BytesIO(body), len(body)
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        )
        spool.write(body)
        layer = self.message.channel_layer
        deadline = time.monotonic() + self.body_receive_timeout
        while True:
            if time.monotonic() > deadline:
                spool.close()
                raise RequestTimeout(f"body did not arrive on {channel!r} in time")
            _, chunk = layer.receive([channel], block=True)
            if chunk is None:
                continue
            if chunk.get("closed"):
                spool.close()
                raise RequestAborted("client closed the connection during the request body")
            data = chunk.get("content", b"")
            if not isinstance(data, bytes):
                spool.close()
                raise ValueError("request body chunk 'content' must be bytes")
            spool.write(data)
            if not chunk.get("more_content", False):
                break
        length = spool.tell()
        spool.seek(0)
        return spool, length

    def _get_post(self) -> http.QueryDict:
        if not hasattr(self, "_post"):
            self._load_post_and_files()
        return self._post

    def _set_post(self, post: http.QueryDict) -> None:
        self._post = post

    POST = property(_get_post, _set_post)  # type: ignore[assignment]

    @property
    def FILES(self) -> Any:  # type: ignore[override]
        if not hasattr(self, "_files"):
            self._load_post_and_files()
        return self._files

    def _get_scheme(self) -> str:
        return self.META["wsgi.url_scheme"]

    def close(self) -> None:
        """Close uploaded files and the spooled body."""
        super().close()
        self._body_file.close()
