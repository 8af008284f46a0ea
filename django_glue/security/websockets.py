"""Origin checking for ``websocket.connect`` consumers.

Browsers send an ``Origin`` header on WebSocket handshakes but apply no same-origin policy to
them, so a connect consumer must check it (cross-site WebSocket hijacking).
``@allowed_hosts_only`` accepts origins whose host is in ``ALLOWED_HOSTS`` (with ``DEBUG`` and an
empty ``ALLOWED_HOSTS``: localhost, 127.0.0.1, [::1]); anything else - including a missing or
non-ASCII Origin - raises :class:`~django_glue.exceptions.DenyConnection` (HTTP 403).
Subclass :class:`BaseOriginValidator` and implement ``validate_origin`` for other policies.
"""
from __future__ import annotations

import functools
from typing import Any, Callable
from urllib.parse import urlparse

from django.conf import settings
from django.http.request import validate_host

from ..exceptions import DenyConnection
from ..headers import MalformedHeaders, header_values
from ..sessions import _find_message

__all__ = ["BaseOriginValidator", "AllowedHostsOnlyOriginValidator", "allowed_hosts_only"]


class BaseOriginValidator:
    """Decorator class: run the consumer only if the message's Origin passes ``validate_origin``."""

    def __init__(self, func: Callable[..., Any]) -> None:
        functools.update_wrapper(self, func)
        self.func = func

    def __get__(self, instance: Any, owner: Any) -> Any:
        # Support decorating methods: bind like a function would.
        return functools.partial(self.__call__, instance) if instance is not None else self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, type(self).__name__)
        origin = self.get_origin(message)
        if origin is None or not self.validate_origin(message, origin):
            raise DenyConnection()
        return self.func(*args, **kwargs)

    @staticmethod
    def get_header(message: Any, name: str | bytes) -> list[str]:
        """``[value]`` of the first header ``name`` (Channels 1 API); ``KeyError`` if absent.

        Raises ``DenyConnection`` for malformed headers, as :meth:`get_origin` does.
        """
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        try:
            values = header_values(message.content.get("headers"), name)
        except MalformedHeaders:
            raise DenyConnection() from None
        if not values:
            raise KeyError(f"no header named {name!r}")
        return values[:1]

    @staticmethod
    def get_origin(message: Any) -> str | None:
        """The first Origin header as text, or None if absent, empty or not ASCII.

        Headers may be a list of pairs or a dict, as Channels 1 accepted; a malformed entry
        (say an empty ``[]``) raises ``DenyConnection`` like a missing Origin.
        """
        try:
            origins = header_values(message.content.get("headers"), "origin")
        except MalformedHeaders:
            raise DenyConnection() from None
        if not origins or not origins[0] or not origins[0].isascii():
            return None
        return origins[0]

    def validate_origin(self, message: Any, origin: str) -> bool:
        """Return True to accept ``origin``; subclasses must implement it."""
        raise NotImplementedError("BaseOriginValidator subclasses must implement validate_origin")


class AllowedHostsOnlyOriginValidator(BaseOriginValidator):
    """Accept origins whose host (port ignored) matches ``settings.ALLOWED_HOSTS``."""

    def validate_origin(self, message: Any, origin: str) -> bool:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        host = urlparse(origin).hostname
        if not host:
            return False
        if ":" in host:  # IPv6 literal: ALLOWED_HOSTS spells it in brackets
            host = f"[{host}]"
        return validate_host(host, allowed)


allowed_hosts_only = AllowedHostsOnlyOriginValidator
