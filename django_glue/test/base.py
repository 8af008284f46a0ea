"""``ChannelTestCase``, the plain ``Client`` and ``apply_routes``.

Each test gets its own layer: ``isolated_layer(alias)`` builds the alias's backend from
``TEST_CONFIG`` (or ``CONFIG``) with a unique ``prefix`` and ``create=True``, so tests running in
parallel never see each other's messages, and closing it removes its shared memory.
"""
from __future__ import annotations

import functools
import random
import string
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import TestCase, TransactionTestCase

from ..asgi import DEFAULT_CHANNEL_LAYER, ChannelLayerWrapper, channel_layers
from ..channel import Group
from ..exceptions import ChannelSocketException, DenyConnection
from ..message import Message
from ..routing import Router
from ..signals import close_old_connections_after_consumer, consumer_finished, consumer_started

__all__ = [
    "ChannelTestCase",
    "ChannelTestCaseMixin",
    "ChannelTestMixin",
    "TransactionChannelTestCase",
    "Client",
    "apply_routes",
    "isolated_layer",
]


def isolated_layer(alias: str = DEFAULT_CHANNEL_LAYER, **overrides: Any) -> ChannelLayerWrapper:
    """A new layer wrapper for ``alias`` on a unique prefix, created (not attached) by us.

    Close it with ``wrapper.channel_layer.close()``, which removes its shared memory (it is
    closed anyway when the wrapper is collected or the process exits).
    """
    return channel_layers.make_test_backend(alias, **overrides)


class ChannelTestMixin:
    """Swap an isolated layer in for each alias in :attr:`test_channel_aliases` per test."""

    test_channel_aliases = [DEFAULT_CHANNEL_LAYER]

    # Django's own per-test hooks changed shape (``_pre_setup`` became a classmethod run eagerly
    # for TransactionTestCase in 5.x), so the layer is swapped around the whole per-test call,
    # which every supported Django routes through ``_setup_and_call``.
    def _setup_and_call(self, result: Any, debug: bool = False) -> None:
        self._previous_layers: dict[str, ChannelLayerWrapper | None] = {}
        try:
            for alias in self.test_channel_aliases:
                self._previous_layers[alias] = channel_layers.set(alias, isolated_layer(alias))
            super()._setup_and_call(result, debug)  # type: ignore[misc]
        finally:
            self._restore_layers()

    def _restore_layers(self) -> None:
        for alias, previous in self._previous_layers.items():
            ours = channel_layers.set(alias, previous)
            if ours is not None:
                ours.channel_layer.close()
        self._previous_layers = {}

    def get_next_message(
        self, channel: str, alias: str = DEFAULT_CHANNEL_LAYER, require: bool = False
    ) -> Message | None:
        """The next message waiting on ``channel`` (None, or a test failure if ``require``)."""
        layer = channel_layers[alias]
        received, content = layer.receive([channel], block=False)
        if received is None:
            if require:
                raise AssertionError(f"expected a message on channel {channel!r}, got none")
            return None
        return Message(content, received, layer)


#: Channels 1's name for the mixin.
ChannelTestCaseMixin = ChannelTestMixin


class ChannelTestCase(ChannelTestMixin, TestCase):
    """Django ``TestCase`` with an isolated channel layer per test."""


class TransactionChannelTestCase(ChannelTestMixin, TransactionTestCase):
    """Django ``TransactionTestCase`` with an isolated channel layer per test."""


