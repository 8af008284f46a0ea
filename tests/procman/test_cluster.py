"""``procman run --cluster``: two simulated machines (two sites with their own prefixes and ports)
and one real ``redis-server``, real WebSocket and HTTP clients."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from procman import control, exitcodes

from .cluster_redis import module_redis_server, needs_redis_server, redis_server  # noqa: F401 - fixtures
from .procs import HELLOSITE, Site, http_get, unique_prefix, wait_for

pytestmark = needs_redis_server

ROUTING = {"HELLOSITE_ROUTING": "hellosite.cluster_routing.channel_routing"}
# Commands the idle link issues by itself, once a second or so (health check with the machines set, shared-name refresh,
# the shared lists' blocking pop: CLIENT ID, a POP script with its LPOP, BLPOP), and the test's INFO.
IDLE_COMMANDS = {"ping", "zadd", "zremrangebyscore", "zcard", "smembers", "client|id", "blpop", "evalsha",
                 "lpop", "script|load", "info"}


@contextlib.contextmanager
def cluster_of(redis_port: int, site_dir: Path, tmp_path: Path, flags: list[str],
               env: Callable[[str], dict[str, str]]) -> Iterator[Callable[..., list[Site]]]:
    """Simulated machines of one site (one cluster name): yields ``start(count, *more_flags)``,
    which starts ``count`` ``procman run --cluster`` of ``site_dir`` (each with its own prefix,
    control directory and ``env(prefix)``) and returns them ready, their links connected. After,
    every one still running is stopped gracefully, all at once, and must stop cleanly: exit code
    0 and its segment gone from /dev/shm (one a test killed or stopped itself is the test's to judge)."""
    started: list[Site] = []
    name = f"c{uuid.uuid4().hex[:8]}"

    def start(count: int, *more_flags: str) -> list[Site]:
        sites = []
        for _ in range(count):
            prefix = unique_prefix("cl")
            s = Site(["run", "--bind", "127.0.0.1:0", *flags, "--cluster", f"redis://127.0.0.1:{redis_port}/0",
                      "--cluster-name", name, *more_flags], site_dir, prefix, tmp_path / f"c{len(started)}", env(prefix))
            started.append(s)
            sites.append(s)
        for s in sites:
            s.url = s.wait_ready()
            s.wait_line("cluster link: connected to Redis")
        return sites

    try:
        yield start
    finally:
        stops = stop_together(started)
    for s, code, segment_left in stops:
        assert code == exitcodes.OK, f"{s.prefix} stopped with exit code {code}; output:\n{s.output}"
        assert not segment_left, f"{s.prefix}'s segment left in /dev/shm"


def stop_together(sites: list[Site], timeout: float = 60.0) -> list[tuple[Site, int, bool]]:
    """SIGTERM every site still running, then wait for each, so their graceful stops overlap.

    Returns ``(site, exit code, segment left in /dev/shm)`` for each site stopped here (those that
    had ended already are left out). Every site is closed before this returns or raises: one that
    did not stop within ``timeout`` seconds is killed and its segment removed."""
    running = [s for s in sites if s.process.poll() is None]
    try:
        for s in running:
            s.signal(signal.SIGTERM)
        return [(s, s.wait(timeout), s.segment_exists()) for s in running]
    finally:
        for s in sites:
            s.close()


@pytest.fixture
def machines(tmp_path, redis_server):
    """Start simulated machines of one site: ``machines(2)`` -> two ready :class:`Site` s."""
    with cluster_of(redis_server.port, HELLOSITE, tmp_path, ["--workers", "1"], lambda prefix: ROUTING) as start:
        yield lambda count=2, shared="thumbnail": start(count, "--cluster-shared", shared)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, module_redis_server):
    """Two machines (shared channel ``thumbnail``) started once for the tests that only use them.

    Sharing is safe: those tests run one after another in a worker; none kills, stops or reloads a
    machine or halts its Redis; each closes the WebSockets it opens (a closed one leaves the group)
    and judges only the output lines, broadcasts and Redis commands that came after it began."""
    with cluster_of(module_redis_server.port, HELLOSITE, tmp_path_factory.mktemp("pair"), ["--workers", "1"],
                    lambda prefix: ROUTING) as start:
        yield start(2, "--cluster-shared", "thumbnail")


