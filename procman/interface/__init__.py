"""The interface server: HTTP/1.x and WebSocket on Twisted + Autobahn, speaking ASGI-1 over a
channel layer (the role Daphne 1.x played). Run it with ``procman interface LAYER``.

The names below are imported on first use (PEP 562), so ``procman.interface.options`` - which the
supervisor reads for its pass-through flags - does not load Twisted into the supervisor.
"""

from __future__ import annotations

from typing import Any

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

_HOMES = {"OptionSpec": "options", "ServerOptions": "options", "interface_options": "options"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{_HOMES.get(name, 'server')}")
    return getattr(module, name)
