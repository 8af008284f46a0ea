"""Signals sent by the worker (the Channels 1 set, for Django >= 4 which has no ``providing_args``).

* ``consumer_started(sender, environ)`` - before each consumer runs (also arms the send buffer).
* ``consumer_finished(sender)`` - after each consumer, even if it raised (flushes the send buffer
  and closes stale database connections).
* ``worker_ready(sender)`` - once per worker loop (per thread), sender = the :class:`Worker`.
* ``worker_process_ready(sender)`` - once per ``runworker`` process.
"""
from __future__ import annotations

from django.db import close_old_connections
from django.dispatch import Signal

__all__ = ["consumer_started", "consumer_finished", "worker_ready", "worker_process_ready"]

consumer_started = Signal()
consumer_finished = Signal()
worker_ready = Signal()
worker_process_ready = Signal()

# Long-running workers keep database connections across messages exactly as Django keeps them
# across requests: CONN_MAX_AGE and broken connections are honoured after every consumer (once is
# enough: the next consumer starts on what this check left, and views get Django's own checks).
consumer_finished.connect(close_old_connections, dispatch_uid="django_glue.close_old_connections")
