"""``Message``: one received message plus the channel it came on and where to reply."""
from __future__ import annotations

import copy
from typing import Any, Iterator

from .asgi import DEFAULT_CHANNEL_LAYER
from .channel import Channel

__all__ = ["Message"]


class Message:
    """A message as consumers see it; behaves like its content dict.

    :ivar content: the message dict.
    :ivar channel: the :class:`Channel` it arrived on.
    :ivar reply_channel: a :class:`Channel` for ``content["reply_channel"]``, or None.
    :ivar channel_layer: the layer (wrapper) it came from.

    Decorators attach more attributes (``channel_session``, ``http_session``, ``user``).
    """

    def __init__(self, content: dict[str, Any], channel_name: str | None, channel_layer: Any) -> None:
        """``channel_name`` and ``channel_layer`` may be None, as Channels 1 tests build messages:
        the channel is then unnamed, and the layer is the ``"default"`` alias's, looked up when
        first used."""
        if not isinstance(content, dict):
            raise TypeError(f"message content must be a dict, not {type(content).__name__}")
        self.content = content
        self._channel_layer = channel_layer
        alias = getattr(channel_layer, "alias", DEFAULT_CHANNEL_LAYER)
        self.channel = (
            Channel.unnamed(alias, channel_layer) if channel_name is None
            else Channel(channel_name, alias=alias, channel_layer=channel_layer)
        )
        reply = content.get("reply_channel")
        self.reply_channel = (
            Channel(reply, alias=alias, channel_layer=channel_layer) if reply else None
        )

    @property
    def channel_layer(self) -> Any:
        """The layer the message came from (the default alias's if built with None)."""
        if self._channel_layer is None:
            self._channel_layer = self.channel.channel_layer
        return self._channel_layer

    @channel_layer.setter
    def channel_layer(self, layer: Any) -> None:
        self._channel_layer = layer

    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.content[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.content

    def __iter__(self) -> Iterator[str]:
        return iter(self.content)

    def keys(self) -> Any:
        return self.content.keys()

    def values(self) -> Any:
        return self.content.values()

    def items(self) -> Any:
        return self.content.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self.content.get(key, default)

    def with_content(self, content: dict[str, Any]) -> "Message":
        """A new Message with ``content`` on the same channel and layer (``include`` hands its
        inner routes one with the matched prefixes chopped off)."""
        return type(self)(content, self.channel.name, self._channel_layer)

    def copy(self) -> "Message":
        """A new Message with a deep copy of the content (same channel and layer)."""
        return type(self)(copy.deepcopy(self.content), self.channel.name, self._channel_layer)

    def __repr__(self) -> str:
        return f"<Message on {self.channel.name}: {sorted(self.content)}>"
