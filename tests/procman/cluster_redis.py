"""What the cluster tests share: their skip conditions and ``redis-server`` s of their own.

A ``redis-server`` costs about 0.1 s to start and 0.1 s to stop, so one per test is cheap; the
module-scoped one exists for the machines a module shares between its tests (they must outlive
each test). Tests keep out of each other's keys by their cluster names (one per set of machines).
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("redis", reason="the cluster link needs redis-py (pip install 'asgi_ipc[redis]')")

#: Apply to a module with ``pytestmark = needs_redis_server``.
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                        reason="redis-server is not installed (Debian: apt-get install redis-server)")


@pytest.fixture
def redis_server():
    """A fresh ``redis-server`` on a free loopback port, stopped (and its directory removed) after.
    Function-scoped: a test may stop and restart it (``halt``/``resume``)."""
    from benchmarks.redis_server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_redis_server():
    """One ``redis-server`` for a module's tests, stopped after its last test. Never halt it."""
    from benchmarks.redis_server import RedisServer

    with RedisServer() as server:
        yield server
