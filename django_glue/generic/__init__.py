"""Class-based consumers: ``BaseConsumer`` and the WebSocket family."""
from .base import BaseConsumer

__all__ = ["BaseConsumer"]
