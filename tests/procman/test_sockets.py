"""Listening sockets (procman.sockets) and the systemd protocols (procman.systemd)."""

import os
import socket
import subprocess
import sys

import pytest

from procman import sockets, systemd


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("127.0.0.1:8000", ("tcp", ("127.0.0.1", 8000))),
        (":8001", ("tcp", ("127.0.0.1", 8001))),
        ("8002", ("tcp", ("127.0.0.1", 8002))),
        ("[::1]:8003", ("tcp", ("::1", 8003))),
        ("0.0.0.0:80", ("tcp", ("0.0.0.0", 80))),
        ("fd://3", ("fd", 3)),
    ],
)
def test_parse_bind(spec, expected):
    assert sockets.parse_bind(spec) == expected


@pytest.mark.parametrize("spec", ["", "host", "1.2.3.4:99999", "::1:80", "unix:", "fd://x", "[::1]"])
def test_parse_bind_rejects_with_the_accepted_forms(spec):
    with pytest.raises(sockets.BindError, match="HOST:PORT"):
        sockets.parse_bind(spec)


def test_tcp_listener_is_inheritable_nonblocking_and_reports_its_url():
    listener = sockets.bind("127.0.0.1:0")
    try:
        assert listener.sock.get_inheritable() and listener.sock.getblocking() is False
        port = listener.sock.getsockname()[1]
        assert listener.url == f"http://127.0.0.1:{port}/"
        with pytest.raises(sockets.BindError, match="address already in use"):
            sockets.bind(f"127.0.0.1:{port}")
    finally:
        sockets.close_all([listener])


def test_unix_listener_replaces_stale_file_refuses_live_one_and_cleans_up(tmp_path):
    path = tmp_path / "site.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody accepting
    listener = sockets.bind(f"unix:{path}")
    try:
        with pytest.raises(sockets.BindError, match="already accepting"):
            sockets.bind(f"unix:{path}")
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(path))
        client.close()
    finally:
        sockets.close_all([listener])
    assert not path.exists()
    (tmp_path / "plain").write_text("x")
    with pytest.raises(sockets.BindError, match="is not a socket"):
        sockets.bind(f"unix:{tmp_path / 'plain'}")


def test_adopt_fd_checks_it_is_a_listening_socket():
    plain = socket.socket()
    try:
        with pytest.raises(sockets.BindError, match=r"fd://\d+ \(file descriptor \d+\): the socket is not listening"):
            sockets.adopt_fd(os.dup(plain.fileno()))
    finally:
        plain.close()
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(sockets.BindError, match="not an open socket"):
            sockets.adopt_fd(read_end)
    finally:
        os.close(write_end)


def test_systemd_listen_fds_only_for_our_pid():
    code = (
        "import os, socket\n"
        "import sys\n"
        "from procman import sockets\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'\n"
        "got = sockets.adopt_systemd()\n"
        "print(len(got), got[0].url.startswith('http://127.0.0.1:'), 'LISTEN_FDS' in os.environ)\n"
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(listener.fileno())], pass_fds=(listener.fileno(),),
            capture_output=True, text=True, timeout=30,
        )
    finally:
        listener.close()
    assert out.stdout.split() == ["1", "True", "False"], out.stderr
    os.environ.pop("LISTEN_PID", None)
    assert systemd.listen_fds() == []


def test_notify_sends_datagram(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1")
        assert receiver.recv(100) == b"READY=1"
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert systemd.notify("READY=1") is False
    finally:
        receiver.close()


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert systemd.watchdog_interval() is None


def test_render_units():
    service, sock = systemd.render_units("mysite", ["/usr/bin/procman", "run"], ["127.0.0.1:8000"], "/srv/mysite",
                                         user="mysite", environment={"A": "b c"})
    assert "Type=notify" in service and "ExecStart=/usr/bin/procman run" in service
    assert "User=mysite" in service and 'Environment="A=b c"' in service and "Requires=mysite.socket" in service
    assert "ExecReload=/bin/kill -HUP $MAINPID" in service and "RestartPreventExitStatus=2 3" in service
    assert "ListenStream=127.0.0.1:8000" in sock
    with pytest.raises(ValueError, match="absolute"):
        systemd.render_units("x", ["procman"], ["1"], "/")
    with pytest.raises(ValueError, match="listen"):
        systemd.render_units("x", ["/bin/procman"], [], "/")
