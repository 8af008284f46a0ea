"""``procman run`` end to end on a small Django site: real supervisor, real children, real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import psutil
import pytest

from procman import exitcodes

from .procs import HELLOSITE, Site, http_get, unique_prefix, wait_for
from .procs import processes_by_role as roles


@pytest.fixture
def site(tmp_path):
    sites: list[Site] = []

    def start(*args: str, cwd=HELLOSITE, env=None, prefix=None) -> Site:
        s = Site(["run", "--bind", "127.0.0.1:0", *args], cwd, prefix or unique_prefix(), tmp_path / "ctl", env)
        sites.append(s)
        return s

    yield start
    for s in sites:
        s.close()


def test_serves_then_term_leaves_no_process_and_no_segment(site):
    s = site("--workers", "2")
    url = s.wait_ready()
    assert s.segment_exists()
    status, body = http_get(url)
    assert status == 200 and body.decode() == f"hello from {s.prefix}\n"
    children = s.descendants()
    assert {r: len(p) for r, p in roles(s).items()} == {"interface": 1, "worker": 2}
    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK
    psutil.wait_procs(children, timeout=10)
    assert not any(p.is_running() for p in children)
    assert not s.segment_exists(), "the supervisor must remove its segment"
    assert not list(s.control_dir.glob("*.sock"))


def test_killed_worker_is_replaced_and_site_keeps_answering(site):
    s = site("--workers", "2")
    url = s.wait_ready()
    victim = roles(s)["worker"][0]
    victim.kill()
    s.wait_line("died: killed by SIGKILL; restarting in")
    for _ in range(20):  # the other worker answers meanwhile, and then both
        assert http_get(url)[0] == 200
    wait_for(lambda: len(roles(s).get("worker", [])) == 2 and victim.pid not in {p.pid for p in roles(s)["worker"]},
             what="a replacement worker")
    assert http_get(url)[0] == 200


def test_hup_during_steady_load_fails_no_request(site):
    s = site("--workers", "2")
    url = s.wait_ready()
    old = {p.pid for p in roles(s)["worker"]}
    results: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                results.append(http_get(url + "slow?s=0.05", timeout=15)[0])
            except OSError as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 20, what="load to start")
        mark = len(s.lines)
        s.signal(signal.SIGHUP)
        s.wait_line("reload: replacing 2 process(es)", after=mark)
        wait_for(lambda: (w := roles(s).get("worker", [])) and len(w) == 2 and not old & {p.pid for p in w},
                 timeout=60, what="the old workers to be replaced")
        before = len(results)
        wait_for(lambda: len(results) >= before + 20, what="load to continue on the new workers")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert set(results) == {200}, f"non-200 answers during reload: {sorted(set(results))}"


def test_broken_settings_give_one_clear_error(site, tmp_path):
    project = tmp_path / "broken"
    (project / "brokensite").mkdir(parents=True)
    (project / "brokensite" / "__init__.py").write_text("")
    (project / "brokensite" / "settings.py").write_text("SECRET_KEY = 'x'\nimport no_such_module_here\n")
    s = site("--settings", "brokensite.settings", cwd=project)
    code = s.wait(60)
    assert code == exitcodes.USAGE
    assert "cannot import settings module 'brokensite.settings' (ModuleNotFoundError" in s.output
    assert s.output.count("Traceback") == 1
    assert not s.segment_exists()


def test_worker_boot_failure_stops_the_run(site):
    # Workers as their own interpreters: with the default --preload the fork server fails to
    # preload first, which test_forkserver checks with these same assertions.
    s = site("--workers", "2", "--no-preload", env={"HELLOSITE_ROUTING": "hellosite.no_such_routing.channel_routing"})
    code = s.wait(90)
    assert code == exitcodes.BOOT_ERROR
    assert "failed to boot: ImproperlyConfigured: cannot import routing" in s.output
    # Both workers fail the same way (or the second is stopped while booting): one traceback.
    assert s.output.count("ModuleNotFoundError: No module named 'hellosite.no_such_routing'") == 1, s.output
    assert "restarting in" not in s.output
    assert not s.segment_exists()


def test_port_in_use_is_a_clear_error(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    s = Site(["run", "--bind", f"127.0.0.1:{port}"], HELLOSITE, unique_prefix(), tmp_path / "ctl")
    try:
        assert s.wait(60) == exitcodes.USAGE
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in s.output
        assert not s.segment_exists()
        assert s.descendants() == []
    finally:
        s.close()
        holder.close()


def test_two_sites_with_different_prefixes_side_by_side(site):
    a, b = site("--workers", "1"), site("--workers", "1")
    url_a, url_b = a.wait_ready(), b.wait_ready()
    assert http_get(url_a)[1].decode() == f"hello from {a.prefix}\n"
    assert http_get(url_b)[1].decode() == f"hello from {b.prefix}\n"
    a.signal(signal.SIGTERM)
    assert a.wait(60) == exitcodes.OK
    assert http_get(url_b)[0] == 200 and b.segment_exists() and not a.segment_exists()


def test_status_reload_stop_commands(site):
    s = site("--workers", "1", "--interfaces", "2")
    url = s.wait_ready()
    assert http_get(url)[0] == 200
    text = s.cli("status", "--name", s.prefix)
    assert text.returncode == 0, text.stderr
    assert "interface.2" in text.stdout and "worker.1" in text.stdout and "http.request" in text.stdout
    import json

    data = json.loads(s.cli("status", "--name", s.prefix, "--json").stdout)
    assert data["site"]["prefix"] == s.prefix
    assert {p["name"] for p in data["processes"]} == {"interface.1", "interface.2", "worker.1"}
    assert data["layer"]["channels"]["http.request"]["messages_count"] >= 1
    assert all(p["rss"] > 0 and p["pid"] > 0 for p in data["processes"])
    # Interfaces count finished exchanges (reported with their next heartbeat, about a second).
    # (The control socket gives the same JSON as `status --json`, without an interpreter per poll.)
    wait_for(lambda: sum(p["requests"] or 0 for p in s.status().get("processes", [])
                         if p["role"] == "interface") >= 1, what="interface request counts")
    reload = s.cli("reload", "--name", s.prefix)
    assert reload.returncode == 0 and "reload started" in reload.stdout
    s.wait_line("reload: replacing 1 process(es)")
    stop = s.cli("stop", "--name", s.prefix)
    assert stop.returncode == 0
    assert s.wait(60) == exitcodes.OK
    gone = s.cli("status", "--name", s.prefix)
    assert gone.returncode == exitcodes.FAILURE and "no running procman" in gone.stderr


def test_ttin_adds_a_worker(site):
    s = site("--workers", "1")
    s.wait_ready()
    s.signal(signal.SIGTTIN)
    wait_for(lambda: len(roles(s).get("worker", [])) == 2, what="a second worker")


def test_max_requests_recycles_workers_new_before_old(site):
    s = site("--workers", "1", "--max-requests", "5", "--max-requests-jitter", "0")
    url = s.wait_ready()
    first = roles(s)["worker"][0].pid
    for _ in range(12):
        assert http_get(url)[0] == 200
    s.wait_line("worker.1 retiring (handled 5 messages")
    wait_for(lambda: first not in {p.pid for p in roles(s).get("worker", [])}, what="the recycled worker to go")


def test_pool_gets_its_channels_and_main_pool_ignores_them(site):
    s = site("--workers", "1", "--pool", "slow=1:thumbnail")
    s.wait_ready()
    pool = s.wait_line("worker-slow.1 | listening on")
    assert pool.endswith("listening on thumbnail")
    main = s.wait_line("worker.1      | listening on")
    assert "http.request" in main and "thumbnail" not in main


def test_systemd_socket_activation_and_notify(tmp_path):
    """Under systemd: adopt the listening fd (LISTEN_FDS), send READY=1, WATCHDOG=1 and STOPPING=1."""
    notify_path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(30)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    prefix = unique_prefix("sd")
    # LISTEN_PID must be procman's own pid: set it in a shim that then execs procman (same pid).
    shim = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', WATCHDOG_USEC='1000000')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'procman', 'run', '--workers', '1'])\n"
    )
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), PROCMAN_CONTROL_DIR=str(tmp_path / "ctl"),
               HELLOSITE_PREFIX=prefix, NO_COLOR="1", PYTHONPATH=str(HELLOSITE.parents[3]))
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", shim, str(listener.fileno())], pass_fds=(listener.fileno(),),
                            cwd=HELLOSITE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listener.close()  # the site holds it now
    try:
        messages = [receiver.recv(1000).decode()]
        while not messages[-1].startswith("READY=1"):  # watchdog pings may come first
            messages.append(receiver.recv(1000).decode())
        assert f"127.0.0.1:{port}" in messages[-1]
        assert http_get(f"http://127.0.0.1:{port}/")[1].decode() == f"hello from {prefix}\n"
        while "WATCHDOG=1" not in messages:
            messages.append(receiver.recv(1000).decode())
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(receiver.recv(1000).decode())
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == exitcodes.OK
        assert "using 1 socket(s) from systemd socket activation" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        receiver.close()
        from .procs import remove_segment

        remove_segment(prefix)


def test_killed_interface_is_replaced_and_the_socket_stays_open(site):
    s = site("--workers", "1")
    url = s.wait_ready()
    victim = roles(s)["interface"][0]
    victim.kill()
    s.wait_line("interface.1 (pid")
    # The listening socket belongs to the supervisor: connections made meanwhile queue up and the
    # replacement answers them.
    assert http_get(url, timeout=30)[0] == 200
    assert victim.pid not in {p.pid for p in roles(s)["interface"]}


def test_hung_worker_is_aborted_with_its_stack_and_replaced(site):
    s = site("--workers", "1", "--timeout", "3")
    url = s.wait_ready()
    hung = roles(s)["worker"][0]
    stuck = threading.Thread(target=lambda: _ignore_errors(http_get, url + "slow?s=600", 60), daemon=True)
    stuck.start()
    s.wait_line("worker.1 (pid %d) sent no heartbeat for 3 s" % hung.pid)
    s.wait_line("in slow")  # faulthandler's stack shows where the consumer was stuck
    wait_for(lambda: (w := roles(s).get("worker")) and hung.pid not in {p.pid for p in w}, what="a replacement")
    s.wait_line("procman     | started worker.1")
    assert http_get(url, timeout=30)[0] == 200


def _ignore_errors(function, *args):
    try:
        function(*args)
    except OSError:
        pass


def test_segment_removed_under_the_site_stops_it_with_a_clear_error(site):
    s = site("--workers", "1")
    s.wait_ready()
    os.unlink(f"/dev/shm/asgi_ipc.{s.prefix}")  # what RemoveIPC does at logout
    assert s.wait(60) == exitcodes.FAILURE
    assert "was removed under the running site" in s.output
    assert s.descendants() == [] and not s.segment_exists()


def test_unix_socket_bind_serves_and_is_removed_on_stop(tmp_path):
    path = tmp_path / "site.sock"
    s = Site(["run", "--bind", f"unix:{path}", "--workers", "1"], HELLOSITE, unique_prefix(), tmp_path / "ctl")
    try:
        assert s.wait_ready() == f"http+unix://{path}"
        # The interface server (Twisted) makes adopted UNIX sockets 0666; procman puts 0660 back.
        wait_for(lambda: path.stat().st_mode & 0o777 == 0o660, what="socket mode 0660")

        def get() -> bytes:
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(30)
            client.connect(str(path))
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
            client.close()
            return answer

        answer = get()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(f"hello from {s.prefix}\n".encode())
        # An interface process that goes away must not take the socket file with it.
        roles(s)["interface"][0].kill()
        s.wait_line("interface.1 (pid")
        assert path.exists() and get().startswith(b"HTTP/1.1 200")
        s.signal(signal.SIGTERM)
        assert s.wait(60) == exitcodes.OK
        assert list(tmp_path.iterdir()) == [tmp_path / "ctl"] and not path.exists()
    finally:
        s.close()
