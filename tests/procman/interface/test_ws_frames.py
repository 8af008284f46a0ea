"""Broadcast frames built once (ws_frames): byte-exact against Autobahn's own ``sendMessage``, the
fallbacks where the shortcut would not be exact, and a real group broadcast through a real
interface process."""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from autobahn.websocket.compress import PerMessageDeflate
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.testing import StringTransport
from websockets.sync.client import connect

from procman.interface.server import InterfaceServer
from procman.interface.ws_frames import FrameCache, send_prepared
from procman.interface.ws_protocol import build_websocket_factory
from tests.procman.interface.conftest import Application
from tests.procman.interface.test_server_checks import FakeReactor


def _open_connection(layer, server=None):
    """A WebSocketConnection in state OPEN writing to a StringTransport."""
    server = server or InterfaceServer(layer, reactor=FakeReactor())
    connection = build_websocket_factory(server).buildProtocol(None)
    transport = StringTransport()
    connection.makeConnection(transport)
    connection.state = WebSocketProtocol.STATE_OPEN
    return connection, transport


def _written(transport: StringTransport) -> bytes:
    data = transport.value()
    transport.clear()
    return data


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("binary", [False, True])
def test_shared_frame_is_byte_exact_with_send_message(layer, size, binary):
    connection, transport = _open_connection(layer)
    payload = b"\xc3\xa9" * (size // 2) + b"a" * (size % 2)
    message = {"bytes": payload} if binary else {"text": payload.decode("utf-8")}
    prepared = FrameCache().frame_for(message)
    assert send_prepared(connection, prepared) is True
    shortcut = _written(transport)
    connection.sendMessage(payload, isBinary=binary)
    assert shortcut == _written(transport)
    assert shortcut[0] == (0x82 if binary else 0x81)
    assert shortcut[1] & 0x80 == 0  # server frames are never masked
    stats = connection.trafficStats
    assert stats.outgoingWebSocketMessages == 2 and stats.outgoingOctetsAppLevel == 2 * size


def test_cache_reuses_the_frame_only_for_an_equal_payload():
    cache = FrameCache()
    first = cache.frame_for({"text": "hello " + "x"})
    assert cache.frame_for({"text": "hello x"}) is first  # equal, not identical, strings
    assert cache.frame_for({"bytes": b"hello x"}) is not first  # same bytes, other opcode
    assert cache.frame_for({"text": "other"}).payloadHybi == b"\x81\x05other"
    for message in ({"text": "a", "close": True}, {"accept": True}, {"text": b"a"}, {"bytes": "a"}, {}):
        assert cache.frame_for(message) is None  # the normal path validates and applies these


def test_negotiated_compression_falls_back_to_send_message(layer):
    connection, transport = _open_connection(layer)
    connection._perMessageCompress = PerMessageDeflate(
        is_server=True, server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=15, client_max_window_bits=15, mem_level=8,
    )
    payload = "compress me " * 20
    send_prepared(connection, FrameCache().frame_for({"text": payload}))
    frame = _written(transport)
    assert frame[0] == 0xC1  # FIN + RSV1 (compressed) + text
    body = frame[2:]
    assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff") == payload.encode()


def test_fragmented_message_in_progress_and_oversize_fall_back(layer):
    connection, transport = _open_connection(layer)
    connection.beginMessage()  # the application is in the middle of a fragmented message
    assert connection.send_state != WebSocketProtocol.SEND_STATE_GROUND
    prepared = FrameCache().frame_for({"text": "x"})
    send_prepared(connection, prepared)
    fallback = _written(transport)
    connection.sendMessage(b"x")
    assert fallback == _written(transport)  # whatever Autobahn does there, unchanged

    connection, transport = _open_connection(layer)
    connection.maxMessagePayloadSize = 4
    with pytest.raises(Exception, match="exceeding payload limit"):
        send_prepared(connection, FrameCache().frame_for({"bytes": b"12345"}))
    assert _written(transport) == b""


@pytest.mark.parametrize(
    "state", [WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED]
)
def test_nothing_is_written_unless_open(layer, state):
    connection, transport = _open_connection(layer)
    connection.state = state
    assert send_prepared(connection, FrameCache().frame_for({"text": "x"})) is False
    assert _written(transport) == b""


def test_group_broadcast_reaches_every_member_once_in_order(layer, app: Application, start_interface):
    interface = start_interface(layer)
    clients = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            for _ in range(5):  # one handshake at a time: the test, as the application, answers each
                future = pool.submit(
                    connect, f"ws://127.0.0.1:{interface.port}/g", open_timeout=20, close_timeout=5, legacy=True
                )
                _, message = app.receive("websocket.connect")
                layer.group_add("room", message["reply_channel"])
                app.send(message["reply_channel"], {"accept": True})
                clients.append(future.result(timeout=30))
            texts = [f"broadcast {i} " + "y" * (i * 50) for i in range(8)]
            for text in texts:
                layer.send_group("room", {"text": text})
            layer.send_group("room", {"bytes": b"\x00\x01"})
            for client in clients:
                assert [client.recv(timeout=20) for _ in texts] == texts
                assert client.recv(timeout=20) == b"\x00\x01"
        finally:
            for client in clients:
                client.close()


class _CountingFanout:
    """The real layer, counting the calls of its ``receive_fanout`` (one group message taken whole)."""

    def __init__(self, layer) -> None:
        self._layer = layer
        self.fanout_calls = 0

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def receive_fanout(self, channels):
        self.fanout_calls += 1
        return self._layer.receive_fanout(channels)


class _WithoutFanout:
    """The real layer without ``receive_fanout`` (as a layer that lacks it, e.g. the Redis one)."""

    def __init__(self, layer) -> None:
        self._layer = layer

    def __getattr__(self, name):
        if name == "receive_fanout":
            raise AttributeError(name)
        return getattr(self._layer, name)


def _members(server, count: int):
    """``count`` OPEN WebSocketConnections registered with ``server`` as members of group g."""
    members = []
    for _ in range(count):
        connection, transport = _open_connection(server.layer, server)
        connection.reply_channel = server.new_reply_channel()
        server.register(connection.reply_channel, connection)
        server.layer.group_add("g", connection.reply_channel)
        members.append((connection, transport))
    return members


@pytest.mark.parametrize("with_fanout", [False, True])
def test_reply_loop_drains_a_fanout_to_every_local_member(layer, with_fanout):
    used = _CountingFanout(layer) if with_fanout else _WithoutFanout(layer)
    server = InterfaceServer(used, reactor=FakeReactor())
    members = _members(server, 4)
    layer.send_group("g", {"text": "hi"})
    # One fan-out taken whole, or one reply per member.
    assert server.dispatch_waiting() == (1 if with_fanout else 4)
    assert [_written(transport) for _, transport in members] == [b"\x81\x02hi"] * 4
    if with_fanout:
        assert used.fanout_calls == 2  # one fan-out, then one receive that found nothing
    assert layer.receive([server.process_channel], block=False) == (None, None)  # nothing left
