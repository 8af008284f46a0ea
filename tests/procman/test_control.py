"""The control socket: JSON request/response, and only the owner gets answers."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from procman import control


def serve_in_thread(path, answer):
    """A ControlServer served from a thread the way the arbiter does (select, then serve_one)."""
    import select

    srv = control.ControlServer(path, answer)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if select.select([srv.sock], [], [], 0.05)[0]:
                srv.serve_one()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close():
        stop.set()
        thread.join(10)
        srv.close()

    return srv, close


@pytest.fixture
def server(tmp_path):
    seen = []

    def answer(request):
        seen.append(request)
        if request["command"] == "boom":
            raise RuntimeError("bug in an answer")
        return {"ok": True, "echo": request}

    srv, close = serve_in_thread(tmp_path / "ctl" / "site.sock", answer)
    yield srv, seen
    close()


def test_request_response_and_errors(server):
    srv, seen = server
    assert control.request(srv.path, "status", fast=True) == {"ok": True, "echo": {"command": "status", "fast": True}}
    assert control.request(srv.path, "boom") == {"ok": False, "error": "RuntimeError: bug in an answer"}
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(srv.path))
    raw.sendall(b"not json\n")
    assert "bad request" in json.loads(raw.makefile().readline())["error"]
    raw.close()
    assert oct(srv.path.stat().st_mode & 0o777) == "0o600"
    assert oct(srv.path.parent.stat().st_mode & 0o777) == "0o700"


def test_second_server_on_a_live_socket_is_refused_stale_one_replaced(server, tmp_path):
    srv, _ = server
    with pytest.raises(control.ControlError, match="already running"):
        control.ControlServer(srv.path, lambda r: {})
    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()
    replacement = control.ControlServer(stale, lambda r: {})
    assert control.is_live(stale)
    replacement.close()
    assert not stale.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_other_users_get_no_answer():
    import shutil
    import tempfile

    seen = []
    # Even with the directory and the socket opened up, the peer's uid is checked.
    where = tempfile.mkdtemp(prefix="procman-ctl-test-", dir="/tmp")
    os.chmod(where, 0o755)
    srv, close = serve_in_thread(os.path.join(where, "site.sock"), lambda r: seen.append(r) or {"ok": True})
    try:
        os.chmod(srv.path, 0o777)
        code = (
            "import os, sys, json, pathlib\n"
            "from procman import control\n"
            "os.setuid(65534)  # after the imports: nobody cannot read root's Python installation\n"
            "print(control.request(pathlib.Path(sys.argv[1]), 'stop'))\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(srv.path)], capture_output=True, text=True,
                             timeout=30, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    finally:
        close()
        shutil.rmtree(where)
    assert "permission denied: not the site's owner" in out.stdout, out.stderr
    assert seen == []


def test_runtime_dir_must_be_private(tmp_path, monkeypatch):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    monkeypatch.setenv("PROCMAN_CONTROL_DIR", str(loose))
    with pytest.raises(control.ControlError, match="mode 0700"):
        control.runtime_dir()
    private = tmp_path / "private"
    monkeypatch.setenv("PROCMAN_CONTROL_DIR", str(private))
    assert control.runtime_dir(create=True) == private and oct(private.stat().st_mode & 0o777) == "0o700"


def test_a_socket_path_too_long_for_a_unix_address_says_what_to_do(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(control.ControlError) as caught:
        control.ControlServer(deep / "site.sock", lambda request: {})
    message = str(caught.value)
    assert "at most 107" in message and "PROCMAN_CONTROL_DIR" in message, message
    assert "None" not in message
