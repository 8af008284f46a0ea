"""``message.user`` for consumers, from the HTTP session or the channel session.

* ``@http_session_user`` - ``http_session`` + ``message.user`` (AnonymousUser without a session).
* ``@channel_session_user`` - ``channel_session`` + ``message.user`` from the channel session.
* ``@channel_session_user_from_http`` - for every consumer of a socket: on connect reads the user
  from the HTTP session and copies their login into the channel session; frames and the
  disconnect get ``message.user`` and ``message.http_session`` back through the channel session.
* ``@channel_and_http_session_user_from_http`` - the same (Channels 1's name for keeping
  ``http_session`` too).
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


def _user_from_http(func: Callable[..., Any], decorator: str) -> Callable[..., Any]:
    """``channel_and_http_session`` + the login copied HTTP -> channel session + ``message.user``.

    On connect the browser's cookie names the HTTP session and its login is copied into the
    channel session (whose row remembers the HTTP session key). Frames and the disconnect carry
    no cookie: the HTTP session comes back through the channel session, and the user is the
    HTTP session's if it still holds a login, else the one copied on connect.
    """

    @channel_and_http_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, decorator)
        http = message.http_session
        if http is not None:
            transfer_user(http, message.channel_session)
        if not hasattr(message, "user"):
            logged_in = http is not None and auth.SESSION_KEY in http
            message.user = _user_from(http if logged_in else message.channel_session)
        return func(*args, **kwargs)

    return inner


def channel_session_user_from_http(func: Callable[..., Any]) -> Callable[..., Any]:
    """``message.user`` and ``message.http_session`` on every message of a socket.

    Meant for all of a socket's consumers (connect, receive, disconnect), as Channels 1 allowed:
    the login is copied into the channel session on connect and read back from it later.
    """
    return _user_from_http(func, "channel_session_user_from_http")


def channel_and_http_session_user_from_http(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same as :func:`channel_session_user_from_http` (both keep ``http_session``)."""
    return _user_from_http(func, "channel_and_http_session_user_from_http")
