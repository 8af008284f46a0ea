"""Channels 1's ``channels.test.http`` module: ``HttpClient``, the deprecated name of ``WSClient``."""
from .websocket import HttpClient

__all__ = ["HttpClient"]
