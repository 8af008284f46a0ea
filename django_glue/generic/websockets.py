"""WebSocket consumers: raw, JSON, and a JSON stream demultiplexer.

Unlike Channels 1, the demultiplexer never patches its sub-consumer classes: each sub-consumer
instance gets the ``multiplexer`` keyword argument and its ``send`` goes through it.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from django.core.serializers.json import DjangoJSONEncoder

from ..auth import channel_and_http_session_user_from_http, channel_session_user_from_http
from ..channel import Group
from ..exceptions import SendNotAvailableOnDemultiplexer
from ..message import Message
from ..sessions import enforce_ordering
from .base import BaseConsumer

__all__ = [
    "WebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketMultiplexer",
    "WebsocketDemultiplexer",
]


class WebsocketConsumer(BaseConsumer):
    """Connect/receive/disconnect handling for one WebSocket.

    Attributes: ``http_user`` (user from the HTTP session on connect, kept in the channel
    session), ``http_user_and_session`` (also keeps ``message.http_session``),
    ``strict_ordering`` (``enforce_ordering``), ``groups`` (joined on connect, left on disconnect;
    or override :meth:`connection_groups`). ``self.path`` is the socket's path.
    """

    method_mapping = {
        "websocket.connect": "raw_connect",
        "websocket.receive": "raw_receive",
        "websocket.disconnect": "raw_disconnect",
    }
    http_user = False
    http_user_and_session = False
    strict_ordering = False
    slight_ordering = False
    groups: list[str] | None = None

    def get_handler(self, message: Any, **kwargs: Any) -> Callable[..., Any]:
        if self.http_user or self.http_user_and_session:
            self.channel_session_user = True
        self.path = message.get("path")
        handler = super().get_handler(message, **kwargs)
        # On every handler, as Channels 1 did: frames and the disconnect get the user and the
        # HTTP session back through the channel session.
        if self.http_user_and_session:
            handler = channel_and_http_session_user_from_http(handler)
        elif self.http_user:
            handler = channel_session_user_from_http(handler)
        if self.slight_ordering:
            raise ValueError("slight_ordering was removed in Channels 1.0; remove slight_ordering = True")
        if self.strict_ordering:
            return enforce_ordering(handler)
        return handler

    def connection_groups(self, **kwargs: Any) -> list[str]:
        """Groups this socket joins on connect and leaves on disconnect."""
        return list(self.groups or [])

    def raw_connect(self, message: Any, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).add(message.reply_channel)
        self.connect(message, **kwargs)

    def connect(self, message: Any, **kwargs: Any) -> None:
        """Accept the connection (override, and accept or ``close()`` yourself).

        Under a demultiplexer (``multiplexer`` keyword argument) the demultiplexer has already
        accepted, so nothing is sent.
        """
        if self.kwargs.get("multiplexer") is None:
            message.reply_channel.send({"accept": True})

    def raw_receive(self, message: Any, **kwargs: Any) -> None:
        if message.get("text") is not None:
            self.receive(text=message["text"], **kwargs)
        else:
            self.receive(bytes=message.get("bytes"), **kwargs)

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        """Called with each frame's ``text`` or ``bytes``."""

    def send(self, text: str | None = None, bytes: bytes | None = None, close: bool | int = False) -> None:
        """Send a text or binary frame (optionally closing afterwards)."""
        self.message.reply_channel.send(self.encode_frame(text, bytes, close))

    @staticmethod
    def encode_frame(text: str | None, bytes: bytes | None, close: bool | int) -> dict[str, Any]:
        if text is not None:
            frame: dict[str, Any] = {"text": text}
        elif bytes is not None:
            frame = {"bytes": bytes}
        else:
            raise ValueError("send() needs text or bytes")
        if close:
            frame["close"] = close
        return frame

    @classmethod
    def group_send(cls, name: str, text: str | None = None, bytes: bytes | None = None, close: bool | int = False) -> None:
        """Send a frame to every socket in group ``name``."""
        Group(name).send(cls.encode_frame(text, bytes, close))

    def close(self, status: bool | int = True) -> None:
        """Close the socket (``True`` = 1000, or a close code)."""
        self.message.reply_channel.send({"close": status})

    def raw_disconnect(self, message: Any, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).discard(message.reply_channel)
        self.disconnect(message, **kwargs)

    def disconnect(self, message: Any, **kwargs: Any) -> None:
        """Called after the socket closed (groups already left)."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """Frames are JSON: ``receive(content)`` gets the decoded value, ``send(content)`` encodes.

    Under a :class:`WebsocketDemultiplexer` (``multiplexer`` keyword argument), ``send`` wraps
    the content in this consumer's stream.
    """

    def raw_receive(self, message: Any, **kwargs: Any) -> None:
        if message.get("text") is None:
            raise ValueError("JsonWebsocketConsumer received a binary frame; only text JSON is accepted")
        self.receive(self.decode_json(message["text"]), **kwargs)

    def receive(self, content: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Called with each frame's decoded JSON."""

    def send(self, content: Any, close: bool | int = False) -> None:  # type: ignore[override]
        multiplexer = self.kwargs.get("multiplexer")
        if multiplexer is not None:
            multiplexer.send(content)
            if close:
                self.close(close)
            return
        super().send(text=self.encode_json(content), close=close)

    @classmethod
    def group_send(cls, name: str, content: Any, close: bool | int = False) -> None:  # type: ignore[override]
        WebsocketConsumer.group_send(name, text=cls.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text: str) -> Any:
        return json.loads(text)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content)


