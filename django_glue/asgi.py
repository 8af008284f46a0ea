"""Channel layers from ``settings.CHANNEL_LAYERS``, and the ``get_channel_layer()`` for ``asgi.py``.

Settings shape (one entry per alias; ``"default"`` is used unless told otherwise)::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "asgi_ipc.IPCChannelLayer",       # dotted path to the layer class
            "CONFIG": {"prefix": "mysite"},             # constructor kwargs (optional)
            "ROUTING": "mysite.routing.channel_routing",  # dotted path, or the list/dict itself
            "TEST_CONFIG": {"message_memory": 4 << 20},  # kwargs for test layers (optional)
        },
    }

Every malformed entry raises :class:`~django_glue.exceptions.InvalidChannelLayerError` (an
``ImproperlyConfigured``) naming the alias, the key and what is expected.
"""
from __future__ import annotations

import inspect
import os
import threading
import uuid
import weakref
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from asgi_ipc.cluster import backend_for as cluster_backend_for

from .exceptions import InvalidChannelLayerError
from .routing import Router

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "ChannelLayerWrapper",
    "ChannelLayerManager",
    "channel_layers",
    "get_channel_layer",
    "layer_settings",
    "build_layer",
    "backend_parameters",
    "unique_test_prefix",
]

DEFAULT_CHANNEL_LAYER = "default"
_KNOWN_KEYS = {"BACKEND", "CONFIG", "ROUTING", "TEST_CONFIG"}


def layer_settings(alias: str) -> dict[str, Any]:
    """Return the validated ``CHANNEL_LAYERS[alias]`` entry (raises InvalidChannelLayerError)."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        raise InvalidChannelLayerError(
            "settings.CHANNEL_LAYERS is not set; add e.g. CHANNEL_LAYERS = {'default': "
            "{'BACKEND': 'asgi_ipc.IPCChannelLayer', 'ROUTING': 'myproject.routing.channel_routing'}}"
        )
    if not isinstance(layers, dict):
        raise InvalidChannelLayerError(
            f"settings.CHANNEL_LAYERS must be a dict of alias -> config, not {type(layers).__name__}"
        )
    if alias not in layers:
        known = ", ".join(repr(a) for a in layers) or "none"
        raise InvalidChannelLayerError(
            f"no channel layer alias {alias!r} in settings.CHANNEL_LAYERS (defined: {known})"
        )
    entry = layers[alias]
    where = f"CHANNEL_LAYERS[{alias!r}]"
    if not isinstance(entry, dict):
        raise InvalidChannelLayerError(f"{where} must be a dict, not {type(entry).__name__}")
    unknown = set(entry) - _KNOWN_KEYS
    if unknown:
        raise InvalidChannelLayerError(
            f"{where} has unknown key(s) {sorted(unknown)}; allowed: {sorted(_KNOWN_KEYS)}"
        )
    if not isinstance(entry.get("BACKEND"), str) or not entry["BACKEND"]:
        raise InvalidChannelLayerError(
            f"{where}['BACKEND'] must be the dotted path of a layer class, "
            "e.g. 'asgi_ipc.IPCChannelLayer'"
        )
    if "ROUTING" not in entry:
        raise InvalidChannelLayerError(
            f"{where}['ROUTING'] is required: the dotted path of your routing list "
            "(e.g. 'myproject.routing.channel_routing') or the list itself"
        )
    for key in ("CONFIG", "TEST_CONFIG"):
        if key in entry and not isinstance(entry[key], dict):
            raise InvalidChannelLayerError(
                f"{where}[{key!r}] must be a dict of layer constructor arguments, "
                f"not {type(entry[key]).__name__}"
            )
    return entry


def build_layer(alias: str, config: dict[str, Any]) -> Any:
    """Instantiate ``CHANNEL_LAYERS[alias]['BACKEND'](**config)`` with clear errors."""
    path = layer_settings(alias)["BACKEND"]
    try:
        backend = import_string(path)
        backend = cluster_backend_for(backend)  # the cluster link's outboxes under `procman run --cluster`
    except ImportError as exc:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] = {path!r} cannot be imported: {exc}"
        ) from exc
    try:
        return backend(**config)
    except TypeError as exc:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]: {path} rejected its CONFIG {sorted(config)}: {exc}"
        ) from exc


def unique_test_prefix() -> str:
    """A layer prefix no site and no other test uses (pid + random)."""
    return f"t{os.getpid()}_{uuid.uuid4().hex[:10]}"


def backend_parameters(alias: str) -> set[str]:
    """The keyword arguments the alias's BACKEND accepts (empty if it takes ``**kwargs`` only)."""
    path = layer_settings(alias)["BACKEND"]
    try:
        backend = import_string(path)
        return set(inspect.signature(backend).parameters)
    except (ImportError, TypeError, ValueError):
        return set()


