"""The database check after each consumer: done once per consumer, on the real connection.

Django's ``close_if_unusable_or_obsolete`` clears ``health_check_done`` on an open connection
whenever it checks it, so setting that flag and reading it back tells whether a check ran.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from django.core.signals import request_finished
from django.db import connection

from django_glue.asgi import ChannelLayerWrapper
from django_glue.routing import route
from django_glue.signals import consumer_finished, consumer_started
from django_glue.worker import Worker


@pytest.fixture
def open_connection() -> Iterator[Any]:
    with connection.cursor() as cursor:  # the in-memory test database stays open
        cursor.execute("SELECT 1")
    assert connection.connection is not None
    yield connection


def checked(conn: Any, run: Any) -> bool:
    conn.health_check_done = True
    run()
    return not conn.health_check_done


def test_a_consumer_without_a_request_is_checked(open_connection: Any) -> None:
    def consumer() -> None:
        consumer_started.send(sender=None, environ={})
        consumer_finished.send(sender=None)

    assert checked(open_connection, consumer)


def test_a_request_cycle_inside_the_consumer_is_not_checked_twice(open_connection: Any) -> None:
    consumer_started.send(sender=None, environ={})
    assert checked(open_connection, lambda: request_finished.send(sender=None))  # Django's check
    assert not checked(open_connection, lambda: consumer_finished.send(sender=None))
    # The skip lasts one consumer only.
    consumer_started.send(sender=None, environ={})
    assert checked(open_connection, lambda: consumer_finished.send(sender=None))


def test_a_request_before_the_consumer_does_not_excuse_it(open_connection: Any) -> None:
    request_finished.send(sender=None)
    consumer_started.send(sender=None, environ={})
    assert checked(open_connection, lambda: consumer_finished.send(sender=None))


def test_through_the_worker(open_connection: Any, ipc_layer: Any) -> None:
    seen: list[bool] = []

    def consumer(message: Any) -> None:
        seen.append(True)

    wrapper = ChannelLayerWrapper(ipc_layer, "default", [route("test.plain", consumer)])
    wrapper.router.check_default()
    worker = Worker(wrapper)
    assert checked(open_connection, lambda: worker.handle("test.plain", {"n": 1})) and seen
    # A view: Django's request_finished checks, the worker does not check again, and the reply
    # still goes out.
    request = {
        "reply_channel": "test.reply!1", "http_version": "1.1", "method": "GET", "path": "/hello/",
        "query_string": b"", "headers": [[b"host", b"localhost"]], "body": b"",
        "client": ["127.0.0.1", 5000], "server": ["127.0.0.1", 80],
    }
    calls: list[Any] = []

    def finished(**kwargs: Any) -> None:
        calls.append(kwargs)

    request_finished.connect(finished, dispatch_uid="test_signals.calls")
    try:
        assert checked(open_connection, lambda: worker.handle("http.request", request))
    finally:
        request_finished.disconnect(dispatch_uid="test_signals.calls")
    assert len(calls) == 1
    _, reply = ipc_layer.receive(["test.reply!"])
    assert reply is not None and reply["status"] == 200
