"""Routing messages to consumers: ``route``, ``route_class``, ``include`` and the ``Router``.

A routing is a list of routing objects - anything with ``match(message) -> (consumer, kwargs) |
None`` and ``channel_names() -> set[str]`` - a dict ``{channel: consumer}``, or the dotted path of
either. Filters are regular expressions matched (``re.match``, so anchored at the start) against
message keys; bytes values are decoded as ASCII. Named groups become consumer keyword arguments;
positional groups are refused because they could not be passed by name. ``include`` chops what
its filters matched off the front of those keys before trying the inner routes, so
``include(inner, path=r"^/chat")`` lets an inner ``path=r"^/(?P<room>\\w+)/$"`` see ``/lobby/``.
The first matching entry wins; :meth:`Router.check_default` appends the default routes last.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

__all__ = ["Route", "RouteClass", "Include", "Router", "route", "route_class", "include"]

Consumer = Callable[..., Any]


def _import(path: str, what: str) -> Any:
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"cannot import {what} {path!r}: {exc}") from exc


def _compile_filters(filters: dict[str, Any], owner: str) -> dict[str, re.Pattern[str]]:
    compiled = {}
    for key, value in filters.items():
        # Message values are matched as text, so bytes patterns (Channels 1 accepted them) are
        # decoded as ASCII like the values themselves.
        if isinstance(value, re.Pattern) and isinstance(value.pattern, bytes):
            value = re.compile(value.pattern.decode("ascii"), value.flags)
        value = Router.normalise_re_arg(value)
        regex = value if isinstance(value, re.Pattern) else re.compile(value)
        if regex.groups != len(regex.groupindex):
            raise ValueError(
                f"{owner}: filter {key}={regex.pattern!r} has a positional group; use named "
                "groups (?P<name>...) so the match can be passed as a keyword argument"
            )
        compiled[key] = regex
    return compiled


def _filter_value(message: Any, key: str) -> str | None:
    """The value of ``key`` in the message as text, or None when absent or not matchable."""
    content = message.content if hasattr(message, "content") else message
    if key not in content:
        return None
    value = content[key]
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    return value


def _match_filters(
    message: Any, filters: dict[str, re.Pattern[str]]
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Match every filter against its message key (all must match, anchored at the start).

    Returns the named groups as consumer kwargs, and for each key the rest of its value after
    the match (what an ``include`` passes on to its inner routes); None if any filter fails.
    """
    kwargs: dict[str, Any] = {}
    rests: dict[str, str] = {}
    for key, regex in filters.items():
        value = _filter_value(message, key)
        if value is None:
            return None
        found = regex.match(value)
        if found is None:
            return None
        kwargs.update(found.groupdict())
        rests[key] = value[found.end():]
    return kwargs, rests


def _channel_list(channels: Any) -> list[str]:
    if isinstance(channels, (str, bytes)):
        channels = [channels]
    out = []
    for name in channels:
        if isinstance(name, bytes):
            name = name.decode("ascii")
        if not isinstance(name, str):
            raise ValueError(f"channel names must be strings, got {name!r}")
        out.append(name)
    if not out:
        raise ValueError("a route needs at least one channel name")
    return out


class Route:
    """Send messages on ``channels`` whose keys match every filter to ``consumer``.

    :param channels: a channel name or a list of them.
    :param consumer: a callable ``consumer(message, **kwargs)`` or its dotted path.
    :param filters: ``message_key=regex``; all must match (regex named groups -> kwargs).
    """

    def __init__(self, channels: str | Iterable[str], consumer: Consumer | str, **filters: Any) -> None:
        self.channels = _channel_list(channels)
        self.consumer = _import(consumer, "consumer") if isinstance(consumer, str) else consumer
        if not callable(self.consumer):
            raise ValueError(f"route consumer {self.consumer!r} is not callable")
        self.filters = _compile_filters(filters, f"route({self.channels!r})")

    def match(self, message: Any) -> tuple[Consumer, dict[str, Any]] | None:
        """Return ``(consumer, kwargs)`` if this route takes ``message``, else None."""
        if message.channel.name not in self.channels:
            return None
        matched = _match_filters(message, self.filters)
        if matched is None:
            return None
        return self.consumer, matched[0]

    def channel_names(self) -> set[str]:
        """The channels this route listens on."""
        return set(self.channels)

    def __repr__(self) -> str:
        filters = " ".join(f"{k}={v.pattern}" for k, v in self.filters.items())
        name = getattr(self.consumer, "__name__", repr(self.consumer))
        return f"<Route {self.channels} -> {name} {filters}>".replace(" >", ">")


class RouteClass(Route):
    """Route to a class-based consumer; channels come from ``consumer.channel_names()``."""

    def __init__(self, consumer: Any, **filters: Any) -> None:
        if isinstance(consumer, str):
            consumer = _import(consumer, "consumer class")
        channel_names = getattr(consumer, "channel_names", None)
        if not callable(channel_names):
            raise ValueError(
                f"route_class needs a class with a channel_names() classmethod, got {consumer!r}"
            )
        super().__init__(sorted(channel_names()), consumer, **filters)


