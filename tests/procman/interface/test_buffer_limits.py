"""Every per-connection buffer is bounded: misbehaving clients against a real interface process,
with the process's resident memory measured before and after (a budget, never a timing)."""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
from pathlib import Path
from typing import Any

import psutil

from tests.procman.interface.conftest import assert_closed, read_http_response

MiB = 2**20


def rss(interface: Any) -> int:
    """The process's private resident memory (RssAnon): the layer's shared pages, which the
    process touches as it reads messages, are not memory a connection holds."""
    status = Path(f"/proc/{interface.proc.pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return psutil.Process(interface.proc.pid).memory_info().rss


def ws_connect(interface: Any, receive_buffer: int | None = None) -> socket.socket:
    """A raw socket that has sent a WebSocket handshake (not yet answered)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", interface.port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return sock


def read_101(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    return data.partition(b"\r\n\r\n")[2]


def binary_frame(size: int) -> bytes:
    """A masked binary frame of ``size`` bytes (mask key 0, so the payload is sent as is)."""
    return b"\x82\xff" + struct.pack("!Q", size) + b"\x00\x00\x00\x00" + b"x" * size


def test_frames_before_the_accept_are_capped_then_the_handshake_is_rejected(layer, app, start_interface):
    interface = start_interface(layer, "--max-ws-pending", "256K")
    sock = ws_connect(interface)
    _, message = app.receive("websocket.connect")  # ...and the application never answers
    before = rss(interface)
    frame = binary_frame(64 * 2**10)
    sock.settimeout(2)
    try:
        for _ in range(256):  # 16 MiB offered; the server must stop taking it after 256 KiB
            sock.sendall(frame)
    except OSError:
        pass  # reset, or the server stopped reading: either way it no longer buffers
    growth = rss(interface) - before
    interface.wait_for_log("before the handshake was accepted; rejecting")
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect["reply_channel"] == message["reply_channel"]
    print(f"frames before accept: 16 MiB offered, RSS grew {growth / MiB:.1f} MiB")
    assert growth < 6 * MiB, f"the process grew by {growth / MiB:.1f} MiB"
    sock.close()


def test_client_that_reads_nothing_is_dropped_at_the_ws_output_cap(layer, app, start_interface):
    interface = start_interface(layer, "--max-ws-output-buffer", "2M")
    sock = ws_connect(interface, receive_buffer=4096)
    _, message = app.receive("websocket.connect")
    app.send(message["reply_channel"], {"accept": True})
    read_101(sock)
    before = rss(interface)
    payload = b"y" * (512 * 2**10)
    disconnect = None
    for _ in range(128):  # 64 MiB of echoes to a client reading nothing
        channel, disconnect = app.layer.receive(["websocket.disconnect"], block=False)
        if channel is not None:
            break
        deadline = time.monotonic() + 10
        while True:
            try:
                app.send(message["reply_channel"], {"bytes": payload})
                break
            except app.layer.ChannelFull:
                assert time.monotonic() < deadline, "the interface stopped reading its replies"
                time.sleep(0.01)
    if disconnect is None:
        _, disconnect = app.receive("websocket.disconnect", timeout=20)
    growth = rss(interface) - before
    print(f"ws output: 64 MiB of echoes to a non-reader, RSS grew {growth / MiB:.1f} MiB")
    assert disconnect["code"] == 1008
    assert "reads too slowly" in interface.stderr
    assert growth < 8 * MiB, f"the process grew by {growth / MiB:.1f} MiB"
    assert_closed(sock)


def test_body_dribbled_slower_than_the_request_deadline_gets_408(layer, app, start_interface):
    interface = start_interface(layer, "--max-request-time", "0.5", "--http-timeout", "60")
    sock = interface.connect()
    before = rss(interface)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(300):  # one byte every 50 ms: progress all the time, never complete
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            break
        sock.sendall(b"z")
    status, headers, _ = read_http_response(sock)
    assert status == 408 and headers[b"connection"] == b"close"
    assert_closed(sock)
    app.receive_nothing("http.request")
    growth = rss(interface) - before
    print(f"dribbled body: RSS grew {growth / MiB:.1f} MiB")
    assert growth < 4 * MiB


def test_invalid_close_code_is_answered_with_1002_and_the_application_is_told_1002(
    layer, app, start_interface
):
    interface = start_interface(layer)
    sock = ws_connect(interface)
    _, message = app.receive("websocket.connect")
    app.send(message["reply_channel"], {"accept": True})
    frames = read_101(sock)
    sock.sendall(b"\x88\x82\x00\x00\x00\x00" + struct.pack("!H", 999))  # 999: never valid
    while len(frames) < 4:
        chunk = sock.recv(4096)
        assert chunk, "the server closed without a close frame"
        frames += chunk
    assert frames[0] == 0x88  # a close frame...
    assert struct.unpack("!H", frames[2:4])[0] == 1002  # ...with 1002 (protocol error)
    _, disconnect = app.receive("websocket.disconnect")
    assert disconnect["code"] == 1002
    assert_closed(sock)


def test_pipelined_flood_is_not_read_while_the_first_response_is_pending(layer, app, start_interface):
    interface = start_interface(layer)
    sock = interface.connect()
    before = rss(interface)
    flood = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n" * 4096  # 112 KiB per send
    sock.settimeout(2)
    sent = 0
    try:
        for _ in range(300):  # up to 33 MiB; the server must stop reading long before
            sock.sendall(flood)
            sent += len(flood)
    except (socket.timeout, OSError):
        pass  # the kernel buffers are full: the server is not reading
    growth = rss(interface) - before
    print(f"pipelined flood: {sent / MiB:.1f} MiB accepted by the kernel, RSS grew {growth / MiB:.1f} MiB")
    assert sent < 300 * len(flood), "the server read the whole flood"
    assert growth < 8 * MiB, f"the process grew by {growth / MiB:.1f} MiB"
    first = app.request()
    assert first["path"] == "/p"
    app.respond(first)  # the connection goes on in order once answered
    assert read_http_response(sock)[0] == 200
    sock.close()
