"""The scale-out path of a Channels 4 site: the same demo application under ``procman run`` with its
``CHANNEL_LAYERS`` switched to ``channels_redis`` on a real ``redis-server``. A chat message sent
over a WebSocket of one Daphne process reaches a WebSocket of the other through Redis, and nothing
is ever created in /dev/shm."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import psutil
import pytest

from procman import exitcodes

from .cluster_redis import needs_redis_server, redis_server  # noqa: F401 (fixture)
from .procs import REPO, Site, connect_one_per_server, processes_by_role, unique_prefix

pytest.importorskip("daphne", reason="the Channels 4 demo needs Daphne (pip install 'asgi_ipc[channels4]')")
pytest.importorskip("channels_redis", reason="this test needs channels_redis (pip install channels-redis)")
websockets = pytest.importorskip("websockets")

pytestmark = needs_redis_server

SHM = "/dev/shm"


def shm_entries_naming(prefix: str) -> list[str]:
    """What in /dev/shm carries this run's prefix (other tests' segments are not ours to judge)."""
    return [name for name in os.listdir(SHM) if prefix in name]


@pytest.fixture
def redis_demo(tmp_path, redis_server):  # noqa: F811 (fixture)
    prefix = unique_prefix("c4redis")
    s = Site(["run", "--settings", "procman.demo_channels4.settings", "--interfaces", "2", "--bind", "127.0.0.1:0"],
             REPO, prefix, tmp_path / "ctl",
             {"PROCMAN_DEMO_PREFIX": prefix,
              "PROCMAN_DEMO_CHANNEL_LAYER": f"redis://127.0.0.1:{redis_server.port}/0"})
    yield s, redis_server
    s.close()


def redis_keys(port: int, prefix: str) -> list[bytes]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        return client.keys(f"{prefix}*")
    finally:
        client.close()


def test_message_crosses_daphne_processes_through_redis_and_nothing_is_in_dev_shm(redis_demo):
    s, server = redis_demo
    url = s.wait_ready()
    servers = {p.pid for p in processes_by_role(s)["daphne"]}
    assert len(servers) == 2
    children = s.descendants()
    assert shm_entries_naming(s.prefix) == [], "channels_redis must not create anything in /dev/shm"
    origin = url.rstrip("/")

    async def chat() -> tuple[dict, list[dict], list[bytes]]:
        by_pid = await connect_one_per_server(url.replace("http://", "ws://") + "ws/chat/lobby/", 2, "server",
                                              origin=origin)
        try:
            keys = redis_keys(server.port, s.prefix)  # the room's group lives in Redis
            first, second = by_pid.values()
            await first.send(json.dumps({"message": "hello through redis"}))
            got = [json.loads(await asyncio.wait_for(sock.recv(), 10)) for sock in (first, second)]
            return by_pid, got, keys
        finally:
            for sock in by_pid.values():
                await sock.close()

    by_pid, got, keys = asyncio.run(chat())
    assert set(by_pid) == servers
    assert [g["message"] for g in got] == ["hello through redis"] * 2
    # received by one process, delivered by each process to its own socket
    assert [g["to"] for g in got] == list(by_pid) and len({g["via"] for g in got}) == 1
    assert any(b"chat_lobby" in key for key in keys), f"no group of the room in Redis: {keys}"

    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK
    psutil.wait_procs(children, timeout=10)
    assert not any(p.is_running() for p in children)
    assert shm_entries_naming(s.prefix) == [] and not s.segment_exists()
    assert "could not reclaim" not in s.output  # no shared-memory layer: nothing to reclaim, no error
    assert not list(s.control_dir.glob("*.sock"))


def test_a_layer_setting_that_is_not_a_redis_url_is_refused_with_what_to_give(tmp_path):
    prefix = unique_prefix("c4redis")
    s = Site(["run", "--settings", "procman.demo_channels4.settings", "--interfaces", "1", "--bind", "127.0.0.1:0"],
             REPO, prefix, tmp_path / "ctl", {"PROCMAN_DEMO_PREFIX": prefix, "PROCMAN_DEMO_CHANNEL_LAYER": "127.0.0.1:6379"})
    try:
        code = s.wait(60)
        assert code != exitcodes.OK
        assert "PROCMAN_DEMO_CHANNEL_LAYER='127.0.0.1:6379' is not a Redis URL" in s.output
        assert "redis://host:port/db" in s.output
        assert shm_entries_naming(prefix) == []
    finally:
        s.close()
