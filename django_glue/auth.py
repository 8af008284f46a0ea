"""``message.user`` for consumers, from the HTTP session or the channel session.

* ``@http_session_user`` - ``http_session`` + ``message.user`` (AnonymousUser without a session).
* ``@channel_session_user`` - ``channel_session`` + ``message.user`` from the channel session.
* ``@channel_session_user_from_http`` - for ``websocket.connect``: reads the user from the HTTP
  session and copies their login into the channel session, so later frames know them.
* ``@channel_and_http_session_user_from_http`` - the same via ``channel_and_http_session``.
* ``transfer_user(from_session, to_session)`` - copy a login between sessions.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any, Callable

from django.contrib import auth
from django.contrib.auth.models import AnonymousUser

from .sessions import _find_message, channel_and_http_session, channel_session, http_session

__all__ = [
    "transfer_user",
    "http_session_user",
    "channel_session_user",
    "channel_session_user_from_http",
    "channel_and_http_session_user_from_http",
]

_AUTH_KEYS = (auth.SESSION_KEY, auth.BACKEND_SESSION_KEY, auth.HASH_SESSION_KEY)


def transfer_user(from_session: Any, to_session: Any) -> None:
    """Copy the login (user id, backend, session hash) if ``from_session`` has all three."""
    if all(key in from_session for key in _AUTH_KEYS):
        for key in _AUTH_KEYS:
            to_session[key] = from_session[key]


def _user_from(session: Any) -> Any:
    if session is None:
        return AnonymousUser()
    # auth.get_user only needs request.session (it flushes it if the password changed).
    return auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]


def http_session_user(func: Callable[..., Any]) -> Callable[..., Any]:
    """Provide ``message.http_session`` and ``message.user`` from it."""

    @http_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "http_session_user")
        if not hasattr(message, "user"):
            message.user = _user_from(message.http_session)
        return func(*args, **kwargs)

    return inner


def channel_session_user(func: Callable[..., Any]) -> Callable[..., Any]:
    """Provide ``message.channel_session`` and ``message.user`` from it."""

    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "channel_session_user")
        if not hasattr(message, "user"):
            message.user = _user_from(message.channel_session)
        return func(*args, **kwargs)

    return inner


def channel_session_user_from_http(func: Callable[..., Any]) -> Callable[..., Any]:
    """For ``websocket.connect``: user from the HTTP session, login copied to the channel session."""

    @http_session_user
    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "channel_session_user_from_http")
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(*args, **kwargs)

    return inner


def channel_and_http_session_user_from_http(func: Callable[..., Any]) -> Callable[..., Any]:
    """Like :func:`channel_session_user_from_http`, also keeping ``http_session`` for later."""

    @http_session_user
    @channel_and_http_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "channel_and_http_session_user_from_http")
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(*args, **kwargs)

    return inner
