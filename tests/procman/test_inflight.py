"""A worker killed mid-request: its client gets a 502 at once, not after ``--http-timeout``."""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from asgi_ipc import IPCChannelLayer
from procman.inflight import channel_for

from .procs import HELLOSITE, Site, http_get, processes_by_role, unique_prefix, wait_for


@pytest.fixture
def site(tmp_path):
    made: list[Site] = []

    def start(*args: str) -> Site:
        s = Site(["run", "--bind", "127.0.0.1:0", *args], HELLOSITE, unique_prefix("inf"), tmp_path / "ctl",
                 env={"HELLOSITE_ROUTING": "hellosite.chaos_routing.channel_routing"})
        made.append(s)
        return s

    yield start
    for s in made:
        s.close()


def in_consumer(proc: psutil.Process) -> bool:
    """Whether a worker sleeps inside a consumer (not in the layer's poll)."""
    try:
        with open(f"/proc/{proc.pid}/wchan") as f:
            return "nanosleep" in f.read()
    except OSError:
        return False


def workers(s: Site) -> list[psutil.Process]:
    return processes_by_role(s).get("worker", [])


def test_worker_killed_mid_request_answers_502_at_once(site):
    s = site("--workers", "1")  # the interface's own timeout for an unanswered request is 120 s
    url = s.wait_ready()
    (victim,) = workers(s)
    result: dict[str, object] = {}

    def slow_request() -> None:
        result["response"] = http_get(url + "slow?s=60", timeout=60)
        result["at"] = time.monotonic()

    client = threading.Thread(target=slow_request, daemon=True)
    client.start()
    layer = IPCChannelLayer(prefix=s.prefix, create=False)
    try:
        wait_for(lambda: layer.channel_statistics(channel_for(victim.pid))["messages_pending"] == 1,
                 what="the worker to record the request it serves")
        victim.kill()
        killed_at = time.monotonic()
        client.join(30)
        assert not client.is_alive(), "the client still waits for the killed worker's answer"
        status, body = result["response"]
        waited = result["at"] - killed_at
        assert status == 502, body
        assert b"died" in body and str(victim.pid).encode() in body
        assert waited < 10, f"the 502 came {waited:.1f} s after the kill (the interface would wait 120 s)"
        s.wait_line("died while serving GET /slow: answered 502")
        print(f"\n502 answered {waited * 1000:.0f} ms after the worker was killed")
        # the replacement serves, and the bookkeeping channel of the dead worker is gone
        wait_for(lambda: len(workers(s)) == 1 and workers(s)[0].pid != victim.pid, what="a new worker")
        assert http_get(url)[0] == 200
        assert layer.channel_statistics(channel_for(victim.pid))["messages_pending"] == 0
        assert layer.global_statistics()["dead_processes"] >= 1
    finally:
        layer.close()


def test_worker_killed_in_a_websocket_consumer_sends_nothing_extra(site):
    """The socket whose consumer died stays open and is served by the next worker."""
    sync_client = pytest.importorskip("websockets.sync.client")
    s = site("--workers", "1")
    url = s.wait_ready()
    (victim,) = workers(s)
    ws_url = url.replace("http://", "ws://").rstrip("/") + "/room/"
    with sync_client.connect(ws_url, open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send("sleep 30")
        wait_for(lambda: in_consumer(victim), what="the worker to run the sleeping consumer")
        victim.kill()
        s.wait_line("died: killed by SIGKILL")
        wait_for(lambda: len(workers(s)) == 1 and workers(s)[0].pid != victim.pid, what="a new worker")
        # Whatever the kill made the site send (a 502, a close) was sent when the supervisor reaped
        # the victim, and has had the replacement's whole boot to arrive: nothing at all came.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        ws.send("again")
        assert ws.recv(timeout=15) == "again"
