"""``procman run --cluster`` for a Channels 4 site (ASGI 3 mode, ``asgi_ipc.channels.IPCChannelLayer``):
two simulated machines (two runs of the Channels 4 test site, each with its own segment and port)
and one real ``redis-server``; real WebSocket and HTTP clients."""

from __future__ import annotations

import contextlib
import json
import re
import time

import pytest

from procman import exitcodes

from .cluster_redis import module_redis_server, needs_redis_server  # noqa: F401 - a fixture
from .procs import HELLOSITE, Site, http_get, processes_by_role, unique_prefix, wait_for
from .test_cluster import (  # noqa: F401 - redis_client is a fixture
    broadcasts_out, cluster_of, cluster_status, each_broadcast_reaches_both_once, redis_client,
)

pytest.importorskip("daphne", reason="the ASGI 3 mode needs Daphne (pip install 'asgi_ipc[channels4]')")
pytest.importorskip("channels", reason="the ASGI 3 mode needs Channels 4 (pip install 'asgi_ipc[channels4]')")
pytest.importorskip("websockets")

pytestmark = needs_redis_server
C4SITE = HELLOSITE.with_name("c4site")


@pytest.fixture(scope="module")
def pair(tmp_path_factory, module_redis_server):  # noqa: F811 - a fixture
    """Two Channels 4 sites of one cluster, each with a worker for the shared channel ``tasks``,
    started once for the tests below.

    Sharing is safe: those tests run one after another in a worker; none kills, stops or reloads a
    site or halts its Redis; each uses its own room (its own group), closes its WebSockets, and
    counts only the PUBLISH calls and relayed broadcasts that came after it began."""
    with cluster_of(module_redis_server.port, C4SITE, tmp_path_factory.mktemp("pair"), ["--interfaces", "1"],
                    lambda prefix: {"C4SITE_PREFIX": prefix}) as start:
        yield start(2, "--worker", "tasks", "--cluster-shared", "tasks")


@contextlib.contextmanager
def ws(site: Site, room: str):
    """A WebSocket in ``room``, past the consumer's greeting."""
    from websockets.sync.client import connect

    with connect(site.url.replace("http://", "ws://") + f"ws/{room}/", open_timeout=10) as conn:
        assert "hello" in json.loads(conn.recv(timeout=10))
        yield conn


def text(conn, timeout: float = 10.0) -> str:
    return json.loads(conn.recv(timeout=timeout))["text"]


def test_group_send_reaches_members_on_both_machines_with_one_publish(pair, redis_client):  # noqa: F811
    a, b = pair
    # The other test's workers broadcast from the pair too: count from a report written after this
    # test began, so a late report of theirs is not taken for this test's broadcasts.
    began = time.time()
    report = wait_for(lambda: (got := cluster_status(a)).get("written", 0) >= began and got,
                      what="a's link to report (once a second)")
    sent_before = report["counts"].get("broadcasts_out", 0)
    with ws(a, "lobby") as on_a, ws(b, "lobby") as on_b:
        each_broadcast_reaches_both_once(on_a, on_b, redis_client, lambda said: said, text)
    wait_for(lambda: broadcasts_out(a) - sent_before >= 2 and cluster_status(a).get("machines") == 2,
             what="a's link to report its broadcasts and both machines")
    assert {role for role in processes_by_role(a)} == {"daphne", "worker-tasks", "cluster"}
    assert re.search(r"cluster: connected for \S+ to redis://127\.0\.0\.1:\d+/0 as .*, 2 machine\(s\) seen",
                     a.cli("status", "--name", a.prefix).stdout)


def test_shared_channel_job_is_taken_once_and_its_worker_broadcast_reaches_both(pair):
    # c4site's TaskConsumer (the `tasks` channel) answers the group "room-results" with "done: <text>".
    a, b = pair
    jobs = [f"job{n}" for n in range(6)]
    with ws(a, "results") as on_a, ws(b, "results") as on_b:
        for job in jobs:
            assert http_get(f"{a.url}task?text={job}")[0] == 200
        for conn in (on_a, on_b):  # every job done once, whichever machine's worker took it
            got = sorted(text(conn) for _ in jobs)
            assert got == sorted(f"done: {job}" for job in jobs)
        # And no copy follows (one bounded look for both sockets: frames arriving for on_b while
        # on_a is watched wait in on_b's queue, so each is watched for a second after its last job).
        for conn, look in ((on_a, 1.0), (on_b, 0.05)):
            with pytest.raises(TimeoutError):
                conn.recv(timeout=look)


def test_cluster_is_refused_for_a_layer_that_is_not_shared_memory(tmp_path):
    s = Site(["run", "--bind", "127.0.0.1:0", "--interfaces", "1", "--cluster", "redis://127.0.0.1:1/0"],
             C4SITE, unique_prefix("c4cl"), tmp_path / "ctl", {"C4SITE_LAYER": "memory"})
    try:
        assert s.wait(60) == exitcodes.USAGE
        assert "--cluster relays the shared-memory layer between machines, and this site uses " \
               "channels.layers.InMemoryChannelLayer" in s.output
    finally:
        s.close()
