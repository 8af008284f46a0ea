"""``WSClient``: a fake browser socket with cookies, headers, login and JSON frames."""
from __future__ import annotations

import json as json_module
import warnings
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest

from ..asgi import DEFAULT_CHANNEL_LAYER
from .base import Client

__all__ = ["WSClient", "HttpClient"]


class WSClient(Client):
    """Client for WebSocket consumers.

    ``send`` builds ``websocket.*`` messages (``path``, ``headers`` with the cookies - the HTTP
    session's always among them - the query string on connect, JSON-encoded ``text``, and
    ``order`` numbering from :attr:`order` when ``ordered=True``);
    ``consume("websocket.connect")`` checks the consumer accepted unless ``check_accept=False``.
    """

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER, ordered: bool = False) -> None:
        super().__init__(alias)
        self._ordered = ordered
        #: The ``order`` the next message gets when ``ordered=True`` (Channels 1's counter).
        self.order = 0
        self._cookies: dict[str, str] = {}
        self._headers: dict[str, Any] = {}
        self._session: Any = None

    def set_cookie(self, key: str, value: str) -> None:
        self._cookies[key] = value

    def set_header(self, key: str, value: str | bytes) -> None:
        """Send header ``key`` (lower-cased) with every message; cookies go via :meth:`set_cookie`."""
        if key.lower() == "cookie":
            raise ValueError("use set_cookie() for cookies; the cookie header is built from them")
        self._headers[key.lower()] = value

    def get_cookies(self) -> dict[str, str]:
        """The cookies sent with every message, the HTTP session's included (as Channels 1)."""
        cookies = dict(self._cookies)
        if apps.is_installed("django.contrib.sessions"):
            cookies.setdefault(settings.SESSION_COOKIE_NAME, self.session.session_key)
        return cookies

    @property
    def headers(self) -> dict[str, Any]:
        """The headers sent with every message, as a dict (``"cookie"`` built from the cookies)."""
        headers = dict(self._headers)
        cookies = self.get_cookies()
        if cookies:
            jar = SimpleCookie()
            for key, value in cookies.items():
                jar[key] = value
            headers["cookie"] = "; ".join(m.OutputString() for m in jar.values()).encode("latin-1")
        return headers

    def _list_headers(self) -> list[list[bytes]]:
        """:attr:`headers` as the interface server sends them: ``[[name, value], ...]`` bytes."""
        return [
            [key.encode("latin-1"), value if isinstance(value, bytes) else str(value).encode("latin-1")]
            for key, value in self.headers.items()
        ]

    @property
    def session(self) -> Any:
        """The HTTP session of this client (created and saved on first use; its cookie is sent)."""
        if not apps.is_installed("django.contrib.sessions"):
            raise RuntimeError("WSClient.session needs django.contrib.sessions in INSTALLED_APPS")
        if self._session is None:
            engine = import_module(settings.SESSION_ENGINE)
            self._session = engine.SessionStore()
            self._session.save()
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
        if self._cookies.get(settings.SESSION_COOKIE_NAME) not in (None, request.session.session_key):
            self._cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key

    def send(self, to: str, content: dict[str, Any] | None = None, text: Any = None, path: str = "/") -> None:  # type: ignore[override]
        """Send a ``websocket.*`` message built by :meth:`_get_content` to channel ``to``."""
        super().send(to, self._get_content(content, text, path, connect=to == "websocket.connect"))

    def _get_content(
        self, content: dict[str, Any] | None = None, text: Any = None, path: str = "/", connect: bool = True,
    ) -> dict[str, Any]:
        """The message ``send`` would send (Channels 1 tests call this directly).

        ``path``'s ``?query`` becomes ``query_string`` on a connect (dropped otherwise);
        ``headers`` carry the cookies; ``order`` is numbered when ``ordered=True``.
        """
        content = dict(content or {})
        content.setdefault("reply_channel", self.reply_channel)
        path = content.pop("path", path)
        if "?" in path:
            path, query = path.split("?", 1)
            if connect:
                content.setdefault("query_string", query.encode("latin-1"))
        content["path"] = path
        if connect:
            content.setdefault("query_string", b"")
        content.setdefault("headers", self._list_headers())
        if text is not None:
            content["text"] = text if isinstance(text, str) else json_module.dumps(text)
        elif "text" in content and not isinstance(content["text"], str):
            content["text"] = json_module.dumps(content["text"])
        if self._ordered:
            if "order" in content:  # an explicit order wins; the counter continues after it
                self.order = int(content["order"]) + 1
            else:
                content["order"] = self.order
                self.order += 1
        return content

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
