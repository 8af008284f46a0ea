"""Test helpers: an isolated layer per test, fake clients that drive consumers, route overrides."""
from .base import ChannelTestCase, Client, TransactionChannelTestCase, apply_routes, isolated_layer
from .websocket import HttpClient, WSClient

__all__ = [
    "ChannelTestCase",
    "TransactionChannelTestCase",
    "Client",
    "WSClient",
    "HttpClient",
    "apply_routes",
    "isolated_layer",
]