def commandstats(client) -> dict[str, int]:
    """Calls per command so far (``INFO commandstats``)."""
    return {key.removeprefix("cmdstat_"): value["calls"] for key, value in client.info("commandstats").items()}


@pytest.fixture
def redis_client(module_redis_server):
    """A client of the module's Redis, connected before any count is taken (its handshake is not
    counted as traffic)."""
    import redis

    client = redis.Redis(port=module_redis_server.port)
    client.ping()
    yield client
    client.close()


def cluster_status(site: Site) -> dict:
    """The ``cluster`` entry of the supervisor's status, asked over its control socket: what
    ``procman status --json`` prints, without starting a CLI process for every poll."""
    return control.request(site.control_dir / f"{site.prefix}.sock", "status", timeout=10)["cluster"]


def ws(site: Site):
    from websockets.sync.client import connect

    return connect(site.url.replace("http://", "ws://"), open_timeout=10)


def recv(conn, timeout: float = 10.0) -> str:
    return conn.recv(timeout=timeout)


def broadcasts_out(site: Site) -> int:
    return cluster_status(site).get("counts", {}).get("broadcasts_out", 0)


def each_broadcast_reaches_both_once(on_a, on_b, redis_client, say, hear) -> None:
    """Three broadcasts, from a, b and a: each socket hears each once (the next frame it gets is
    the next broadcast, no copy), and each costs one Redis PUBLISH. ``say(text)`` is the site's
    message that broadcasts ``text``; ``hear(conn)`` the text of the next broadcast received."""
    before = commandstats(redis_client).get("publish", 0)
    for sender, text in ((on_a, "from-a"), (on_b, "from-b"), (on_a, "third")):
        sender.send(say(text))
        assert hear(on_a) == text and hear(on_b) == text
    assert commandstats(redis_client).get("publish", 0) - before == 3


def test_broadcast_reaches_members_on_both_machines_with_one_publish(pair, redis_client):
    a, b = pair
    sent_before = broadcasts_out(a)  # no other test broadcasts from the pair, so a late report is no matter
    with ws(a) as on_a, ws(b) as on_b:
        each_broadcast_reaches_both_once(on_a, on_b, redis_client, lambda text: f"say:{text}", recv)
    wait_for(lambda: broadcasts_out(a) - sent_before >= 2 and cluster_status(a).get("machines") == 2,
             what="a's link to report its broadcasts and both machines")
    status = json.loads(a.cli("status", "--name", a.prefix, "--json").stdout)
    text = a.cli("status", "--name", a.prefix).stdout
    assert re.search(r"cluster: connected for \S+ to redis://127\.0\.0\.1:\d+/0 as .*, 2 machine\(s\) seen, relayed out \d+, in \d+, drops 0", text), text
    assert status["cluster"]["state"] == "connected" and status["cluster"]["machines"] == 2
    assert any(p["name"] == "cluster.1" for p in status["processes"])


def test_http_and_a_connections_own_messages_use_no_redis(pair, module_redis_server, redis_client):
    a, b = pair
    with ws(a) as on_a:
        before = commandstats(redis_client)
        for _ in range(20):
            assert http_get(a.url)[0] == 200
            on_a.send("echo:mine")
            assert recv(on_a) == "mine"
        after = commandstats(redis_client)
    used = {cmd: calls - before.get(cmd, 0) for cmd, calls in after.items()
            if cmd not in IDLE_COMMANDS and calls != before.get(cmd, 0)}
    assert used == {}, f"commands on the request path: {used}"
    # Only the link holds connections to Redis; interfaces and workers hold none.
    for proc in a.descendants():
        role = proc.environ().get("PROCMAN_ROLE")
        ports = {c.raddr.port for c in proc.net_connections("tcp") if c.raddr}
        assert (module_redis_server.port in ports) == (role == "cluster"), (role, ports)


