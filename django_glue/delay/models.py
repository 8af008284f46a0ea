"""``DelayedMessage``: a message waiting for its due time (survives restarts of the server)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import models
from django.utils import timezone

from asgi_ipc.serialise import pack, unpack

from .protocol import DelayRequest

__all__ = ["DelayedMessage"]


class DelayedMessage(models.Model):
    """One stored request; due messages are sent in ``(due_date, id)`` order."""

    due_date = models.DateTimeField(db_index=True)
    channel_name = models.CharField(max_length=512)
    #: The message, msgpack-encoded as on the layer (keeps bytes and str apart, unlike JSON).
    content = models.BinaryField()

    class Meta:
        ordering = ["due_date", "id"]

    def __str__(self) -> str:
        return f"to {self.channel_name} at {self.due_date.isoformat()}"

    @classmethod
    def from_request(cls, request: DelayRequest, received_at: Any = None) -> "DelayedMessage":
        """An unsaved row for ``request``, due ``delay_ms`` after ``received_at`` (default now)."""
        start = timezone.now() if received_at is None else received_at
        return cls(
            due_date=start + timedelta(milliseconds=request.delay_ms),
            channel_name=request.channel,
            content=pack(request.content),
        )

    def message(self) -> dict[str, Any]:
        """The message to deliver."""
        return unpack(bytes(self.content))
