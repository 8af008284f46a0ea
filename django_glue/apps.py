"""The ``django_glue`` Django app (add ``"django_glue"`` to ``INSTALLED_APPS``)."""
from django.apps import AppConfig


class DjangoGlueConfig(AppConfig):
    """Registers the system checks for ``CHANNEL_LAYERS`` and provides ``runworker``."""

    name = "django_glue"
    verbose_name = "Channels (django_glue)"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