class WebsocketMultiplexer:
    """Sends payloads of one ``stream`` over a socket as ``{"stream": s, "payload": p}``."""

    def __init__(self, stream: str, reply_channel: Any) -> None:
        self.stream = stream
        self.reply_channel = reply_channel

    def send(self, payload: Any) -> None:
        self.reply_channel.send(self.encode(self.stream, payload))

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder)

    @classmethod
    def encode(cls, stream: str, payload: Any) -> dict[str, Any]:
        return {"text": cls.encode_json({"stream": stream, "payload": payload})}

    @classmethod
    def group_send(cls, name: str, stream: str, payload: Any, close: bool = False) -> None:
        message = cls.encode(stream, payload)
        if close:
            message["close"] = True
        Group(name).send(message)


class WebsocketDemultiplexer(JsonWebsocketConsumer):
    """Routes ``{"stream", "payload"}`` frames to ``consumers[stream]``.

    Connect and disconnect go to every sub-consumer; each call gets ``multiplexer=`` for its
    stream. A frame without a known stream or with a non-dict payload raises ``ValueError``.
    """

    consumers: dict[str, Any] = {}
    multiplexer_class = WebsocketMultiplexer

    def _sub_message(self, text: str | None = None) -> Message:
        message = self.message
        content = dict(message.content)
        if text is not None:
            content["text"] = text
        sub = Message(content, message.channel.name, message.channel_layer)
        for attr in ("channel_session", "http_session", "user"):
            if hasattr(message, attr):
                setattr(sub, attr, getattr(message, attr))
        return sub

    def _call(self, stream: str, consumer: Any, text: str | None, kwargs: dict[str, Any]) -> None:
        multiplexer = self.multiplexer_class(stream, self.message.reply_channel)
        consumer(self._sub_message(text), **{**kwargs, "multiplexer": multiplexer})

    def connect(self, message: Any, **kwargs: Any) -> None:
        message.reply_channel.send({"accept": True})
        for stream, consumer in self.consumers.items():
            self._call(stream, consumer, None, kwargs)

    def receive(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or "stream" not in content or "payload" not in content:
            raise ValueError('multiplexed frames must be {"stream": ..., "payload": {...}}')
        if not isinstance(content["payload"], dict):
            raise ValueError("the payload of a multiplexed frame must be a JSON object")
        stream = content["stream"]
        consumer = self.consumers.get(stream)
        if consumer is None:
            raise ValueError(f"no consumer for stream {stream!r} (known: {sorted(self.consumers)})")
        self._call(stream, consumer, self.encode_json(content["payload"]), kwargs)

    def disconnect(self, message: Any, **kwargs: Any) -> None:
        for stream, consumer in self.consumers.items():
            self._call(stream, consumer, None, kwargs)

    def send(self, *args: Any, **kwargs: Any) -> None:
        raise SendNotAvailableOnDemultiplexer(
            "use the multiplexer passed to the sub-consumers, or WebsocketMultiplexer.group_send"
        )

    @classmethod
    def group_send(cls, *args: Any, **kwargs: Any) -> None:
        raise SendNotAvailableOnDemultiplexer("use WebsocketMultiplexer.group_send(name, stream, payload)")
