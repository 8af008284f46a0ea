"""``WebsocketBinding``: data binding over multiplexed WebSocket JSON frames.

Outbound frames are the demultiplexer's ``{"stream": stream, "payload": payload}`` with::

    payload = {"action": "create" | "update" | "delete", "pk": pk,
               "data": {field: value, ...}, "model": "app_label.modelname"}

Inbound, put ``MyBinding.consumer`` in a ``WebsocketDemultiplexer``'s ``consumers`` under its
``stream``; clients send ``{"stream": stream, "payload": {"action", "pk", "data"}}``. Only
``websocket.receive`` messages are acted on (the demultiplexer also hands connects and
disconnects to every stream). Values are converted with Django's deserializers, and only the
fields the binding exposes are ever set.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from django.core import serializers
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model

from ..generic.websockets import WebsocketMultiplexer
from ..sessions import enforce_ordering
from .base import Binding

__all__ = ["WebsocketBinding", "WebsocketBindingWithMembers"]


class WebsocketBinding(Binding):
    """A binding whose messages are WebSocket frames on :attr:`stream`.

    Set ``strict_ordering = True`` to run a socket's inbound frames in order
    (``enforce_ordering``).
    """

    model: Any = None
    strict_ordering = False

    @classmethod
    def check_configuration(cls) -> None:
        super().check_configuration()
        if not isinstance(cls.stream, str) or not cls.stream:
            raise ImproperlyConfigured(f"{cls.__name__}.stream must be the (non-empty) name of its stream")

    # ----- outbound ------------------------------------------------------------------------------
    @classmethod
    def encode(cls, stream: str | None, payload: dict[str, Any]) -> dict[str, Any]:
        return WebsocketMultiplexer.encode(stream, payload)  # type: ignore[arg-type]

    def serialize(self, instance: Model, action: str) -> dict[str, Any]:
        return {
            "action": action,
            "pk": instance.pk,
            "data": self.serialize_data(instance),
            "model": self.model_label,
        }

    def serialize_data(self, instance: Model) -> dict[str, Any]:
        """The exposed fields of ``instance`` as JSON-ready values (Django's JSON serializer)."""
        names = [field.name for field in instance._meta.fields + instance._meta.many_to_many]
        text = serializers.serialize("json", [instance], fields=self.permitted_fields(names))
        return json.loads(text)[0]["fields"]

    # ----- inbound -------------------------------------------------------------------------------
    @classmethod
    def get_handler(cls) -> Callable[..., None]:
        handler = super().get_handler()
        return enforce_ordering(handler) if cls.strict_ordering else handler

    @classmethod
    def consumer(cls, message: Any, **kwargs: Any) -> None:
        # Connects and disconnects reach every stream of a demultiplexer: nothing to do for them
        # (and no channel session to open for them).
        if message.channel.name == "websocket.receive":
            super().consumer(message, **kwargs)

    def deserialize(self, message: Any) -> tuple[str, Any, dict[str, Any] | None]:
        text = message.get("text")
        if text is None:
            raise ValueError(f"{type(self).__name__} accepts text frames only (JSON), got a binary frame")
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: the frame is not JSON ({exc})") from None
        if not isinstance(body, dict) or "action" not in body:
            raise ValueError(
                f'{type(self).__name__}: expected {{"action": ..., "pk": ..., "data": {{...}}}}, got {text[:200]!r}'
            )
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{type(self).__name__}: 'data' must be an object of field values, got {data!r}")
        return body["action"], body.get("pk"), data

    def _hydrate(self, pk: Any, data: dict[str, Any]) -> Any:
        """A ``DeserializedObject`` with the permitted fields of ``data`` converted to Python."""
        fields = {name: data[name] for name in self.permitted_fields(data)}
        return next(serializers.deserialize("python", [{"model": self.model_label, "pk": pk, "fields": fields}]))

    def create(self, data: dict[str, Any]) -> None:
        hydrated = self._hydrate(None, data)
        hydrated.object.save()  # an ordinary save (not the deserializer's raw one): signals as usual
        for name, values in hydrated.m2m_data.items():
            getattr(hydrated.object, name).set(values)

    def update(self, pk: Any, data: dict[str, Any]) -> None:
        if pk is None:
            raise ValueError(f"{type(self).__name__}: an update needs the object's 'pk'")
        instance = self.model.objects.get(pk=pk)
        hydrated = self._hydrate(pk, data)
        for name in self.permitted_fields(data):
            if name not in hydrated.m2m_data:
                setattr(instance, name, getattr(hydrated.object, name))
        instance.save()
        for name, values in hydrated.m2m_data.items():
            getattr(instance, name).set(values)

    def delete(self, pk: Any) -> None:
        if pk is None:
            raise ValueError(f"{type(self).__name__}: a delete needs the object's 'pk'")
        super().delete(pk)


class WebsocketBindingWithMembers(WebsocketBinding):
    """Also sends :attr:`send_members`: attributes, properties, zero-argument methods or dotted
    paths (``"owner.username"`` becomes the key ``"owner__username"``) of the instance."""

    send_members: list[str] = []

    def serialize_data(self, instance: Model) -> dict[str, Any]:
        data = super().serialize_data(instance)
        for member in self.send_members:
            value: Any = instance
            for part in member.split("."):
                value = getattr(value, part)
                if callable(value):
                    value = value()
            data[member.replace(".", "__")] = value
        return data