class ChannelLayerWrapper:
    """A layer plus its alias and router; every other attribute is the raw layer's.

    So ``wrapper.send(...)``, ``wrapper.ChannelFull`` and ``wrapper.extensions`` work as on the raw
    layer, while ``wrapper.router`` holds the parsed routing for workers.
    """

    def __init__(self, channel_layer: Any, alias: str, routing: Any) -> None:
        self.channel_layer = channel_layer
        self.alias = alias
        self.routing = routing
        self.router = Router(routing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["channel_layer"], name)

    def local_only(self) -> bool:
        """True if the layer only reaches this process (Channels 1 API; in-memory layers)."""
        return "inmemory" in type(self.channel_layer).__module__

    def __repr__(self) -> str:
        return f"<ChannelLayerWrapper alias={self.alias!r} layer={self.channel_layer!r}>"


class ChannelLayerManager:
    """Lazily builds and caches one :class:`ChannelLayerWrapper` per alias (thread-safe)."""

    def __init__(self) -> None:
        self._backends: dict[str, ChannelLayerWrapper] = {}
        self._lock = threading.Lock()

    @property
    def configs(self) -> dict[str, Any]:
        """The raw ``settings.CHANNEL_LAYERS`` dict (``{}`` if unset)."""
        return getattr(settings, "CHANNEL_LAYERS", None) or {}

    def make_backend(self, alias: str) -> ChannelLayerWrapper:
        """Build a new wrapper for ``alias`` from its ``CONFIG``."""
        entry = layer_settings(alias)
        return self._wrap(alias, build_layer(alias, dict(entry.get("CONFIG", {}))))

    def make_test_backend(self, alias: str, **overrides: Any) -> ChannelLayerWrapper:
        """Build a test layer from ``TEST_CONFIG`` (falling back to ``CONFIG``) plus ``overrides``.

        For a backend that takes ``prefix``/``create`` (``asgi_ipc``), the layer is created on a
        prefix of its own (unique per call unless ``overrides`` names one) - never ``CONFIG``'s or
        the backend's default, which a real site may be using, and never one another test shares
        - and is closed (removing its segment) when the wrapper is garbage-collected or the
        process exits, if not before.
        """
        entry = layer_settings(alias)
        test_config = entry.get("TEST_CONFIG")
        config = dict(test_config if test_config is not None else entry.get("CONFIG", {}))
        params = backend_parameters(alias)
        if "prefix" in params:
            config["prefix"] = unique_test_prefix()
            if "create" in params:
                config["create"] = True
        config.update(overrides)
        wrapper = self._wrap(alias, build_layer(alias, config))
        close = getattr(wrapper.channel_layer, "close", None)
        if close is not None:
            weakref.finalize(wrapper, close)
        return wrapper

    def _wrap(self, alias: str, layer: Any) -> ChannelLayerWrapper:
        return ChannelLayerWrapper(layer, alias, layer_settings(alias)["ROUTING"])

    def __getitem__(self, alias: str) -> ChannelLayerWrapper:
        try:
            return self._backends[alias]
        except KeyError:
            pass
        with self._lock:
            if alias not in self._backends:
                self._backends[alias] = self.make_backend(alias)
            return self._backends[alias]

    def __contains__(self, alias: object) -> bool:
        return alias in self.configs

    def set(self, alias: str, layer: ChannelLayerWrapper | None) -> ChannelLayerWrapper | None:
        """Install ``layer`` for ``alias`` (``None`` removes it); returns the previous wrapper."""
        with self._lock:
            old = self._backends.pop(alias, None)
            if layer is not None:
                self._backends[alias] = layer
            return old

    def close_all(self) -> None:
        """Close every layer this manager built (for process shutdown)."""
        with self._lock:
            backends, self._backends = self._backends, {}
        for wrapper in backends.values():
            close = getattr(wrapper.channel_layer, "close", None)
            if close is not None:
                close()


channel_layers = ChannelLayerManager()


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> Any:
    """Set Django up and return the raw layer of ``alias`` (what a project's ``asgi.py`` exposes).

    Typical ``myproject/asgi.py``::

        import os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
        from django_glue.asgi import get_channel_layer
        channel_layer = get_channel_layer()
    """
    import django

    django.setup(set_prefix=False)
    return channel_layers[alias].channel_layer
