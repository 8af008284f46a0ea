"""Signals sent by the worker (the Channels 1 set, for Django >= 4 which has no ``providing_args``).

* ``consumer_started(sender, environ)`` - before each consumer runs (also arms the send buffer).
* ``consumer_finished(sender)`` - after each consumer, even if it raised (flushes the send buffer
  and closes stale database connections, unless the consumer's own Django request just did).
* ``worker_ready(sender)`` - once per worker loop (per thread), sender = the :class:`Worker`.
* ``worker_process_ready(sender)`` - once per ``runworker`` process.
"""
from __future__ import annotations

import threading
from typing import Any

from django.core.signals import request_finished
from django.db import close_old_connections
from django.dispatch import Signal

__all__ = [
    "consumer_started", "consumer_finished", "worker_ready", "worker_process_ready",
    "close_old_connections_after_consumer",
]

consumer_started = Signal()
consumer_finished = Signal()
worker_ready = Signal()
worker_process_ready = Signal()


class _RequestCycleChecked(threading.local):
    """Per thread: has Django's ``request_finished`` checked the connections since the consumer began?"""

    value = False


_request_cycle_checked = _RequestCycleChecked()


def _consumer_began(**kwargs: Any) -> None:
    _request_cycle_checked.value = False


def _request_cycle_ended(**kwargs: Any) -> None:
    # Connected after Django's own close_old_connections receiver (django.db connects it on
    # import): if that raised, this does not run and the consumer's check below still happens.
    _request_cycle_checked.value = True


def close_old_connections_after_consumer(**kwargs: Any) -> None:
    """Django's ``close_old_connections``, unless this consumer's request cycle just ran it.

    A view consumer ends with Django's ``request_finished``, which has checked every connection
    (``CONN_MAX_AGE``, broken connections) a moment before; checking again costs as much as the
    rest of the worker's dispatch. Other consumers are checked here, as Channels 1 did.
    """
    if _request_cycle_checked.value:
        _request_cycle_checked.value = False
        return
    close_old_connections()


# Long-running workers keep database connections across messages exactly as Django keeps them
# across requests: CONN_MAX_AGE and broken connections are honoured after every consumer (once is
# enough: the next consumer starts on what this check left, and views get Django's own checks).
consumer_started.connect(_consumer_began, dispatch_uid="django_glue.consumer_began")
request_finished.connect(_request_cycle_ended, dispatch_uid="django_glue.request_cycle_ended")
consumer_finished.connect(
    close_old_connections_after_consumer, dispatch_uid="django_glue.close_old_connections"
)
