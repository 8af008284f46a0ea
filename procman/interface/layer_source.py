"""Find the channel layer an interface process should serve: ``module:attribute`` or settings."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from asgi_ipc.cluster import backend_for as cluster_backend_for

__all__ = ["LayerSourceError", "layer_from_reference", "layer_from_settings"]


class LayerSourceError(Exception):
    """The layer could not be found or built; the message says what to fix."""


def layer_from_reference(reference: str) -> Any:
    """Import ``package.module:attribute.path`` and return that object.

    The current directory is put first on ``sys.path`` (as ``daphne`` did) so ``mysite.asgi:layer``
    works from the project root.
    """
    module_name, sep, attribute_path = reference.partition(":")
    if not sep or not module_name or not attribute_path:
        raise LayerSourceError(
            f"layer {reference!r} must look like 'package.module:attribute' "
            "(e.g. 'mysite.asgi:channel_layer'), or use --settings"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LayerSourceError(f"cannot import {module_name!r} for layer {reference!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. the layer refuses to attach while importing
        raise LayerSourceError(
            f"importing {module_name!r} for layer {reference!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise LayerSourceError(
                f"{module_name!r} has no attribute path {attribute_path!r} (missing {part!r})"
            ) from exc
    return target


def layer_from_settings(settings_module: str, alias: str = "default") -> Any:
    """Build ``CHANNEL_LAYERS[alias]`` of a Django settings module (``BACKEND`` + ``CONFIG``).

    Only the settings are read; Django apps are not set up (this process runs no Django code).
    The layer is attached, never created, unless ``CONFIG`` says ``create``.
    """
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        from django.conf import settings  # noqa: PLC0415

        layers = getattr(settings, "CHANNEL_LAYERS", None)
    except ImportError as exc:
        raise LayerSourceError(f"cannot load settings {settings_module!r}: {exc}") from exc
    if not isinstance(layers, dict) or alias not in layers:
        raise LayerSourceError(
            f"settings {settings_module!r} define no CHANNEL_LAYERS[{alias!r}]; add one with "
            "'BACKEND' (e.g. 'asgi_ipc.IPCChannelLayer') and 'CONFIG'"
        )
    entry = layers[alias]
    backend = entry.get("BACKEND") if isinstance(entry, dict) else None
    if not isinstance(backend, str) or "." not in backend:
        raise LayerSourceError(
            f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] must be a dotted path like "
            f"'asgi_ipc.IPCChannelLayer', got {backend!r}"
        )
    module_name, _, class_name = backend.rpartition(".")
    try:
        layer_class = getattr(importlib.import_module(module_name), class_name)
        layer_class = cluster_backend_for(layer_class)  # under `procman run --cluster`
    except (ImportError, AttributeError) as exc:
        raise LayerSourceError(f"cannot import layer backend {backend!r}: {exc}") from exc
    config = dict(entry.get("CONFIG", {}) or {})
    # An interface process only ever attaches: the site's supervisor (or whichever process
    # CONFIG names with create=True) owns the segment. Creating one here - e.g. when restarted
    # after the segment vanished - would split the site across two segments, and the creator
    # would remove it under everyone else when it stopped.
    config.setdefault("create", False)
    try:
        return layer_class(**config)
    except TypeError as exc:
        raise LayerSourceError(f"bad CONFIG for {backend!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. no segment to attach to
        raise LayerSourceError(
            f"building {backend!r} from CHANNEL_LAYERS[{alias!r}] failed: {type(exc).__name__}: {exc}"
        ) from exc
