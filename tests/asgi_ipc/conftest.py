"""Fixtures for the layer tests: every test gets its own prefix and removes its segment."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from asgi_ipc import IPCChannelLayer
from asgi_ipc.layout import fastpath_problem
from asgi_ipc.segment import SHM_DIR


@pytest.fixture
def prefix() -> str:
    """A prefix no other test (or test run) uses."""
    return f"t{os.getpid()}_{uuid.uuid4().hex[:10]}"


def _fastpath_built() -> bool:
    """Whether the C fast path is built, and for this segment layout (else layers run pure)."""
    try:
        import asgi_ipc._fastpath as module
    except ImportError:
        return False
    return fastpath_problem(module) is None


@pytest.fixture(params=["c", "pure"])
def impl(request, monkeypatch) -> str:
    """Run layer tests on the C fast path and on the pure-Python reference implementation
    (and, where a module parametrises ``impl`` with ``"redis"``, on ``RedisChannelLayer``)."""
    if request.param == "redis":
        request.getfixturevalue("redis_server")
        return "redis"
    if request.param == "c":
        if not _fastpath_built():
            pytest.skip("the C fast path is not built, or built for another layout (pip install -e .)")
        monkeypatch.delenv("ASGI_IPC_PURE", raising=False)
    else:
        monkeypatch.setenv("ASGI_IPC_PURE", "1")
    return request.param


@pytest.fixture
def make_layer(prefix, impl, request):
    """Factory for layers on the test's prefix; all are closed (and the segment removed)."""
    if impl == "redis":
        yield request.getfixturevalue("make_redis_layer")
        return
    made: list[IPCChannelLayer] = []

    def make(**kwargs) -> IPCChannelLayer:
        kwargs.setdefault("prefix", prefix)
        kwargs.setdefault("message_memory", 4 * 2**20)
        kwargs.setdefault("channels", 256)
        kwargs.setdefault("groups", 64)
        kwargs.setdefault("group_members", 2048)
        kwargs.setdefault("max_message_size", 1024 * 1024)
        kwargs.setdefault("receive_timeout", 2.0)
        layer = IPCChannelLayer(**kwargs)
        made.append(layer)
        return layer

    yield make
    for layer in reversed(made):
        layer.close()
    leftover = [n for n in os.listdir(SHM_DIR) if n == f"asgi_ipc.{prefix}"]
    assert not leftover, f"test left {leftover} in {SHM_DIR}"


@pytest.fixture
def layer(make_layer) -> IPCChannelLayer:
    """A layer with the conformance suite's settings: expiry 1 s, capacity 5."""
    return make_layer(expiry=1, group_expiry=2, capacity=5)


# -- Redis ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_server():
    """One throwaway ``redis-server`` per test process (tests keep apart by key prefix)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    from benchmarks.redis_server import RedisServer

    with RedisServer() as server:
        yield server


# Sizes of the shared-memory segment, which a Redis layer does not have.
_SHM_ONLY = ("message_memory", "channels", "groups", "group_members", "waiters", "create",
             "lock_timeout")


@pytest.fixture
def make_redis_layer(prefix, redis_server):
    """Factory for ``RedisChannelLayer``s on the test's prefix; flushed and closed afterwards."""
    from asgi_ipc.redis import RedisChannelLayer

    made: list[RedisChannelLayer] = []

    def make(**kwargs) -> RedisChannelLayer:
        for name in _SHM_ONLY:
            kwargs.pop(name, None)
        kwargs.setdefault("hosts", [f"redis://127.0.0.1:{redis_server.port}/0"])
        kwargs.setdefault("prefix", prefix)
        kwargs.setdefault("receive_timeout", 2.0)
        layer = RedisChannelLayer(**kwargs)
        made.append(layer)
        return layer

    yield make
    for layer in reversed(made):
        try:
            layer.flush()
        finally:
            layer.close()
