"""Find the channel layer an interface process should serve: ``module:attribute`` or settings."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from asgi_ipc.layer_settings import DEFAULT_ALIAS, LayerSettingsError, read_layer

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


def layer_from_settings(settings_module: str, alias: str = DEFAULT_ALIAS) -> Any:
    """Build ``CHANNEL_LAYERS[alias]`` of a Django settings module (``BACKEND`` + ``CONFIG``).

    Only the settings module is imported, not ``django.conf`` (this process runs no Django code:
    importing Django and asgiref would cost every interface process's boot a tenth of a second,
    and Django's settings would also switch the process's time zone to ``TIME_ZONE``).
    The entry is judged by :func:`asgi_ipc.layer_settings.read_layer` (``ROUTING`` is not needed
    here) and the layer is attached, never created, unless ``CONFIG`` says ``create``
    (:meth:`~asgi_ipc.layer_settings.LayerSpec.attach_config`).
    """
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        layers = getattr(importlib.import_module(settings_module), "CHANNEL_LAYERS", None)
    except ImportError as exc:
        raise LayerSourceError(f"cannot load settings {settings_module!r}: {exc}") from exc
    try:
        spec = read_layer(layers, alias, where=f"{settings_module}.CHANNEL_LAYERS")
        # An interface process attaches: the site's supervisor (or whichever process CONFIG names
        # with create=True) owns the segment. Creating one here - e.g. when restarted after the
        # segment vanished - would split the site across two segments, and the creator would
        # remove it under everyone else when it stopped.
        config = spec.attach_config()
    except LayerSettingsError as exc:
        raise LayerSourceError(str(exc)) from None
    try:
        return spec.build(config)
    except LayerSettingsError as exc:
        raise LayerSourceError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - e.g. no segment to attach to
        raise LayerSourceError(
            f"building {spec.backend!r} from {spec.where} failed: {type(exc).__name__}: {exc}"
        ) from exc
