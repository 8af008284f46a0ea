"""WebSocket through a real interface process with the ``websockets`` client; the test plays the
application on the layer (answers websocket.connect, reads websocket.receive, sends replies)."""

from __future__ import annotations

import base64
import os
import signal
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.procman.interface.conftest import Application, assert_closed


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def open_ws(pool: ThreadPoolExecutor, interface: Any, path: str = "/ws", **kwargs: Any) -> Future:
    """Start a handshake in a thread (it blocks until the test, as the app, answers)."""
    kwargs.setdefault("open_timeout", 20)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("legacy", True)  # used directly, not as a context manager
    return pool.submit(connect, f"ws://127.0.0.1:{interface.port}{path}", **kwargs)


def connect_accepted(pool, interface, app: Application, path: str = "/ws", **kwargs) -> tuple[ClientConnection, dict]:
    future = open_ws(pool, interface, path, **kwargs)
    _, message = app.receive("websocket.connect")
    app.send(message["reply_channel"], {"accept": True})
    return future.result(timeout=20), message


def close_code(ws: ClientConnection) -> int:
    """Wait (bounded by the client's timeouts) until the server closes; return its close code."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=20)
    return info.value.rcvd.code if info.value.rcvd is not None else 1006


def test_connect_message_frames_order_and_single_disconnect(layer, app, start_interface, pool):
    interface = start_interface(layer, "--ws-protocol", "chat", "v2")
    future = open_ws(pool, interface, "/ws/room?x=1", subprotocols=["v2", "chat"], additional_headers={"X-Token": "t", "X_Bad": "b"})
    _, connect_msg = app.receive("websocket.connect")
    assert connect_msg["path"] == "/ws/room"
    assert connect_msg["query_string"] == b"x=1"
    assert connect_msg["order"] == 0
    assert connect_msg["scheme"] == "ws"
    assert connect_msg["subprotocols"] == ["v2", "chat"]
    assert connect_msg["client"][0] == "127.0.0.1"
    assert connect_msg["server"] == ["127.0.0.1", interface.port]
    assert [b"x-token", b"t"] in connect_msg["headers"]
    assert not any(name == b"x_bad" for name, _ in connect_msg["headers"])
    channel = connect_msg["reply_channel"]
    assert channel.startswith("ifc.") and "!" in channel
    app.send(channel, {"accept": True})
    ws = future.result(timeout=20)
    assert ws.subprotocol == "v2"  # the client's first choice that the server lists

    ws.send("hello")
    ws.send(b"\x00\x01")
    ws.send("")
    received = [app.receive("websocket.receive")[1] for _ in range(3)]
    assert [m["order"] for m in received] == [1, 2, 3]
    assert received[0]["text"] == "hello" and "bytes" not in received[0]
    assert received[1]["bytes"] == b"\x00\x01" and "text" not in received[1]
    assert received[2]["text"] == ""
    assert all(m["reply_channel"] == channel and m["path"] == "/ws/room" for m in received)

    app.send(channel, {"text": ""})  # an empty text frame can be sent (Daphne 1.x could not)
    app.send(channel, {"bytes": b""})
    app.send(channel, {"text": "done"})
    assert ws.recv(timeout=10) == ""
    assert ws.recv(timeout=10) == b""
    assert ws.recv(timeout=10) == "done"
    ws.close(code=1000)
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect == {"reply_channel": channel, "path": "/ws/room", "code": 1000, "order": 4}

    interface.signal(signal.SIGTERM)  # flushes everything; then nothing more may be there
    assert interface.wait() == 0
    app.receive_nothing("websocket.disconnect")
    log = interface.access_log
    for action in ("WSCONNECTING /ws/room", "WSCONNECT /ws/room", "WSDISCONNECT /ws/room"):
        assert log.count(action) == 1, log


def test_data_during_the_handshake_accepts_implicitly(served, pool):
    interface, app = served
    future = open_ws(pool, interface)
    _, message = app.receive("websocket.connect")
    app.send(message["reply_channel"], {"text": "welcome"})
    ws = future.result(timeout=20)
    assert ws.recv(timeout=10) == "welcome"
    ws.close()


def test_open_socket_replies(served, pool):
    interface, app = served
    logged_before = len(interface.stderr)  # the process's stderr is shared with other tests
    ws, message = connect_accepted(pool, interface, app)
    channel = message["reply_channel"]
    app.send(channel, {"accept": True})  # ignored once open
    app.send(channel, {"text": "a", "bytes": b"b"})  # both: dropped, logged
    app.send(channel, {"text": "a", "unknown": 1})  # unknown key: dropped, logged
    app.send(channel, {"text": "kept"})
    assert ws.recv(timeout=10) == "kept"
    assert "both 'text' and 'bytes'" in interface.stderr[logged_before:]
    assert "unknown keys" in interface.stderr[logged_before:]
    app.send(channel, {"close": True})
    assert close_code(ws) == 1000
    disconnect = app.receive_from("websocket.disconnect", channel)
    assert disconnect["code"] == 1000


def test_message_over_the_limit_closes_with_1009(layer, app, start_interface, pool):
    interface = start_interface(layer, "--max-ws-message", "1K")
    ws, message = connect_accepted(pool, interface, app)
    ws.send("small")
    assert app.receive("websocket.receive")[1]["order"] == 1
    ws.send("x" * 2048)
    assert close_code(ws) == 1009
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect["code"] == 1009 and disconnect["order"] == 2
    app.receive_nothing("websocket.receive")


def test_full_receive_channel_closes_with_1013_and_still_sends_disconnect(make_layer, start_interface, pool):
    layer = make_layer(channel_capacity={"websocket.receive": 1})
    app = Application(layer)
    interface = start_interface(layer)
    ws, message = connect_accepted(pool, interface, app)
    layer.send("websocket.receive", {"filler": True})
    ws.send("no room for me")
    assert close_code(ws) == 1013
    _, disconnect = app.receive("websocket.disconnect")
    # Daphne 1.x sent no disconnect for such "muted" sockets; apps never cleaned up after them.
    assert disconnect == {"reply_channel": message["reply_channel"], "path": "/ws", "code": 1013, "order": 1}


def test_full_connect_channel_answers_503_without_a_disconnect(make_layer, start_interface, pool):
    layer = make_layer(channel_capacity={"websocket.connect": 1})
    app = Application(layer)
    layer.send("websocket.connect", {"filler": True})
    interface = start_interface(layer)
    with pytest.raises(InvalidStatus) as info:
        open_ws(pool, interface).result(timeout=20)
    assert info.value.response.status_code == 503
    interface.signal(signal.SIGTERM)
    assert interface.wait() == 0
    app.receive_nothing("websocket.disconnect")


def test_negative_connect_timeout_means_never(layer, app, start_interface, pool):
    interface = start_interface(layer, "--websocket-connect-timeout", "-1")
    future = open_ws(pool, interface)
    _, message = app.receive("websocket.connect")
    # Daphne 1.x rejected at its first 2 s check; wait past a few of our 1 s checks.
    with pytest.raises(TimeoutError):
        future.result(timeout=2.5)
    app.send(message["reply_channel"], {"accept": True})
    ws = future.result(timeout=20)
    ws.close()


def test_websocket_timeout_closes_long_lived_sockets(layer, app, start_interface, pool):
    interface = start_interface(layer, "--websocket-timeout", "0.5")
    ws, message = connect_accepted(pool, interface, app)
    assert close_code(ws) == 1000
    assert app.receive("websocket.disconnect")[1]["code"] == 1000


def _raw_handshake(interface) -> Any:
    sock = interface.connect()
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return sock


def test_peer_that_never_answers_pings_is_dropped(layer, app, start_interface):
    interface = start_interface(layer, "--ping-interval", "0.3", "--ping-timeout", "0.5")
    sock = _raw_handshake(interface)
    _, message = app.receive("websocket.connect")
    app.send(message["reply_channel"], {"accept": True})
    sock.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101")
    frames = data.partition(b"\r\n\r\n")[2]
    while len(frames) < 2:
        frames += sock.recv(4096)
    assert frames[0] & 0x0F == 0x9  # the server pinged the idle socket...
    assert_closed(sock)  # ...and dropped it when no pong came
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect["code"] == 1006


def test_ping_is_answered_by_a_live_client(layer, app, start_interface, pool):
    interface = start_interface(layer, "--ping-interval", "0.2", "--ping-timeout", "5")
    ws, message = connect_accepted(pool, interface, app)
    # The websockets client answers pings itself; the socket stays open across several pings.
    with pytest.raises(TimeoutError):
        ws.recv(timeout=1.5)
    app.send(message["reply_channel"], {"text": "still here"})
    assert ws.recv(timeout=10) == "still here"
    ws.close()


def test_frames_sent_with_the_handshake_wait_for_the_accept(served):
    interface, app = served
    sock = _raw_handshake(interface)
    masked = bytes(b ^ m for b, m in zip(b"early", b"\x01\x02\x03\x04\x01"))
    sock.sendall(b"\x81\x85\x01\x02\x03\x04" + masked)  # a text frame before the 101
    _, message = app.receive("websocket.connect")
    app.receive_nothing("websocket.receive")
    app.send(message["reply_channel"], {"accept": True})
    _, frame = app.receive("websocket.receive")
    assert frame["text"] == "early" and frame["order"] == 1
    sock.sendall(b"\x88\x82\x00\x00\x00\x00" + struct.pack("!H", 1000))
    sock.close()


def test_disconnect_to_a_momentarily_full_channel_is_retried(make_layer, start_interface, pool):
    layer = make_layer(channel_capacity={"websocket.disconnect": 1})
    app = Application(layer)
    interface = start_interface(layer)
    ws, message = connect_accepted(pool, interface, app)
    layer.send("websocket.disconnect", {"filler": True})
    ws.close()
    interface.wait_for_log('"WSDISCONNECT /ws"', source="access")
    assert app.receive("websocket.disconnect")[1] == {"filler": True}  # frees the slot
    _, disconnect = app.receive("websocket.disconnect")  # delivered by a later retry
    assert disconnect["reply_channel"] == message["reply_channel"] and disconnect["code"] == 1000


def test_proxy_headers_and_root_path_reach_websocket_connect(layer, app, start_interface, pool):
    interface = start_interface(layer, "--proxy-headers", "--root-path", "/app")
    headers = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    future = open_ws(pool, interface, "/ws/p", additional_headers=headers)
    _, message = app.receive("websocket.connect")
    assert message["client"] == ["198.51.100.7", 443]
    assert message["scheme"] == "wss"  # https at the proxy means wss for a WebSocket
    assert message["root_path"] == "/app"
    app.send(message["reply_channel"], {"accept": True})
    future.result(timeout=20).close()
    interface.wait_for_log("198.51.100.7:443", source="access")