class Include:
    """Try an inner routing after matching (and chopping) prefix filters on message keys."""

    def __init__(self, routing: Any, **filters: Any) -> None:
        self.routing = Router.resolve_routing(routing)
        self.filters = _compile_filters(filters, "include()")

    def match(self, message: Any) -> tuple[Consumer, dict[str, Any]] | None:
        """Return the first inner match after chopping this include's matched prefixes."""
        kwargs: dict[str, Any] = {}
        if self.filters:
            matched = _match_filters(message, self.filters)
            if matched is None:
                return None
            kwargs, rests = matched
            message = message.with_content({**message.content, **rests})
        for entry in self.routing:
            result = entry.match(message)
            if result is not None:
                consumer, inner_kwargs = result
                return consumer, {**kwargs, **inner_kwargs}
        return None

    def channel_names(self) -> set[str]:
        """Union of the inner routing's channels."""
        names: set[str] = set()
        for entry in self.routing:
            names |= entry.channel_names()
        return names


class Router:
    """The whole routing of one layer; ``channels`` is what workers listen on."""

    def __init__(self, routing: Any) -> None:
        self.root = Include(routing)
        self._channels: set[str] | None = None
        self._defaults_added = False

    @staticmethod
    def normalise_re_arg(value: Any) -> Any:
        """Bytes decoded as ASCII (Channels 1 API); anything else unchanged."""
        return value.decode("ascii") if isinstance(value, bytes) else value

    @staticmethod
    def resolve_routing(routing: Any) -> list[Any]:
        """Turn a routing spec (list, dict, dotted path) into a list of routing objects."""
        if isinstance(routing, str):
            routing = _import(routing, "routing")
        if isinstance(routing, dict):
            return [Route(channel, consumer) for channel, consumer in routing.items()]
        if isinstance(routing, (list, tuple)):
            entries = []
            for entry in routing:
                if isinstance(entry, (list, tuple)):
                    entry = Include(entry)
                if not (hasattr(entry, "match") and hasattr(entry, "channel_names")):
                    raise ImproperlyConfigured(
                        f"routing entry {entry!r} is not a route: use route(), route_class() "
                        "or include()"
                    )
                entries.append(entry)
            return entries
        raise ImproperlyConfigured(
            f"a routing must be a list of routes, a dict or a dotted path to one, not {routing!r}"
        )

    @property
    def channels(self) -> set[str]:
        """All channel names routed (cached)."""
        if self._channels is None:
            self._channels = self.root.channel_names()
        return set(self._channels)

    def add_route(self, entry: Any) -> None:
        """Append a routing object at the end (lowest precedence)."""
        self.root.routing.append(entry)
        self._channels = None

    def match(self, message: Any) -> tuple[Consumer, dict[str, Any]] | None:
        """First ``(consumer, kwargs)`` taking ``message``, or None."""
        return self.root.match(message)

    def check_default(self, http_consumer: Consumer | None = None) -> None:
        """Append the default routes after the user's (HTTP -> Django views, WebSocket accept)."""
        from .default_consumers import ViewConsumer, connect_accept, no_op

        if self._defaults_added:
            return
        self._defaults_added = True
        # Appended after the user's routes, so they only catch what those did not match (e.g. a
        # user route for http.request on path=^/poll/ leaves every other path to the views).
        self.add_route(Route("http.request", http_consumer or ViewConsumer()))
        self.add_route(Route("websocket.connect", connect_accept))
        self.add_route(Route("websocket.receive", no_op))
        self.add_route(Route("websocket.disconnect", no_op))
        # Nobody consuming http.disconnect let it fill up and raise ChannelFull in Channels 1.
        self.add_route(Route("http.disconnect", no_op))


def route(channels: str | Iterable[str], consumer: Consumer | str, **filters: Any) -> Route:
    """Route ``channels`` (with ``key=regex`` filters) to ``consumer``."""
    return Route(channels, consumer, **filters)


def route_class(consumer: Any, **filters: Any) -> RouteClass:
    """Route a class-based consumer on the channels it declares."""
    return RouteClass(consumer, **filters)


def include(routing: Any, **filters: Any) -> Include:
    """Include another routing, guarded by prefix filters that are chopped on match."""
    return Include(routing, **filters)


def __getattr__(name: str) -> Any:
    # Channels 1 names of the default consumers, which live in ``default_consumers`` (that module
    # imports the handler and Django's request machinery, so it is imported only when asked for).
    aliases = {"null_consumer": "no_op", "connect_consumer": "connect_accept"}
    if name in aliases:
        from . import default_consumers

        return getattr(default_consumers, aliases[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
