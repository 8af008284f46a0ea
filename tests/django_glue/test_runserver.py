"""``manage.py runserver`` as a real process: HTTP, WebSocket, static files, --noworker, autoreload, Ctrl-C."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from asgi_ipc.segment import inspect, is_alive
from tests.children import end_with_parent

from .conftest import REPO, Processes, process_env, unique_prefix, wait_for
from .e2e import http_request, recv, websocket

ECHO = "tests.django_glue.project.seeds.echo.channel_routing"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Runserver:
    """One ``runserver`` process tree in its own session (so Ctrl-C can go to all of it)."""

    def __init__(self, tmp_path, db, routing, *args, env=None, pythonpath=None, prefix=None, port=0):
        """``port=0``: the server picks a free one (read from its banner; it changes on a reload)."""
        self.prefix = prefix or unique_prefix()
        self.port = port
        self.log = tmp_path / f"runserver-{self.prefix}.log"
        environ = {**process_env(self.prefix, routing, db, debug=True), **(env or {})}
        if pythonpath:
            environ["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{environ['PYTHONPATH']}"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}", *args],
                cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=end_with_parent(),
            )

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_serving(self, count=1):
        wait_for(lambda: self.proc.poll() is not None or self.text().count("listening on") >= count, timeout=60)
        assert self.proc.poll() is None, self.text()
        self.port = int(re.findall(r"Starting development server at http://127\.0\.0\.1:(\d+)/", self.text())[-1])

    def ctrl_c(self):
        """SIGINT to the whole process group, as a terminal's Ctrl-C does; waits (bounded).

        The autoreloader's parent may exit before its child has finished cleaning up, as under
        a terminal; the group is killed only once the segment is gone (or after 30 s).
        """
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            status = self.proc.wait(30)
            deadline = time.monotonic() + 30
            while self.segments() and time.monotonic() < deadline:
                time.sleep(0.1)
            return status
        finally:
            self.kill()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def segments(self):
        return [name for name in os.listdir("/dev/shm") if self.prefix in name]


@pytest.fixture
def runservers(tmp_path):
    started = []

    def start(*args, **kwargs):
        server = Runserver(tmp_path, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
        for name in server.segments():  # only after a failure; the tests assert there are none
            os.unlink(f"/dev/shm/{name}")
        print(server.text())


def test_http_websocket_static_then_ctrl_c_leaves_nothing(runservers, db_file):
    server = runservers(db_file, ECHO)
    server.wait_serving()
    assert "Starting development server at http://127.0.0.1:" in server.text()
    assert "4 worker thread(s)" in server.text()
    status, _, body = http_request(server.port, "GET", "/hello/")
    assert (status, body) == (200, b"hello")
    status, _, body = http_request(server.port, "GET", "/static/css/site.css")
    assert status == 200
    assert body == (REPO / "tests/django_glue/project/static/css/site.css").read_bytes()
    with websocket(server.port, "/any/") as ws:
        ws.send("ping")
        assert recv(ws) == "ping"
    assert server.segments()
    assert server.ctrl_c() == 0
    assert server.segments() == []


def test_noworker_leaves_the_work_to_runworker(runservers, db_file, tmp_path):
    server = runservers(db_file, ECHO, "--noworker", "--noreload")
    server.wait_serving()
    assert "no workers here" in server.text()
    workers = Processes(server.prefix, db_file, tmp_path)
    try:
        workers.runworker(ECHO)
        status, _, body = http_request(server.port, "GET", "/hello/")
        assert (status, body) == (200, b"hello")
        with websocket(server.port, "/x/") as ws:
            ws.send("via runworker")
            assert recv(ws) == "via runworker"
    finally:
        workers.stop_all()
    assert server.ctrl_c() == 0
    assert server.segments() == []


def test_layer_option_serves_another_alias(runservers, db_file):
    other = unique_prefix()
    server = runservers(db_file, ECHO, "--layer", "other", "--noreload", env={"DG_TEST_OTHER_PREFIX": other})
    server.wait_serving()
    assert "Channel layer 'other'" in server.text()
    assert [n for n in os.listdir("/dev/shm") if other in n]
    # The "other" alias routes only other.work; HTTP still reaches the default views.
    status, _, body = http_request(server.port, "GET", "/hello/")
    assert (status, body) == (200, b"hello")
    assert server.ctrl_c() == 0
    assert not [n for n in os.listdir("/dev/shm") if other in n]


RELOADED = '''
from django.http import HttpResponse
from django_glue.routing import route
from django_glue.default_consumers import ViewConsumer

VERSION = "{version}"


def answer(message):
    message.reply_channel.send({{"status": 200, "headers": [], "content": VERSION.encode()}})


channel_routing = [route("http.request", answer, path=r"^/version/$")]
'''


def test_autoreload_restarts_on_a_file_change(runservers, db_file, tmp_path):
    package = tmp_path / "reloadme"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "routing.py"
    module.write_text(RELOADED.format(version="one"))
    server = runservers(db_file, "reloadme.routing.channel_routing", pythonpath=tmp_path, port=free_port())
    server.wait_serving()
    assert http_request(server.port, "GET", "/version/")[2] == b"one"
    module.write_text(RELOADED.format(version="two"))
    # Django's reloader records a file's mtime the first time one of its 1 s ticks sees the module,
    # and restarts on a later, newer one. Under load its first tick may come after our write, so
    # push the mtime further every tick and a bit until the restart is under way (bounded). The
    # first sign of it is the old child stopping its interface server ("graceful stop"), long
    # before the new child serves; a push made before the new child's first tick is only "first
    # seen" there, so it cannot cause a second restart.
    def restarting():
        return server.proc.poll() is not None or "graceful stop" in server.text()

    deadline = time.monotonic() + 60
    ahead = 5
    while not restarting():
        assert time.monotonic() < deadline, "runserver did not restart after its routing changed"
        later = time.time() + ahead  # a clearly newer mtime, whatever the file system's resolution
        os.utime(module, (later, later))
        ahead += 5
        try:
            wait_for(restarting, timeout=1.2)
        except AssertionError:
            continue
    server.wait_serving(count=2)  # the restarted child started a new interface server

    def version():
        try:
            return http_request(server.port, "GET", "/version/")[2]
        except OSError:
            return None

    wait_for(lambda: version() == b"two", timeout=60, interval=0.2)
    assert server.ctrl_c() == 0
    assert server.segments() == []


def test_noasgi_runs_django_wsgi_server_with_static_files(runservers, db_file):
    server = runservers(db_file, ECHO, "--noasgi", "--noreload", port=free_port())
    wait_for(lambda: server.proc.poll() is not None or "Starting development server" in server.text(), timeout=60)

    def get(path):
        try:
            return http_request(server.port, "GET", path)
        except OSError:
            return None

    status, headers, body = wait_for(lambda: get("/hello/"), timeout=30, interval=0.2)
    assert (status, body) == (200, b"hello")
    assert dict(headers).get("Server", "").startswith("WSGIServer")
    assert get("/static/css/site.css")[0] == 200
    assert server.segments() == []  # no layer at all


def test_restarts_after_sigkill_over_the_stale_segment(runservers, db_file):
    """A runserver killed with SIGKILL (an IDE's stop button) must not block the next start."""
    first = runservers(db_file, ECHO, "--noreload")
    first.wait_serving()
    first.kill()
    assert first.segments()  # left behind by the killed process
    second = runservers(db_file, ECHO, "--noreload", prefix=first.prefix)
    second.wait_serving()
    assert "Removed the stale segment" in second.text()
    assert http_request(second.port, "GET", "/hello/")[:3:2] == (200, b"hello")
    assert second.ctrl_c() == 0
    assert second.segments() == []


def test_the_site_stops_cleanly_when_the_reloaders_process_is_killed(runservers, db_file):
    """SIGKILL to the autoreloader's parent alone (a crashed script or IDE that started it): its
    child - the site, the segment's creator - gets the parent-death signal and stops as on
    SIGTERM, stopping its interface server and removing its segment."""
    server = runservers(db_file, ECHO)
    server.wait_serving()
    [name] = server.segments()
    info = inspect(name)
    site = info.creator_pid
    assert site != server.proc.pid and is_alive(site)  # the reloader's child made the segment
    assert http_request(server.port, "GET", "/hello/")[:3:2] == (200, b"hello")
    mappers = set(info.attached_pids) - {site}  # the interface server
    assert mappers
    os.kill(server.proc.pid, signal.SIGKILL)  # the parent only, not its process group
    server.proc.wait(10)
    wait_for(lambda: not server.segments(), timeout=30, interval=0.1)
    wait_for(lambda: not any(is_alive(pid) for pid in {site, *mappers}), timeout=30, interval=0.1)
    assert "graceful stop" in server.text()  # its interface server was stopped, not killed


def test_a_killed_site_process_takes_its_interface_server_with_it(runservers, db_file):
    """SIGKILL to the site's own process (``--noreload``: the one process that started the
    interface server): the interface server gets the parent-death signal and stops instead of
    serving on for a site that is gone (it was found still mapping the segment 5 s later)."""
    server = runservers(db_file, ECHO, "--noreload")
    server.wait_serving()
    [name] = server.segments()
    info = inspect(name)
    assert info.creator_pid == server.proc.pid
    interface = set(info.attached_pids) - {server.proc.pid}
    assert interface
    os.kill(server.proc.pid, signal.SIGKILL)  # the site process only, not its process group
    server.proc.wait(10)
    wait_for(lambda: not any(is_alive(pid) for pid in interface), timeout=30, interval=0.1)
    assert "graceful stop" in server.text()  # it stopped on its SIGTERM, not by a kill


def test_an_unknown_layer_alias_is_refused_with_the_one_readers_message(db_file):
    result = subprocess.run(
        [sys.executable, "-m", "django", "runserver", "127.0.0.1:0", "--noreload", "--layer", "nope"],
        cwd=REPO, env=process_env(unique_prefix(), ECHO, db_file, debug=True), capture_output=True, text=True,
        timeout=60, preexec_fn=end_with_parent(),
    )
    assert result.returncode != 0
    assert "CHANNEL_LAYERS has no 'nope' entry (defined: 'default'" in result.stderr, result.stderr[-2000:]
