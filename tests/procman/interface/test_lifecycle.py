"""Signals, the lost-layer exit, connection limits and the command line of a real process."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from procman.interface import EXIT_LAYER_LOST
from tests.procman.interface.conftest import HTTPReader, assert_closed, read_http_response


def test_sigterm_finishes_responses_closes_websockets_with_1001_and_exits_0(layer, app, start_interface):
    interface = start_interface(layer, "--port", "0", listen=None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(connect, f"ws://127.0.0.1:{interface.port}/live", open_timeout=20, legacy=True)
        _, ws_connect = app.receive("websocket.connect")
        app.send(ws_connect["reply_channel"], {"accept": True})
        ws = future.result(timeout=20)
    conn = http.client.HTTPConnection("127.0.0.1", interface.port, timeout=20)
    conn.request("GET", "/in-flight")
    request = app.request()

    interface.signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=20)
    assert info.value.rcvd.code == 1001
    # Listening stopped: new connections are refused while the in-flight request goes on.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", interface.port), timeout=5)
    app.respond(request, content=b"finished")
    response = conn.getresponse()
    assert response.read() == b"finished"
    assert response.getheader("connection") == "close"
    assert interface.wait() == 0
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect["code"] == 1001
    app.receive_nothing("http.disconnect")  # the request completed


def test_graceful_stop_is_bounded_by_the_shutdown_timeout(layer, app, start_interface):
    interface = start_interface(layer, "--shutdown-timeout", "0.5")
    sock = interface.connect()
    sock.sendall(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    interface.signal(signal.SIGTERM)
    assert interface.wait() == 0
    assert_closed(sock)
    _, disconnect = app.receive("http.disconnect")
    assert disconnect["reply_channel"] == request["reply_channel"]


def test_second_sigint_stops_at_once(layer, app, start_interface):
    interface = start_interface(layer, "--shutdown-timeout", "60")
    sock = interface.connect()
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    app.request()
    interface.signal(signal.SIGINT)
    interface.wait_for_log("stopping gracefully")
    interface.signal(signal.SIGINT)
    assert interface.wait() == 130
    assert_closed(sock)


def test_lost_layer_drops_connections_and_exits_non_zero(layer, app, start_interface):
    interface = start_interface(layer, layer_options={"receive_timeout": 0.5})
    sock = interface.connect()
    sock.sendall(b"GET /pending HTTP/1.1\r\nHost: x\r\n\r\n")
    app.request()
    layer.unlink()  # the segment disappears under the running interface process
    assert interface.wait() == EXIT_LAYER_LOST == 75
    assert_closed(sock)
    assert "channel layer lost" in interface.stderr


def test_max_connections_stops_accepting_until_a_slot_frees(layer, app, start_interface):
    interface = start_interface(layer, "--max-connections", "1")
    first = interface.connect()
    first.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    app.respond(app.request(), content=b"one")
    first_reader = HTTPReader(first)
    assert first_reader.response()[2] == b"one"  # still open (keep-alive)

    second = interface.connect()  # queued by the kernel, not accepted by the server
    second.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    app.receive_nothing("http.request")
    first.close()
    app.respond(app.request(), content=b"two")
    assert read_http_response(second)[2] == b"two"
    second.close()


def test_unix_socket_and_endpoint_strings(layer, app, start_interface, tmp_path):
    path = tmp_path / "ifc.sock"
    interface = start_interface(
        layer, "--unix-socket", str(path), "-e", "tcp:0:interface=127.0.0.1", listen=None
    )
    # start_interface returns at the first "listening on" line, which may be the TCP endpoint's.
    interface.wait_for_log(f"listening on {path}", timeout=30)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.settimeout(10)
    unix.connect(str(path))
    unix.sendall(b"GET /over-unix HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    assert request["client"] == ["127.0.0.1", 0] and request["server"] is None  # a UNIX peer is local
    app.respond(request, content=b"unix ok")
    assert read_http_response(unix)[2] == b"unix ok"
    unix.close()

    tcp = interface.connect()  # the port the -e endpoint picked, read from the log
    tcp.sendall(b"GET /over-tcp HTTP/1.1\r\nHost: x\r\n\r\n")
    app.respond(app.request(), content=b"tcp ok")
    assert read_http_response(tcp)[2] == b"tcp ok"
    tcp.close()


def test_settings_module_names_the_layer(layer, app, start_interface, tmp_path, prefix):
    from tests.procman.interface.conftest import LAYER_SIZES

    capacity, channel_capacity = layer.test_config
    config = {"prefix": prefix, "capacity": capacity, "channel_capacity": channel_capacity, **LAYER_SIZES}
    (tmp_path / "ifcsettings.py").write_text(
        "SECRET_KEY = 'x'\n"
        f"CHANNEL_LAYERS = {{'default': {{'BACKEND': 'asgi_ipc.IPCChannelLayer', 'CONFIG': {config!r}}}}}\n"
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "procman.interface", "--settings", "ifcsettings", "--fd", str(listener.fileno())],
        cwd=tmp_path,
        pass_fds=(listener.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", listener.getsockname()[1], timeout=20)
        conn.request("GET", "/via-settings")
        app.respond(app.request(), content=b"settings ok")
        assert conn.getresponse().read() == b"settings ok"
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        listener.close()


def _run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "procman.interface", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["no_colon_here"], "must look like 'package.module:attribute'"),
        (["surely_missing_module_xyz:layer"], "cannot import 'surely_missing_module_xyz'"),
        (["os:path"], "has no send()"),
        (["os:environ.nothing"], "no attribute path"),
    ],
    ids=["format", "missing-module", "not-a-layer", "missing-attribute"],
)
def test_bad_layer_references_exit_2_with_advice(args, message, tmp_path):
    result = _run_cli(*args, "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_layer_that_cannot_attach_exits_2_with_its_reason(tmp_path, prefix):
    (tmp_path / "absent_layer.py").write_text(
        "from asgi_ipc import IPCChannelLayer\n"
        f"channel_layer = IPCChannelLayer(prefix={prefix + 'none'!r}, create=False)\n"
    )
    result = _run_cli("absent_layer:channel_layer", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "importing 'absent_layer'" in result.stderr and "SegmentMissing" in result.stderr


def test_usage_errors_are_reported_by_the_parser(tmp_path):
    result = _run_cli("--max-request-body", "lots", "x:y")
    assert result.returncode == 2 and "invalid size 'lots'" in result.stderr
    result = _run_cli("x:y", "--settings", "s")
    assert result.returncode == 2 and "exactly one of LAYER" in result.stderr
    result = _run_cli("x:y", "--root-path", "app/")
    assert result.returncode == 2 and "root_path must start with '/'" in result.stderr
    result = _run_cli("--ws-protocol", "chat", "mysite.asgi:channel_layer")
    assert result.returncode == 2 and "put LAYER before --ws-protocol" in result.stderr


def test_fd_that_is_not_a_listening_socket_is_refused(layer, prefix, tmp_path):
    from tests.procman.interface.conftest import write_layer_module

    module = write_layer_module(tmp_path, prefix, layer)
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))  # bound but never listen()ed
    try:
        for fd, message in ((bound.fileno(), "is not listening"), (999, "not an open socket")):
            result = subprocess.run(
                [sys.executable, "-m", "procman.interface", f"{module}:channel_layer", "--fd", str(fd)],
                capture_output=True, text=True, timeout=60, cwd=tmp_path, pass_fds=(bound.fileno(),),
            )
            assert result.returncode == 2, result.stderr
            assert message in result.stderr
    finally:
        bound.close()


def test_sigquit_stops_at_once_and_still_sends_every_disconnect(layer, app, start_interface):
    interface = start_interface(layer)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(connect, f"ws://127.0.0.1:{interface.port}/fast", open_timeout=20, legacy=True)
        _, message = app.receive("websocket.connect")
        app.send(message["reply_channel"], {"accept": True})
        ws = future.result(timeout=20)
    sock = interface.connect()
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    interface.signal(signal.SIGQUIT)
    assert interface.wait() == 130
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect["reply_channel"] == message["reply_channel"]
    _, http_disconnect = app.receive("http.disconnect")
    assert http_disconnect["reply_channel"] == request["reply_channel"]
    app.receive_nothing("websocket.disconnect")
    ws.close()
    sock.close()


def test_adopted_unix_socket_keeps_its_mode_and_file(layer, app, tmp_path, prefix):
    """The socket file belongs to whoever bound it (supervisor, systemd): an interface process
    serving it through --fd must neither make it world-writable nor remove it when it stops."""
    import stat

    from tests.procman.interface.conftest import write_layer_module

    module = write_layer_module(tmp_path, prefix, layer)
    path = tmp_path / "adopted.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o660)
    listener.listen(8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "procman.interface", f"{module}:channel_layer", "--fd",
         str(listener.fileno())],
        cwd=tmp_path, pass_fds=(listener.fileno(),), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET /adopted HTTP/1.1\r\nHost: x\r\n\r\n")
        app.respond(app.request(), content=b"adopted ok")
        assert read_http_response(client)[2] == b"adopted ok"
        client.close()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert path.exists(), "the interface removed a socket file it did not bind"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    listener.close()


def test_settings_interface_never_creates_a_segment(tmp_path, prefix):
    """Restarted after the site's segment vanished, an interface must not create a new one."""
    (tmp_path / "nosegsettings.py").write_text(
        "SECRET_KEY = 'x'\n"
        "CHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', "
        f"'CONFIG': {{'prefix': {prefix!r}, 'message_memory': 2**20, "
        "'max_message_size': 65536}}}\n"
    )
    result = _run_cli("--settings", "nosegsettings", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "no channel layer segment" in result.stderr
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")


def test_bind_means_host_and_port_and_sockets_listen_with_backlog_2048(layer, app, start_interface):
    interface = start_interface(layer, "--bind", "127.0.0.1:0", listen=None)
    sock = interface.connect()
    sock.sendall(b"GET /bound HTTP/1.1\r\nHost: x\r\n\r\n")
    app.respond(app.request())
    assert read_http_response(sock)[0] == 200
    sock.close()
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    ss = subprocess.run(
        ["ss", "-Hltn", f"sport = :{interface.port}"], capture_output=True, text=True, check=True
    )
    backlog = int(ss.stdout.split()[2])  # Send-Q of a listening socket is its backlog
    assert backlog == min(2048, somaxconn)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bind", "127.0.0.1"], "--bind now takes HOST:PORT"),
        (["--bind", "::1"], "--bind now takes HOST:PORT"),
        (["--bind", "[::1]"], "has no port"),
        (["--bind", "127.0.0.1:99999"], "the port must be 0-65535"),
        (["--bind", "127.0.0.1:0", "--port", "0"], "not both"),
    ],
    ids=["old-form", "bare-ipv6", "bracketed-no-port", "bad-port", "bind-and-port"],
)
def test_bad_bind_is_refused_with_the_accepted_forms(args, message, tmp_path, prefix):
    result = _run_cli("x:y", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_start_that_cannot_listen_leaves_no_segment(tmp_path, prefix):
    """A layer module that creates its segment, and a port that is taken: exit 2, segment gone."""
    (tmp_path / "owning_layer.py").write_text(
        "from asgi_ipc import IPCChannelLayer\n"
        f"channel_layer = IPCChannelLayer(prefix={prefix!r}, create=True, message_memory=2**20, max_message_size=65536)\n"
    )
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        result = _run_cli("owning_layer:channel_layer", "--bind", f"127.0.0.1:{port}", cwd=tmp_path)
    finally:
        taken.close()
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")
