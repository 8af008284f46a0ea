"""The layer object an interface server loads when ``runserver`` or the live server starts one.

``python -m procman.interface django_glue.interface_layer:channel_layer --fd N`` with, in the
environment, ``DJANGO_SETTINGS_MODULE``, ``DJANGO_GLUE_LAYER`` (the ``CHANNEL_LAYERS`` alias,
default ``"default"``) and, for a test layer, ``DJANGO_GLUE_LAYER_PREFIX`` (its prefix; the
settings' ``TEST_CONFIG`` then applies). The layer is always attached, never created: the process
that started the interface server owns the segment.
"""
from __future__ import annotations

import os
from typing import Any

import django

__all__ = ["ALIAS_ENV", "PREFIX_ENV", "attached_layer", "channel_layer"]

ALIAS_ENV = "DJANGO_GLUE_LAYER"
PREFIX_ENV = "DJANGO_GLUE_LAYER_PREFIX"


def attached_layer(alias: str, prefix: str | None) -> Any:
    """Attach to ``alias``'s layer (``CONFIG``), or to the test layer on ``prefix`` (``TEST_CONFIG``).

    Never creates one (:meth:`asgi_ipc.layer_settings.LayerSpec.attach_config`, as under a
    supervisor): the segment belongs to the site or the test that made it.
    """
    from asgi_ipc.layer_settings import LayerSettingsError

    from .asgi import InvalidChannelLayerError, layer_spec

    spec = layer_spec(alias)
    config = dict(spec.test_arguments(), prefix=prefix) if prefix else spec.config
    try:
        return spec.build(spec.attach_config(config, supervised=True))
    except LayerSettingsError as exc:
        raise InvalidChannelLayerError(str(exc)) from None


def __getattr__(name: str) -> Any:
    # Built when the interface server asks for it, so importing this module has no effect.
    if name == "channel_layer":
        django.setup(set_prefix=False)
        layer = attached_layer(os.environ.get(ALIAS_ENV, "default"), os.environ.get(PREFIX_ENV))
        globals()["channel_layer"] = layer
        return layer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
