from django.db import models


class Thing(models.Model):
    """A bound model: every socket on /things/<room>/ sees the things of its room."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)


# Registered from models.py, as Channels 1 projects often did: every process of the site imports
# it, and the binding's "things.Thing" label is resolved lazily (the model is still loading here).
from .bindings import ThingBinding  # noqa: E402,F401
