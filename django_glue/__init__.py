"""django_glue: Channels 1 for today's Django, on the ``asgi_ipc`` shared-memory layer.

Write ``django_glue`` wherever Channels 1 code wrote ``channels``::

    from django_glue import Channel, Group, route, include
    from django_glue.sessions import channel_session

The names below are imported lazily, so ``import django_glue`` works before Django is set up.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["DEFAULT_CHANNEL_LAYER", "channel_layers", "Channel", "Group", "route", "route_class", "include"]

_LAZY = {
    "DEFAULT_CHANNEL_LAYER": ".asgi",  # asgi_ipc.layer_settings.DEFAULT_ALIAS, the one definition
    "channel_layers": ".asgi",
    "Channel": ".channel",
    "Group": ".channel",
    "route": ".routing",
    "route_class": ".routing",
    "include": ".routing",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'django_glue' has no attribute {name!r}")
