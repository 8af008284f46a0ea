"""``procman run`` in ASGI 3 mode (a Channels 4 site): real supervisor, real Daphne servers and
Channels workers on the shared-memory Channels 4 layer, real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import psutil
import pytest

from procman import exitcodes

from .procs import (REPO, Site, SteadyLoad, connect_one_per_server, http_get, processes_by_role, python, remove_segment,
                    unique_prefix, wait_for)

pytest.importorskip("daphne", reason="the ASGI 3 mode needs Daphne (pip install 'asgi_ipc[channels4]')")
pytest.importorskip("channels", reason="the ASGI 3 mode needs Channels 4 (pip install 'asgi_ipc[channels4]')")
websockets = pytest.importorskip("websockets")

C4SITE = Path(__file__).with_name("sites") / "c4site"


@pytest.fixture
def site(tmp_path):
    sites: list[Site] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Site:
        prefix = unique_prefix("c4")
        s = Site(["run", "--bind", "127.0.0.1:0", *args], C4SITE, prefix, tmp_path / "ctl",
                 {"C4SITE_PREFIX": prefix, **(env or {})})
        sites.append(s)
        return s

    yield start
    for s in sites:
        s.close()


def ws_url(url: str, room: str) -> str:
    return url.replace("http://", "ws://") + f"ws/{room}/"


def _established(server: psutil.Process, port: int) -> int:
    """How many connections ``server`` has accepted on ``port`` and not closed."""
    try:
        return sum(1 for c in server.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
    except psutil.Error:
        return 0


def test_group_message_crosses_server_processes_then_term_closes_websockets_with_1001_and_lets_a_request_finish(site):
    """One graceful stop checked three ways (one site: a boot and a stop is most of a test's time):
    the open WebSockets get 1001, an HTTP request in flight is answered, the stop is clean."""
    s = site("--interfaces", "2")
    url = s.wait_ready()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert s.segment_exists()
    children = s.descendants()
    assert {r: len(p) for r, p in processes_by_role(s).items()} == {"daphne": 2}
    servers = processes_by_role(s)["daphne"]
    pids = {p.pid for p in servers}
    answer: list[tuple[int, bytes]] = []
    errors: list[str] = []

    def slow() -> None:
        try:
            answer.append(http_get(url + "slow?s=2", timeout=30))
        except OSError as exc:
            errors.append(repr(exc))

    client = threading.Thread(target=slow)

    async def chat() -> tuple[list[dict], list[int | None]]:
        by_pid = await connect_one_per_server(ws_url(url, "lobby"), 2, "hello")
        assert set(by_pid) == pids
        first, second = by_pid.values()
        await first.send("hello across")
        got = [json.loads(await asyncio.wait_for(sock.recv(), 10)) for sock in (first, second)]
        # A request in flight too: the servers hold the two WebSockets, then a third connection.
        client.start()
        wait_for(lambda: sum(_established(server, port) for server in servers) >= 3,
                 what="the slow request to reach a server")
        s.signal(signal.SIGTERM)  # graceful stop with both sockets open and the request running
        codes = []
        for sock in by_pid.values():
            try:
                await asyncio.wait_for(sock.recv(), 20)
            except websockets.ConnectionClosed as closed:
                codes.append(closed.rcvd.code if closed.rcvd else None)
        return got, codes

    got, codes = asyncio.run(chat())
    client.join(30)
    assert {g["text"] for g in got} == {"hello across"} and {g["to"] for g in got} == pids
    assert len({g["from"] for g in got}) == 1  # one process sent, both processes delivered
    assert codes == [1001, 1001]
    assert errors == [] and answer and answer[0][0] == 200 and answer[0][1].startswith(b"slow from")
    assert s.wait(60) == exitcodes.OK
    assert "drain timed out" not in s.output
    assert "could not reclaim" not in s.output  # the supervisor reclaims each exited child's leftovers
    psutil.wait_procs(children, timeout=10)
    assert not any(p.is_running() for p in children)
    assert not s.segment_exists(), "a clean stop must leave nothing in /dev/shm"
    assert not list(s.control_dir.glob("*.sock"))


def test_worker_pool_answers_through_the_layer_and_killed_processes_come_back(site):
    s = site("--interfaces", "2", "--worker", "tasks")
    url = s.wait_ready()
    found = processes_by_role(s)
    assert {r: len(p) for r, p in found.items()} == {"daphne": 2, "worker-tasks": 1}
    victim, survivor = found["daphne"]

    async def task_round_trip(text: str) -> dict:
        async with websockets.connect(ws_url(url, "results")) as sock:
            json.loads(await asyncio.wait_for(sock.recv(), 10))
            status, body = http_get(url + f"task?text={text}")
            assert status == 200 and json.loads(body)["queued"]
            return json.loads(await asyncio.wait_for(sock.recv(), 15))

    answer = asyncio.run(task_round_trip("one"))
    assert answer["text"] == "done: one" and answer["from"] == found["worker-tasks"][0].pid

    victim.kill()
    s.wait_line("died: killed by SIGKILL; restarting in")
    for _ in range(10):  # the other server answers meanwhile (the socket is never closed)
        status, body = http_get(url)
        assert status == 200

    # The worker is killed while the replacement server boots: the two boots overlap.
    worker = found["worker-tasks"][0]
    mark = len(s.lines)
    worker.kill()
    wait_for(lambda: len(processes_by_role(s).get("daphne", [])) == 2 and victim.pid not in {p.pid for p in processes_by_role(s)["daphne"]},
             timeout=60, what="a replacement Daphne process")
    assert survivor.is_running()
    wait_for(lambda: (w := processes_by_role(s).get("worker-tasks")) and w[0].pid != worker.pid, timeout=60,
             what="a replacement worker")
    s.wait_line("listening on tasks", after=mark)
    assert asyncio.run(task_round_trip("two"))["text"] == "done: two"
    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK
    assert "timed out" not in s.output  # the worker and both servers stopped by themselves
    assert "could not reclaim" not in s.output  # nor by the killed ones
    assert not s.segment_exists()


def test_hup_replaces_the_servers_new_before_old_with_no_failed_request(site):
    s = site("--interfaces", "2")
    url = s.wait_ready()
    old = {p.pid for p in processes_by_role(s)["daphne"]}
    # New connections per request, and keep-alive ones (told to reconnect while a server drains)
    with SteadyLoad(url + "slow?s=0.05", threads=2) as load, \
            SteadyLoad(url + "slow?s=0.01", threads=2, keep_alive=True) as kept:
        load.wait_more(20)
        kept.wait_more(20)
        mark = len(s.lines)
        s.signal(signal.SIGHUP)
        s.wait_line("reload: replacing 2 process(es)", after=mark)
        wait_for(lambda: (d := processes_by_role(s).get("daphne", [])) and len(d) == 2
                 and not old & {p.pid for p in d}, timeout=60, what="the old servers to be replaced")
        load.wait_more(20)
        kept.wait_more(20)
    assert load.errors == [] and kept.errors == []
    assert set(load.results) == set(kept.results) == {200}, \
        f"non-200 answers during reload: {sorted(set(load.results) | set(kept.results))}"
    assert s.output.count("draining: stopped accepting") == 2  # each old server drained


def test_a_server_whose_event_loop_blocks_is_aborted_and_replaced(site):
    # The boot is bounded by --boot-timeout (60 s), not by this short heartbeat timeout.
    s = site("--interfaces", "1", "--timeout", "3")
    url = s.wait_ready()
    blocked = processes_by_role(s)["daphne"][0]
    try:
        http_get(url + "block?s=120", timeout=1)
    except OSError:
        pass  # the server is stuck in the view: no answer
    s.wait_line("sent no heartbeat for 3 s: aborting it", 40)
    wait_for(lambda: (d := processes_by_role(s).get("daphne")) and d[0].pid != blocked.pid, timeout=30,
             what="a replacement server")

    def answers() -> bool:
        try:
            return http_get(url, timeout=5)[0] == 200
        except OSError:
            return False

    wait_for(answers, timeout=60, what="the new server to answer")
    assert "Current thread" in s.output or "Thread 0x" in s.output  # faulthandler printed the stack


def test_application_that_does_not_import_stops_the_run_with_its_traceback(site):
    s = site("--interfaces", "2", env={"C4SITE_APPLICATION": "c4site.no_such_asgi.application"})
    code = s.wait(90)
    assert code == exitcodes.BOOT_ERROR
    assert "failed to boot: ModuleNotFoundError: No module named 'c4site.no_such_asgi'" in s.output
    assert s.output.count("Traceback (most recent call last)") == 1, s.output
    assert "restarting in" not in s.output
    assert not s.segment_exists()
    assert s.descendants() == []


def test_status_and_reload_in_asgi3_mode(site):
    s = site("--interfaces", "1", "--worker", "tasks")
    url = s.wait_ready()
    http_get(url)
    status = json.loads(s.cli("status", "--json", "--name", s.prefix).stdout)
    assert [p["name"] for p in status["processes"]] == ["daphne.1", "worker-tasks.1"]
    assert all(p["state"] == "ready" for p in status["processes"])
    assert "tasks" in status["layer"]["channels"]
    wait_for(lambda: json.loads(s.cli("status", "--json", "--name", s.prefix).stdout)["processes"][0]["requests"],
             what="the server to count the request")
    old = processes_by_role(s)["daphne"][0].pid
    reload = s.cli("reload", "--name", s.prefix)
    assert reload.returncode == 0, reload.stderr
    wait_for(lambda: (d := processes_by_role(s).get("daphne")) and d[0].pid != old and len(d) == 1, timeout=60,
             what="the server to be replaced")
    assert http_get(url)[0] == 200
    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK


def test_export_and_doctor_in_asgi3_mode():
    """``export systemd`` and ``doctor`` read the settings of an ASGI 3 site (no site runs: each
    command is its own process, so this is apart from the running-site tests and xdist spreads it)."""
    prefix = unique_prefix("c4")
    try:
        exported = subprocess.run(
            [python(), "-m", "procman", "export", "systemd", "--settings", "c4site.settings", "--worker", "tasks"],
            cwd=C4SITE, capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=str(REPO), C4SITE_PREFIX=prefix))
        assert exported.returncode == 0, exported.stderr
        assert f"# {prefix}.service" in exported.stdout and "--worker tasks" in exported.stdout
        doctor = subprocess.run([python(), "-m", "procman", "doctor", "--settings", "c4site.settings", "--json"],
                                cwd=C4SITE, capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, PYTHONPATH=str(REPO), C4SITE_PREFIX=prefix))
        findings = [f for f in json.loads(doctor.stdout) if f["check"] == "settings"]
        assert findings and all(f["level"] == "ok" for f in findings), findings
        assert any(repr(prefix) in f["message"] for f in findings)
        assert any("ASGI application imports" in f["message"] for f in findings)
        assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")
    finally:
        remove_segment(prefix)


def test_bad_worker_channel_and_channels1_flags_are_refused(site):
    bad = site("--worker", "no spaces!")
    assert bad.wait(60) == exitcodes.USAGE
    assert "worker pool" in bad.output and "Channels 4 workers listen on channel names" in bad.output
    mixed = site("--max-requests", "10")
    assert mixed.wait(60) == exitcodes.USAGE
    assert "--max-requests: Channels 1 worker options, not used in the ASGI 3 mode" in mixed.output
    assert not bad.segment_exists() and not mixed.segment_exists()


def test_missing_daphne_is_one_line_naming_what_to_install(tmp_path):
    prefix = unique_prefix("c4")
    hide = ("import sys; sys.modules['daphne'] = None; from procman.cli import main; "
            "sys.exit(main(['run', '--bind', '127.0.0.1:0']))")
    result = subprocess.run([python(), "-c", hide], cwd=C4SITE, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(REPO), C4SITE_PREFIX=prefix,
                                     PROCMAN_CONTROL_DIR=str(tmp_path / "ctl")))
    try:
        assert result.returncode == exitcodes.USAGE
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "daphne is not installed" in lines[0] and "pip install 'asgi_ipc[channels4]'" in lines[0]
        assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")
    finally:
        remove_segment(prefix)
