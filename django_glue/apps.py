"""The ``django_glue`` Django app (add ``"django_glue"`` to ``INSTALLED_APPS``)."""
from django.apps import AppConfig


class DjangoGlueConfig(AppConfig):
    """Registers the system checks for ``CHANNEL_LAYERS`` and provides ``runworker``."""

    name = "django_glue"
    verbose_name = "Channels (django_glue)"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)

        self.own_runserver()

    @staticmethod
    def own_runserver() -> None:
        """Make ``runserver`` ours even when ``django.contrib.staticfiles`` comes first.

        Django takes a command from the first app in ``INSTALLED_APPS`` that has it, and Channels 1
        users list ``staticfiles`` before ``channels``; Channels 1 patched staticfiles' command the
        same way. Ours serves static files itself, as staticfiles' does.
        """
        from django.apps import apps

        if apps.is_installed("django.contrib.staticfiles"):
            from django.contrib.staticfiles.management.commands import runserver as static_runserver

            from .management.commands import runserver

            static_runserver.Command = runserver.Command  # type: ignore[misc]


class ChannelsConfig(DjangoGlueConfig):
    """Channels 1's name (``"channels.apps.ChannelsConfig"`` in ``INSTALLED_APPS``).

    A subclass with ``default = False`` rather than a second name for the class, so Django still
    picks :class:`DjangoGlueConfig` for a plain ``"django_glue"`` entry.
    """

    default = False
