"""``Channel`` and ``Group``: named destinations on a channel layer.

Inside a consumer, ``send`` is buffered until the consumer finishes (see :mod:`.outbox`) unless
``immediately=True``; outside one it goes out at once and ``ChannelFull`` reaches the caller.
"""
from __future__ import annotations

from typing import Any

from .asgi import DEFAULT_CHANNEL_LAYER, channel_layers
from .outbox import outbox

__all__ = ["Channel", "Group"]


def _name(name: Any, what: str) -> str:
    if isinstance(name, bytes):
        name = name.decode("ascii")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} name must be a non-empty string, got {name!r}")
    return name


class Channel:
    """A channel on a layer (``alias`` from settings, or an explicit ``channel_layer``)."""

    def __init__(
        self, name: str | bytes, alias: str = DEFAULT_CHANNEL_LAYER, channel_layer: Any = None
    ) -> None:
        self.name: str | None = _name(name, "channel")
        self.alias = alias
        self._channel_layer = channel_layer

    @classmethod
    def unnamed(cls, alias: str = DEFAULT_CHANNEL_LAYER, channel_layer: Any = None) -> "Channel":
        """The channel of a message built without one (``Message(content, None, None)``).

        Its ``name`` is None, as in Channels 1; sending to it raises ``ValueError``.
        """
        channel = cls.__new__(cls)
        channel.name, channel.alias, channel._channel_layer = None, alias, channel_layer
        return channel

    @property
    def channel_layer(self) -> Any:
        """The layer given, else ``channel_layers[alias]`` - looked up when first needed."""
        if self._channel_layer is None:
            self._channel_layer = channel_layers[self.alias]
        return self._channel_layer

    @channel_layer.setter
    def channel_layer(self, layer: Any) -> None:
        self._channel_layer = layer

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` (a dict) to this channel; buffered inside a consumer.

        Raises ``TypeError`` for a non-dict, ``ValueError`` on an unnamed channel, and (only
        when sent at once) the layer's ``ChannelFull``/``MessageTooLarge``.
        """
        if not isinstance(content, dict):
            raise TypeError(f"you can only send dicts as messages, not {type(content).__name__}")
        if self.name is None:
            raise ValueError("cannot send to an unnamed channel (the message was built with channel_name=None)")
        if immediately or not outbox.armed:
            self.channel_layer.send(self.name, content)
            return
        layer, name = self.channel_layer, self.name
        outbox.add(lambda: layer.send(name, content), layer.ChannelFull, f"channel {name!r}")

    def __str__(self) -> str:
        return str(self.name)

    def __repr__(self) -> str:
        return f"<Channel {self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Channel) and (self.name, self.alias) == (other.name, other.alias)

    def __hash__(self) -> int:
        return hash((self.name, self.alias))


class Group:
    """A named set of channels; ``send`` reaches every member (full members are skipped)."""

    def __init__(
        self, name: str | bytes, alias: str = DEFAULT_CHANNEL_LAYER, channel_layer: Any = None
    ) -> None:
        self.name = _name(name, "group")
        self.alias = alias
        self.channel_layer = channel_layer if channel_layer is not None else channel_layers[alias]

    @staticmethod
    def _member(channel: "Channel | str | bytes") -> str:
        return channel.name if isinstance(channel, Channel) else _name(channel, "channel")

    def add(self, channel: "Channel | str | bytes") -> None:
        """Add a channel (or its name) to the group now (never buffered)."""
        self.channel_layer.group_add(self.name, self._member(channel))

    def discard(self, channel: "Channel | str | bytes") -> None:
        """Remove a channel (or its name) from the group now; no error if absent."""
        self.channel_layer.group_discard(self.name, self._member(channel))

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` to every member; buffered inside a consumer.

        Raises ``ValueError`` for a non-dict (as Channels 1 did).
        """
        if not isinstance(content, dict):
            raise ValueError(f"you can only send dicts as messages, not {type(content).__name__}")
        if immediately or not outbox.armed:
            self.channel_layer.send_group(self.name, content)
            return
        layer, name = self.channel_layer, self.name
        outbox.add(lambda: layer.send_group(name, content), layer.ChannelFull, f"group {name!r}")

    def __repr__(self) -> str:
        return f"<Group {self.name}>"


