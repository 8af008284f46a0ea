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

The rules for an entry live in :mod:`asgi_ipc.layer_settings` (shared with ``procman`` and the
interface server); here ``ROUTING`` is required, since Django processes run consumers. Every
malformed entry raises :class:`~django_glue.exceptions.InvalidChannelLayerError` (an
``ImproperlyConfigured``) naming the alias, the key and what is expected.
"""
from __future__ import annotations

import os
import threading
import uuid
import weakref
from typing import Any

from django.conf import settings

from asgi_ipc.layer_settings import DEFAULT_ALIAS as DEFAULT_CHANNEL_LAYER
from asgi_ipc.layer_settings import LayerSettingsError, LayerSpec, read_layer

from .exceptions import InvalidChannelLayerError
from .routing import Router

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "ChannelLayerWrapper",
    "ChannelLayerManager",
    "channel_layers",
    "get_channel_layer",
    "layer_spec",
    "attached_layer",
    "layer_settings",
    "build_layer",
    "backend_parameters",
    "unique_test_prefix",
]


def layer_spec(alias: str) -> LayerSpec:
    """The validated ``settings.CHANNEL_LAYERS[alias]``, ``ROUTING`` required.

    :raises InvalidChannelLayerError: the entry is missing or malformed (the message says how).
    """
    try:
        return read_layer(getattr(settings, "CHANNEL_LAYERS", None), alias, routing=True)
    except LayerSettingsError as exc:
        raise InvalidChannelLayerError(str(exc)) from None


def layer_settings(alias: str) -> dict[str, Any]:
    """The validated ``CHANNEL_LAYERS[alias]`` entry as written (raises InvalidChannelLayerError)."""
    layer_spec(alias)
    return settings.CHANNEL_LAYERS[alias]


def build_layer(alias: str, config: dict[str, Any]) -> Any:
    """Instantiate ``CHANNEL_LAYERS[alias]['BACKEND'](**config)`` with clear errors.

    :raises InvalidChannelLayerError: the entry is malformed, its backend does not import or
        refuses ``config``. The layer's own errors (e.g. ``SegmentMissing``) propagate.
    """
    spec = layer_spec(alias)
    try:
        return spec.build(config)
    except LayerSettingsError as exc:
        raise InvalidChannelLayerError(str(exc)) from None


def attached_layer(alias: str, *, supervised: bool = False) -> ChannelLayerWrapper:
    """The layer of ``alias`` attached, never created, wrapped with its routing (for workers).

    See :meth:`asgi_ipc.layer_settings.LayerSpec.attach_config`: ``create=False`` unless
    ``CONFIG`` says otherwise, and even then when ``supervised`` (the supervisor owns the segment).

    :raises InvalidChannelLayerError: the entry is malformed, its backend does not import or
        refuses ``CONFIG``. The layer's own errors (e.g. ``SegmentMissing``) propagate.
    """
    spec = layer_spec(alias)
    try:
        layer = spec.build(spec.attach_config(supervised=supervised))
    except LayerSettingsError as exc:
        raise InvalidChannelLayerError(str(exc)) from None
    return ChannelLayerWrapper(layer, alias, spec.routing)


def unique_test_prefix() -> str:
    """A layer prefix no site and no other test uses (pid + random)."""
    return f"t{os.getpid()}_{uuid.uuid4().hex[:10]}"


def backend_parameters(alias: str) -> set[str]:
    """The keyword arguments the alias's BACKEND accepts (empty if it takes ``**kwargs`` only).

    :raises InvalidChannelLayerError: the entry is malformed or its backend does not import.
    """
    try:
        return layer_spec(alias).parameters()
    except LayerSettingsError as exc:
        raise InvalidChannelLayerError(str(exc)) from None


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
        return self._wrap(alias, build_layer(alias, layer_spec(alias).config))

    def make_test_backend(self, alias: str, **overrides: Any) -> ChannelLayerWrapper:
        """Build a test layer from ``TEST_CONFIG`` (falling back to ``CONFIG``) plus ``overrides``.

        For a backend that takes ``prefix``/``create`` (``asgi_ipc``), the layer is created on a
        prefix of its own (unique per call unless ``overrides`` names one) - never ``CONFIG``'s or
        the backend's default, which a real site may be using, and never one another test shares
        - and is closed (removing its segment) when the wrapper is garbage-collected or the
        process exits, if not before.
        """
        spec = layer_spec(alias)
        config = spec.test_arguments()
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
        return ChannelLayerWrapper(layer, alias, layer_spec(alias).routing)

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
