"""The ``django_glue.delay`` app (holds the ``DelayedMessage`` table)."""
from django.apps import AppConfig


class DelayConfig(AppConfig):
    name = "django_glue.delay"
    label = "django_glue_delay"
    verbose_name = "Channels delay server (django_glue)"
    default_auto_field = "django.db.models.BigAutoField"
