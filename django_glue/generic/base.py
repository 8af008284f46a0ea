"""``BaseConsumer``: a class-based consumer, instantiated once per message."""
from __future__ import annotations

from typing import Any, Callable

from ..auth import channel_session_user
from ..routing import RouteClass, route_class
from ..sessions import channel_session

__all__ = ["BaseConsumer"]


class BaseConsumer:
    """Dispatch a message to the method named in :attr:`method_mapping` for its channel.

    Constructing the class consumes the message (that is how the router calls it), so a route
    to ``MyConsumer`` runs ``MyConsumer(message, **kwargs)``. Set :attr:`channel_session` or
    :attr:`channel_session_user` to wrap handlers in those decorators.
    """

    #: ``{channel name: method name}``; the channels this consumer is routed on.
    method_mapping: dict[str, str] = {}
    channel_session = False
    channel_session_user = False

    def __init__(self, message: Any, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        self.dispatch(message, **kwargs)

    @classmethod
    def channel_names(cls) -> set[str]:
        """The channels in :attr:`method_mapping` (used by ``route_class``)."""
        return set(cls.method_mapping)

    @classmethod
    def as_route(cls, attrs: dict[str, Any] | None = None, **filters: Any) -> RouteClass:
        """A ``route_class`` for this consumer, optionally a subclass with ``attrs`` overridden."""
        consumer: type[BaseConsumer] = cls
        if attrs:
            if not isinstance(attrs, dict):
                raise ValueError(f"as_route(attrs=...) must be a dict, not {type(attrs).__name__}")
            consumer = type(cls.__name__, (cls,), attrs)
        return route_class(consumer, **filters)

    def get_handler(self, message: Any, **kwargs: Any) -> Callable[..., Any]:
        """The bound method for the message's channel, wrapped in the configured decorators."""
        try:
            name = self.method_mapping[message.channel.name]
        except KeyError:
            raise ValueError(
                f"{type(self).__name__} has no method mapped for channel {message.channel.name!r}"
            ) from None
        handler = getattr(self, name)
        if self.channel_session_user:
            return channel_session_user(handler)
        if self.channel_session:
            return channel_session(handler)
        return handler

    def dispatch(self, message: Any, **kwargs: Any) -> Any:
        """Call the handler with ``(message, **kwargs)``."""
        return self.get_handler(message, **kwargs)(message, **kwargs)
