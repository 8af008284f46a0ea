"""What the cluster tests share: their skip conditions and a ``redis-server`` of their own
(function-scoped: some tests stop and restart it)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("redis", reason="the cluster link needs redis-py (pip install 'asgi_ipc[redis]')")

#: Apply to a module with ``pytestmark = needs_redis_server``.
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                        reason="redis-server is not installed (Debian: apt-get install redis-server)")


@pytest.fixture
def redis_server():
    """A fresh ``redis-server`` on a free loopback port, stopped (and its directory removed) after."""
    from benchmarks.redis_server import RedisServer

    with RedisServer() as server:
        yield server
