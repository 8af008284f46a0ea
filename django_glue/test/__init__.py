"""Test helpers: an isolated layer per test, fake clients that drive consumers, route overrides."""
from .base import (
    ChannelTestCase,
    ChannelTestCaseMixin,
    Client,
    TransactionChannelTestCase,
    apply_routes,
    isolated_layer,
)
from .websocket import HttpClient, WSClient

__all__ = [
    "ChannelTestCase",
    "ChannelTestCaseMixin",
    "TransactionChannelTestCase",
    "Client",
    "WSClient",
    "HttpClient",
    "apply_routes",
    "isolated_layer",
]