@contextmanager
def _connections_kept() -> Iterator[None]:
    # Django's TestCase runs inside a transaction; the worker's close_old_connections would close
    # the connection under it, exactly as the test client avoids for request_started.
    # Views run by the consumer fire Django's request signals, which close connections too (the
    # test client disconnects them for the same reason).
    uid = "django_glue.close_old_connections"
    consumer_finished.disconnect(dispatch_uid=uid)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        consumer_finished.connect(close_old_connections_after_consumer, dispatch_uid=uid)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class Client:
    """Sends messages with its own reply channel and runs the routed consumer in-process."""

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER) -> None:
        self.alias = alias
        self.reply_channel = "testclient." + "".join(random.choices(string.ascii_letters, k=12))

    @property
    def channel_layer(self) -> ChannelLayerWrapper:
        return channel_layers[self.alias]

    def get_next_message(self, channel: str) -> Message | None:
        received, content = self.channel_layer.receive([channel], block=False)
        if received is None:
            return None
        return Message(content, received, self.channel_layer)

    def get_consumer_by_channel(self, channel: str) -> Callable[..., Any] | None:
        """The consumer a bare message on ``channel`` would be routed to (or None)."""
        match = self.channel_layer.router.match(Message({"text": ""}, channel, self.channel_layer))
        return match[0] if match else None

    def send(self, to: str, content: dict[str, Any] | None = None) -> None:
        """Send ``content`` (with this client's ``reply_channel`` added) to channel ``to``."""
        content = dict(content or {})
        content.setdefault("reply_channel", self.reply_channel)
        self.channel_layer.send(to, content)

    def consume(self, channel: str, fail_on_none: bool = True) -> Any:
        """Receive the next message on ``channel`` and run its consumer like a worker would.

        Buffered sends are flushed afterwards; ``DenyConnection`` and socket exceptions have
        their worker effect; other exceptions (including ``ConsumeLater``) reach the test.
        """
        message = self.get_next_message(channel)
        if message is None:
            if fail_on_none:
                raise AssertionError(f"no message waiting on channel {channel!r}")
            return None
        match = self.channel_layer.router.match(message)
        if match is None:
            if fail_on_none:
                raise AssertionError(f"no route matches {message!r}")
            return None
        consumer, kwargs = match
        with _connections_kept():
            try:
                consumer_started.send(sender=self.__class__, environ={})
                return consumer(message, **kwargs)
            except DenyConnection:
                if message.channel.name != "websocket.connect":
                    raise
                message.reply_channel.send({"close": True})
            except ChannelSocketException as exc:
                exc.run(message)
            finally:
                consumer_finished.send(sender=self.__class__)
        return None

    def send_and_consume(self, channel: str, content: dict[str, Any] | None = None, fail_on_none: bool = True) -> Any:
        self.send(channel, content)
        return self.consume(channel, fail_on_none=fail_on_none)

    def receive(self) -> dict[str, Any] | None:
        """The content of the next message on this client's reply channel, or None."""
        message = self.get_next_message(self.reply_channel)
        return message.content if message else None

    def join_group(self, group_name: str) -> None:
        Group(group_name, alias=self.alias).add(self.reply_channel)


class apply_routes:
    """Replace the routing of ``aliases`` (default: ``["default"]``) for a block or a test.

    ``routes`` is a route, a list of routes, or a list of lists (each becomes an ``include``).
    Works as a context manager, a function decorator and a class decorator (every ``test*``
    method). Every alias listed is patched - not only ``"default"``.
    """

    def __init__(self, routes: Any, aliases: list[str] | None = None) -> None:
        self.routes = routes if isinstance(routes, (list, tuple)) else [routes]
        self.aliases = list(aliases or [DEFAULT_CHANNEL_LAYER])
        self._saved: list[tuple[ChannelLayerWrapper, Any, Router]] = []

    def enter(self) -> None:
        for alias in self.aliases:
            wrapper = channel_layers[alias]
            self._saved.append((wrapper, wrapper.routing, wrapper.router))
            wrapper.routing = self.routes
            wrapper.router = Router(self.routes)

    def exit(self) -> None:
        while self._saved:
            wrapper, routing, router = self._saved.pop()
            wrapper.routing, wrapper.router = routing, router

    def __enter__(self) -> "apply_routes":
        self.enter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.exit()

    def __call__(self, target: Any) -> Any:
        if isinstance(target, type):
            for name in dir(target):
                if name.startswith("test") and callable(getattr(target, name)):
                    setattr(target, name, apply_routes(self.routes, self.aliases)(getattr(target, name)))
            return target

        @functools.wraps(target)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with apply_routes(self.routes, self.aliases):
                return target(*args, **kwargs)

        return inner
