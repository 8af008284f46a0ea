"""System checks: every ``CHANNEL_LAYERS`` alias is well-formed and its routing imports."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__ = ["check_channel_layers"]


@checks.register("django_glue")
def check_channel_layers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report (as ``django_glue.E001``) every alias whose settings or routing are broken."""
    from .asgi import layer_spec
    from .routing import Router

    errors: list[checks.CheckMessage] = []
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        return [checks.Warning(
            "settings.CHANNEL_LAYERS is not set, so nothing can use a channel layer",
            hint="add CHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', "
            "'ROUTING': 'myproject.routing.channel_routing'}}",
            id="django_glue.W001",
        )]
    aliases = list(layers) if isinstance(layers, dict) else ["default"]
    for alias in aliases:
        try:
            spec = layer_spec(alias)
            spec.backend_class()
            Router(spec.routing)
        except (ImproperlyConfigured, ImportError, ValueError) as exc:  # LayerSettingsError is a ValueError
            errors.append(checks.Error(str(exc), obj=f"CHANNEL_LAYERS[{alias!r}]", id="django_glue.E001"))
    return errors
