from django.db import models


class Thing(models.Model):
    """A bound model: every socket on /things/<room>/ sees the things of its room."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    value = models.IntegerField(default=0)