@pytest.mark.parametrize("shared", ["thumbnail", "thumb*"])
def test_shared_job_is_taken_once_by_some_machine(request, shared):
    # "thumb*": the links learn the channel's name from the first push (the shared-names set), so
    # those machines must be new; "thumbnail" is the pair's own shared channel.
    a, b = request.getfixturevalue("pair") if shared == "thumbnail" else request.getfixturevalue("machines")(2, shared)
    marks = {s: len(s.lines) for s in (a, b)}  # the jobs taken before this test are not its own
    jobs = [str(n) for n in range(8)]
    with ws(a) as on_a:
        for n in jobs:
            on_a.send(f"job:{n}")
            assert recv(on_a) == f"queued {n}"

    def taken() -> list[str]:
        return [m.group(1) for s in (a, b) for line in s.lines[marks[s]:]
                if (m := re.search(r"job (\d+) taken by", line))]

    wait_for(lambda: len(taken()) >= len(jobs), what="every shared job to be taken")
    with pytest.raises(AssertionError):  # and none is taken twice (bounded look for a duplicate)
        wait_for(lambda: len(taken()) > len(jobs), timeout=1.5, what="a duplicate")
    assert sorted(taken(), key=int) == jobs


def test_killed_machine_leaves_the_other_serving(machines):
    a, b = machines(2)
    with ws(b) as on_b:
        a.kill_everything()  # kill -9 of a's whole procman tree
        assert a.process.poll() is not None
        assert http_get(b.url)[0] == 200
        on_b.send("say:still-here")
        assert recv(on_b) == "still-here"
        on_b.send("job:1")
        assert recv(on_b) == "queued 1"
        b.wait_line("job 1 taken by")  # shared jobs now all land on b
    # b's link stayed connected (its status is rewritten every second: wait for a fresh one).
    wait_for(lambda: cluster_status(b)["state"] == "connected", 10, "b's link to report connected")
    b.signal(signal.SIGTERM)
    assert b.wait(60) == exitcodes.OK
    assert b.descendants() == [] and not b.segment_exists()


def test_redis_restart_logs_one_error_keeps_local_traffic_and_resumes(machines, redis_server):
    a, b = machines(2)
    with ws(a) as on_a, ws(b) as on_b:
        redis_server.halt()
        a.wait_line("cluster link: error: Redis at redis://127.0.0.1")
        assert http_get(a.url)[0] == 200  # local traffic continues
        on_a.send("say:local-only")
        assert recv(on_a) == "local-only"  # local members still get the broadcast
        redis_server.resume()
        mark = len(a.lines)
        a.wait_line("cluster link: connected to Redis", after=mark - 50 if mark > 50 else 0)
        wait_for(lambda: a.output.count("cluster link: connected to Redis") >= 2, what="a to reconnect")
        wait_for(lambda: b.output.count("cluster link: connected to Redis") >= 2, what="b to reconnect")

        def relayed() -> bool:
            # b's subscription may come back a moment after its PING does: retry the broadcast.
            on_a.send("say:after-restart")
            assert recv(on_a) == "after-restart"
            try:
                return recv(on_b, timeout=1.0) == "after-restart"
            except TimeoutError:
                return False

        wait_for(relayed, timeout=20, what="a broadcast to cross machines again")
    assert a.output.count("cluster link: error: Redis at") == 1  # one clear error, not one per retry


def test_redis_absent_at_start_the_site_serves_locally_and_says_why(tmp_path):
    from benchmarks.redis_server import free_loopback_port

    s = Site(["run", "--bind", "127.0.0.1:0", "--workers", "1", "--cluster",
              f"redis://127.0.0.1:{free_loopback_port()}/0"], HELLOSITE, unique_prefix("cl"), tmp_path / "ctl", ROUTING)
    try:
        url = s.wait_ready()
        s.wait_line("cluster link: error: Redis at redis://127.0.0.1")
        assert http_get(url)[0] == 200
        s.url = url
        with ws(s) as conn:  # a connection's own messages and local broadcasts work
            conn.send("echo:alone")
            assert recv(conn) == "alone"
            conn.send("say:to-local-members")
            assert recv(conn) == "to-local-members"
        wait_for(lambda: cluster_status(s).get("state") == "disconnected", what="status to show the link disconnected")
        assert json.loads(s.cli("status", "--name", s.prefix, "--json").stdout)["cluster"]["state"] == "disconnected"
        s.signal(signal.SIGTERM)
        assert s.wait(60) == exitcodes.OK
        assert s.output.count("cluster link: error") == 1 and not s.segment_exists()
    finally:
        s.close()
