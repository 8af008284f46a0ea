"""The ``django_glue`` Django app (add ``"django_glue"`` to ``INSTALLED_APPS``)."""
from django.apps import AppConfig


class DjangoGlueConfig(AppConfig):
    """Registers the system checks for ``CHANNEL_LAYERS`` and provides ``runworker``."""

    name = "django_glue"
    verbose_name = "Channels (django_glue)"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)


class ChannelsConfig(DjangoGlueConfig):
    """Channels 1's name (``"channels.apps.ChannelsConfig"`` in ``INSTALLED_APPS``).

    A subclass with ``default = False`` rather than a second name for the class, so Django still
    picks :class:`DjangoGlueConfig` for a plain ``"django_glue"`` entry.
    """

    default = False
