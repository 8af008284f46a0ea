"""``WSClient``: a fake browser socket with cookies, headers, login and JSON frames."""
from __future__ import annotations

import json as json_module
import warnings
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest

from ..asgi import DEFAULT_CHANNEL_LAYER
from .base import Client

__all__ = ["WSClient", "HttpClient"]


class WSClient(Client):
    """Client for WebSocket consumers.

    ``send`` builds ``websocket.*`` messages (``path``, ``headers`` with cookies, the query string
    on connect, JSON-encoded ``text``, and ``order`` numbering when ``ordered=True``);
    ``consume("websocket.connect")`` checks the consumer accepted unless ``check_accept=False``.
    """

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER, ordered: bool = False) -> None:
        super().__init__(alias)
        self._ordered = ordered
        self._order = 0
        self._cookies: dict[str, str] = {}
        self._headers: dict[str, str] = {}
        self._session: Any = None

    def set_cookie(self, key: str, value: str) -> None:
        self._cookies[key] = value

    def set_header(self, key: str, value: str) -> None:
        self._headers[key.lower()] = value

    @property
    def headers(self) -> list[list[bytes]]:
        """Headers as the interface server sends them (lower-case bytes names)."""
        headers = dict(self._headers)
        if self._cookies:
            cookie = SimpleCookie()
            for key, value in self._cookies.items():
                cookie[key] = value
            headers["cookie"] = "; ".join(m.OutputString() for m in cookie.values())
        return [[k.encode("latin-1"), v.encode("latin-1")] for k, v in headers.items()]

    @property
    def session(self) -> Any:
        """The HTTP session of this client (created on first use, cookie set)."""
        if self._session is None:
            engine = import_module(settings.SESSION_ENGINE)
            self._session = engine.SessionStore()
            self._session.save()
            self.set_cookie(settings.SESSION_COOKIE_NAME, self._session.session_key)
        return self._session

    def login(self, **credentials: Any) -> bool:
        """Authenticate like ``django.test.Client.login``; True on success."""
        user = auth.authenticate(**credentials)
        if user is None or not getattr(user, "is_active", True):
            return False
        self._login(user, getattr(user, "backend", None))
        return True

    def force_login(self, user: Any, backend: str | None = None) -> None:
        """Log ``user`` in without credentials (first AUTHENTICATION_BACKEND by default)."""
        self._login(user, backend or settings.AUTHENTICATION_BACKENDS[0])

    def _login(self, user: Any, backend: str | None) -> None:
        request = HttpRequest()
        request.session = self.session
        auth.login(request, user, backend)
        request.session.save()
        self.set_cookie(settings.SESSION_COOKIE_NAME, request.session.session_key)

    def send(self, to: str, content: dict[str, Any] | None = None, text: Any = None, path: str = "/") -> None:  # type: ignore[override]
        content = dict(content or {})
        path = content.pop("path", path)
        if "?" in path:
            path, query = path.split("?", 1)
            if to == "websocket.connect":
                content.setdefault("query_string", query.encode("latin-1"))
        content["path"] = path
        if to == "websocket.connect":
            content.setdefault("query_string", b"")
        content.setdefault("headers", self.headers)
        if text is not None:
            content["text"] = text if isinstance(text, str) else json_module.dumps(text)
        elif "text" in content and not isinstance(content["text"], str):
            content["text"] = json_module.dumps(content["text"])
        if self._ordered and "order" not in content:
            content["order"] = self._order
            self._order += 1
        super().send(to, content)

    def receive(self, json: bool = True) -> Any:  # type: ignore[override]
        """Next reply: the decoded JSON of its text (``json=True``), its text, or the content."""
        content = super().receive()
        if content is None:
            return None
        if json and isinstance(content.get("text"), str):
            return json_module.loads(content["text"])
        return content.get("text", content)

    def send_and_consume(  # type: ignore[override]
        self, channel: str, content: dict[str, Any] | None = None, text: Any = None,
        path: str = "/", fail_on_none: bool = True, check_accept: bool = True,
    ) -> Any:
        self.send(channel, content, text, path)
        return self.consume(channel, fail_on_none=fail_on_none, check_accept=check_accept)

    def consume(self, channel: str, fail_on_none: bool = True, check_accept: bool = True) -> Any:  # type: ignore[override]
        result = super().consume(channel, fail_on_none=fail_on_none)
        if channel == "websocket.connect" and check_accept:
            reply = self.receive(json=False)
            if reply != {"accept": True}:
                raise AssertionError(f"connection was not accepted: expected {{'accept': True}}, got {reply!r}")
        return result


class HttpClient(WSClient):
    """Deprecated name of :class:`WSClient` (Channels 1.1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn("HttpClient is deprecated; use WSClient", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
