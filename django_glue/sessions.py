"""Sessions for consumers: per-socket ``channel_session``, the browser's ``http_session``, ordering.

``@channel_session`` gives ``message.channel_session``: a Django session keyed by the reply
channel (``"chn"`` + 29 hex digits of its SHA-1), created on first use and saved after the consumer
when modified. It does not grow without bound: the row is deleted once the socket's
``websocket.disconnect``/``http.disconnect`` has been consumed, and it carries an expiry of
``CHANNEL_SESSION_AGE`` seconds (default: one day, the layer's group expiry) so
``manage.py clearsessions`` removes the rows of sockets whose disconnect never arrived.

``@http_session`` gives ``message.http_session``: the session named by the ``session_key`` query
parameter or the session cookie of the message (``None`` if there is none; never created).
``@enforce_ordering`` runs a socket's ``websocket.*`` messages in ``order``, and a message's
buffered sends leave before the next message of the socket may run.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from importlib import import_module
from typing import Any, Callable
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.sessions.backends import signed_cookies
from django.contrib.sessions.backends.base import CreateError, SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.http import parse_cookie

from .exceptions import ConsumeLater, DenyConnection
from .headers import MalformedHeaders, header_values
from .outbox import FLUSH_RETRY_SECONDS, outbox, send_with_retry

__all__ = [
    "session_for_reply_channel",
    "channel_session",
    "http_session",
    "channel_and_http_session",
    "enforce_ordering",
    "DISCONNECT_CHANNELS",
]

#: Messages after which a reply channel is dead, so its channel session is deleted.
DISCONNECT_CHANNELS = frozenset({"websocket.disconnect", "http.disconnect"})
_NEXT_ORDER = "__channels_next_order"
logger = logging.getLogger("django_glue.sessions")


def _engine() -> Any:
    setting = "CHANNEL_SESSION_ENGINE" if getattr(settings, "CHANNEL_SESSION_ENGINE", None) else "SESSION_ENGINE"
    path = getattr(settings, setting)
    try:
        engine = import_module(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"settings.{setting} = {path!r} cannot be imported: {exc}") from exc
    if engine is signed_cookies:
        raise ImproperlyConfigured(
            f"settings.{setting} = {path!r} keeps the session in the browser's cookie, which a "
            "channel cannot carry; set CHANNEL_SESSION_ENGINE to a server-side engine such as "
            "'django.contrib.sessions.backends.db' or '.cache'"
        )
    return engine


def _session_age() -> int:
    age = getattr(settings, "CHANNEL_SESSION_AGE", 86400)
    if not isinstance(age, int) or isinstance(age, bool) or age <= 0:
        raise ImproperlyConfigured(
            f"settings.CHANNEL_SESSION_AGE must be a positive number of seconds, not {age!r}"
        )
    return age


def session_for_reply_channel(reply_channel: str) -> SessionBase:
    """The (possibly new, unsaved) channel session for ``reply_channel``, already loaded."""
    session_key = "chn" + hashlib.sha1(reply_channel.encode("utf-8")).hexdigest()[:29]
    session = _engine().SessionStore(session_key=session_key)
    session._session  # force the load: backends reset an unknown key to None while loading
    session._session_key = session_key
    return session


def _find_message(args: tuple[Any, ...], decorator: str) -> Any:
    for arg in args[:2]:  # (message, ...) or (self, message, ...)
        if hasattr(arg, "reply_channel") and hasattr(arg, "content"):
            return arg
    raise ValueError(f"{decorator} called without a Message as first or second argument")


def channel_session(func: Callable[..., Any]) -> Callable[..., Any]:
    """Provide ``message.channel_session``, saved after the consumer if modified."""

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "channel_session")
        if hasattr(message, "channel_session"):  # an outer decorator already opened it
            try:
                return func(*args, **kwargs)
            finally:
                if message.channel_session.modified:
                    message.channel_session.save()
        if not message.reply_channel:
            raise ValueError(
                "channel_session needs a message with a reply_channel; "
                f"messages on {message.channel.name!r} have none"
            )
        session = session_for_reply_channel(message.reply_channel.name)
        if not session.exists(session.session_key):
            session.set_expiry(_session_age())
            try:
                session.save(must_create=True)
            except CreateError:
                raise ConsumeLater() from None  # another worker is creating it right now
        message.channel_session = session
        try:
            return func(*args, **kwargs)
        finally:
            if message.channel.name in DISCONNECT_CHANNELS:
                session.delete()
            elif session.modified:
                session.save()

    return inner


def _http_session_key(message: Any) -> str | None:
    query = message.content.get("query_string", b"")
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    keys = parse_qs(query).get("session_key")
    if keys:
        return keys[0]
    try:
        cookies = header_values(message.content.get("headers"), "cookie")
    except MalformedHeaders as exc:
        if message.channel.name == "websocket.connect":
            raise DenyConnection() from exc  # a handshake we cannot read is refused, not crashed on
        raise ValueError(f"cannot read the session cookie of a message on {message.channel.name!r}: {exc}") from exc
    return parse_cookie("; ".join(cookies)).get(settings.SESSION_COOKIE_NAME)


def http_session(func: Callable[..., Any]) -> Callable[..., Any]:
    """Provide ``message.http_session`` from the cookie/``session_key`` (or ``None``)."""

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "http_session")
        if hasattr(message, "http_session"):
            try:
                return func(*args, **kwargs)
            finally:
                if message.http_session is not None and message.http_session.modified:
                    message.http_session.save()
        key = _http_session_key(message)
        session = import_module(settings.SESSION_ENGINE).SessionStore(key) if key else None
        message.http_session = session
        try:
            return func(*args, **kwargs)
        finally:
            if session is not None and session.modified:
                session.save()

    return inner


def channel_and_http_session(func: Callable[..., Any]) -> Callable[..., Any]:
    """``http_session`` + ``channel_session``; later messages get the HTTP session back.

    On ``websocket.connect`` the HTTP session key is stored in the channel session; messages
    that carry no cookies (frames, disconnect) then reopen that HTTP session.
    """

    @http_session
    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "channel_and_http_session")
        cookie = settings.SESSION_COOKIE_NAME
        if message.http_session is not None and message.http_session.session_key:
            if message.channel_session.get(cookie) != message.http_session.session_key:
                message.channel_session[cookie] = message.http_session.session_key
        elif message.channel_session.get(cookie):
            engine = import_module(settings.SESSION_ENGINE)
            message.http_session = engine.SessionStore(message.channel_session[cookie])
        return func(*args, **kwargs)

    return inner


def wait_channel_name(reply_channel: str) -> str:
    """The channel where out-of-order messages of ``reply_channel`` wait their turn."""
    return "__wait__." + reply_channel.replace("!", "?")


def _requeue_waiting(message: Any) -> None:
    """Move every parked message of this socket back to its original channel."""
    layer = message.channel_layer
    wait = wait_channel_name(message.reply_channel.name)
    while True:
        channel, content = layer.receive([wait], block=False)
        if channel is None:
            return
        original = content.pop("original_channel")
        send_with_retry(
            lambda: layer.send(original, content), layer.ChannelFull, FLUSH_RETRY_SECONDS,
            f"channel {original!r} (re-queueing an ordered message)",
        )


#: Channels 1's name (``channels.sessions.requeue_messages``).
requeue_messages = _requeue_waiting


def _advance(message: Any, order: int) -> None:
    """Record that ``order`` ran, then release the messages that waited for it."""
    session = message.channel_session
    session[_NEXT_ORDER] = order + 1
    session.save()
    session.modified = False
    _requeue_waiting(message)


def _next_order(session: SessionBase, order: int) -> int:
    """The order expected next; without a record, the connect (order 0) is taken as done.

    The accept flow guarantees the connect consumer ran before any frame exists, so a frame with
    order 1 is next even when the connect consumer is not decorated - as in the Channels 1 docs'
    own example, which waited forever on Channels 1 itself.
    """
    return session.get(_NEXT_ORDER, min(order, 1))


def enforce_ordering(func: Callable[..., Any] | None = None, slight: bool = False) -> Any:
    """Run a socket's messages in their ``order``; later ones wait on a per-socket channel.

    Wraps the consumer in ``channel_session`` (the next expected order lives there). A message
    ahead of its turn is parked on ``__wait__.<reply channel>`` and re-sent to its channel when
    the missing ones have run; one whose order already ran (a duplicate) is dropped.
    ``slight=True`` (removed in Channels 1.0) is refused.
    """
    if slight:
        raise ValueError(
            "slight ordering was removed in Channels 1.0: the connect message is always consumed "
            "before any frame now; use plain @enforce_ordering"
        )
    if func is None:
        return enforce_ordering

    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = _find_message(args, "enforce_ordering")
        if "order" not in message.content:
            raise ValueError(
                f"enforce_ordering needs an 'order' key; messages on {message.channel.name!r} "
                "have none (it only applies to websocket.* channels)"
            )
        order = int(message.content["order"])
        expected = _next_order(message.channel_session, order)
        if order == expected:
            retried = False
            try:
                return func(*args, **kwargs)
            except ConsumeLater:
                retried = True  # it runs again later; the following messages wait for it
                raise
            finally:
                # Also after a failing consumer, or the socket would wait forever. The next
                # message may only run once this one's buffered sends are out, so replies leave
                # in order too: advance after them (at once outside a consumer, and for a
                # disconnect, whose session is deleted right after).
                if retried:
                    pass
                elif outbox.armed and message.channel.name not in DISCONNECT_CHANNELS:
                    outbox.add_call(functools.partial(_advance, message, order), "ordering update")
                else:
                    _advance(message, order)
        if order < expected:
            # Already consumed (a duplicate, or a stale copy): parking it would have it re-queued
            # and parked again until it expired, so it is dropped here, once.
            logger.warning(
                "enforce_ordering: dropping %s order %d of %s, which already ran (next is %d)",
                message.channel.name, order, message.reply_channel.name, expected,
            )
            return None
        parked = dict(message.content, original_channel=message.channel.name)
        try:
            message.channel_layer.send(wait_channel_name(message.reply_channel.name), parked)
        except message.channel_layer.ChannelFull as exc:
            raise message.channel_layer.ChannelFull(
                f"the __wait__ channel of {message.reply_channel.name} is full: too many messages "
                "of this socket are waiting for an earlier one"
            ) from exc
        # The missing message may have run while we parked ours: look again.
        fresh = session_for_reply_channel(message.reply_channel.name)
        if _next_order(fresh, order) >= order:
            _requeue_waiting(message)
        return None

    return inner
