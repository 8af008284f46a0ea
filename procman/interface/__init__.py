"""The interface server: HTTP/1.x and WebSocket on Twisted + Autobahn, speaking ASGI-1 over a
channel layer (the role Daphne 1.x played). Run it with ``procman interface LAYER``."""

from procman.interface.options import OptionSpec, ServerOptions, interface_options
from procman.interface.server import (
    EXIT_FAST,
    EXIT_LAYER_LOST,
    EXIT_OK,
    InterfaceServer,
    LayerNotSupported,
)

__all__ = [
    "EXIT_FAST",
    "EXIT_LAYER_LOST",
    "EXIT_OK",
    "InterfaceServer",
    "LayerNotSupported",
    "OptionSpec",
    "ServerOptions",
    "interface_options",
]
