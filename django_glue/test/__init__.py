"""Test helpers: an isolated layer per test, fake clients that drive consumers, route overrides,
and a live server for browser tests."""
from typing import Any

from .base import (
    ChannelTestCase,
    ChannelTestCaseMixin,
    Client,
    TransactionChannelTestCase,
    apply_routes,
    isolated_layer,
)
from .websocket import HttpClient, WSClient


def __getattr__(name: str) -> Any:
    # The live server imports the worker machinery; only load it when asked for.
    if name == "ChannelLiveServerTestCase":
        from .liveserver import ChannelLiveServerTestCase

        return ChannelLiveServerTestCase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ChannelTestCase",
    "ChannelTestCaseMixin",
    "ChannelLiveServerTestCase",
    "TransactionChannelTestCase",
    "Client",
    "WSClient",
    "HttpClient",
    "apply_routes",
    "isolated_layer",
]
