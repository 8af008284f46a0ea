"""The WebSocket protocol in memory: string transports, a fake clock, a real layer, and the
``websockets`` library's sans-I/O client on the other end.

Covers the reply table of ``ws_protocol`` (accept, reject, data, close), ``order`` numbering,
``websocket.disconnect`` exactly once, the connect timeout driven by the clock, the pre-accept
byte cap, graceful stop (1001) and an invalid close code from the client (1002).
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from tests.procman.interface.memory import MemoryClient, MemorySite


class WSClient:
    """A ``websockets`` client protocol speaking to one in-memory connection."""

    def __init__(self, site: MemorySite, path: str = "/chat/", protocols: list[str] | None = None) -> None:
        self.site = site
        self.conn: MemoryClient = site.connect()
        self.ws = ClientProtocol(
            parse_uri(f"ws://example.com{path}"),
            subprotocols=[Subprotocol(name) for name in protocols or []],
        )
        self.ws.send_request(self.ws.connect())
        self._flush()

    def _flush(self) -> None:
        for data in self.ws.data_to_send():
            if data:
                self.conn.send(data)

    def events(self) -> list[Any]:
        """Everything the server wrote since the last call, as client events."""
        data = self.conn.transport.value()
        self.conn.transport.clear()
        if data:
            self.ws.receive_data(data)
        if self.conn.closing:
            self.ws.receive_eof()
        self._flush()  # the client's automatic answers (a close frame's echo)
        return self.ws.events_received()

    def handshake(self) -> Response:
        (response,) = [event for event in self.events() if isinstance(event, Response)]
        return response

    def frames(self) -> list[Frame]:
        return [event for event in self.events() if isinstance(event, Frame)]

    def send_text(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self._flush()

    def send_close(self, code: int, reason: str = "") -> None:
        self.ws.send_close(code, reason)
        self._flush()


def _connect(site: MemorySite, **kwargs: Any) -> tuple[WSClient, dict]:
    client = WSClient(site, **kwargs)
    _, message = site.app.receive("websocket.connect", timeout=1)
    return client, message


def _accepted(site: MemorySite, **kwargs: Any) -> tuple[WSClient, dict]:
    client, connect = _connect(site, **kwargs)
    site.app.send(connect["reply_channel"], {"accept": True})
    assert site.deliver() == 1
    assert client.handshake().status_code == 101
    return client, connect


@pytest.fixture
def site(layer: Any) -> MemorySite:
    return MemorySite(layer, ping_interval=0, websocket_connect_timeout=5.0, ws_protocols=["chat"])


def test_connect_frames_both_ways_and_a_clean_close(site: MemorySite) -> None:
    client, connect = _accepted(site, path="/chat/room?x=1")
    assert (connect["path"], connect["query_string"], connect["order"]) == ("/chat/room", b"x=1", 0)
    reply = connect["reply_channel"]
    client.send_text("one")
    client.send_text("two")
    received = [site.app.receive("websocket.receive", timeout=1)[1] for _ in range(2)]
    assert [(m["text"], m["order"], m["reply_channel"]) for m in received] == [
        ("one", 1, reply), ("two", 2, reply)]
    site.app.send(reply, {"text": "back"})
    site.app.send(reply, {"bytes": b"\x00\x01"})
    assert site.deliver() == 2
    assert [(f.opcode, f.data) for f in client.frames()] == [(Opcode.TEXT, b"back"), (Opcode.BINARY, b"\x00\x01")]
    client.send_close(1000)
    frames = client.frames()
    assert [Close.parse(f.data).code for f in frames if f.opcode is Opcode.CLOSE] == [1000]
    assert client.conn.closing
    client.conn.lose()
    _, disconnect = site.app.receive("websocket.disconnect", timeout=1)
    assert disconnect == {"reply_channel": reply, "path": "/chat/room", "code": 1000, "order": 3}
    client.conn.lose()  # a second connection-lost changes nothing: one disconnect only
    site.app.receive_nothing("websocket.disconnect")
    assert site.server.connections == set()


def test_the_first_offered_subprotocol_we_support_is_chosen(site: MemorySite) -> None:
    client, connect = _connect(site, protocols=["x", "chat"])
    assert connect["subprotocols"] == ["x", "chat"]
    site.app.send(connect["reply_channel"], {"accept": True})
    site.deliver()
    assert client.handshake().headers["Sec-WebSocket-Protocol"] == "chat"


def test_data_before_accept_is_an_implicit_accept(site: MemorySite) -> None:
    client, connect = _connect(site)
    site.app.send(connect["reply_channel"], {"text": "hello", "close": 4001})
    site.deliver()
    events = client.events()
    assert [e.status_code for e in events if isinstance(e, Response)] == [101]
    frames = [e for e in events if isinstance(e, Frame)]
    assert frames[0].data == b"hello" and Close.parse(frames[1].data).code == 4001
    client.conn.lose()
    _, disconnect = site.app.receive("websocket.disconnect", timeout=1)
    assert disconnect["code"] == 4001 and disconnect["order"] == 1


@pytest.mark.parametrize(
    "reply",
    [{"accept": False}, {"close": True}, {"close": 4000}, {"accept": False, "text": "ignored"}],
    ids=["accept-false", "close-true", "close-code", "reject-with-data"],
)
def test_a_refusal_answers_403_and_still_sends_a_disconnect(site: MemorySite, reply: dict) -> None:
    client, connect = _connect(site)
    site.app.send(connect["reply_channel"], reply)
    site.deliver()
    assert client.handshake().status_code == 403 and client.conn.closing
    client.conn.lose()
    _, disconnect = site.app.receive("websocket.disconnect", timeout=1)
    assert disconnect["reply_channel"] == connect["reply_channel"]
    assert disconnect["order"] == 1 and disconnect["code"] == 1006
    assert '"WSREJECT /chat/"' in site.access_log.getvalue()


def test_an_unanswered_handshake_is_refused_after_the_connect_timeout(site: MemorySite) -> None:
    client, connect = _connect(site)
    site.advance(5.0)
    assert client.events() == []
    site.advance(1.0)
    assert client.handshake().status_code == 403
    client.conn.lose()
    _, disconnect = site.app.receive("websocket.disconnect", timeout=1)
    assert disconnect["reply_channel"] == connect["reply_channel"] and disconnect["code"] == 1006
    site.app.send(connect["reply_channel"], {"accept": True})  # too late: dropped
    site.deliver()
    assert client.conn.transport.value() == b""


def test_too_much_data_before_accept_is_refused_with_400(layer: Any) -> None:
    site = MemorySite(layer, ping_interval=0, max_ws_pending=1024)
    client, connect = _connect(site)
    frame = b"\x81\xfe\x00\x64abcd" + b"x" * 100  # masked text frames (the client may not send yet)
    for _ in range(12):
        client.conn.send(frame)
    assert client.handshake().status_code == 400 and client.conn.closing


def _close_codes(site: MemorySite, client: WSClient) -> tuple[int, int]:
    """The code of the one close frame the server sent, and the code ``websocket.disconnect``
    carries once the socket is gone."""
    (close,) = [f for f in client.frames() if f.opcode is Opcode.CLOSE]
    client.conn.lose()
    return Close.parse(close.data).code, site.app.receive("websocket.disconnect", timeout=1)[1]["code"]


def test_graceful_stop_closes_open_sockets_with_1001(site: MemorySite) -> None:
    client, _ = _accepted(site)
    site.server.graceful_stop()
    assert _close_codes(site, client) == (1001, 1001)


def test_an_invalid_close_code_from_the_client_is_answered_1002(site: MemorySite) -> None:
    client, _ = _accepted(site)
    # A masked close frame (mask "abcd") carrying 1005, a code no endpoint may send.
    client.conn.send(b"\x88\x82abcd" + bytes(a ^ b for a, b in zip((1005).to_bytes(2, "big"), b"ab")))
    assert _close_codes(site, client) == (1002, 1002)


def test_a_reply_with_unknown_keys_is_dropped(site: MemorySite) -> None:
    client, connect = _accepted(site)
    site.app.send(connect["reply_channel"], {"text": "x", "oops": 1})
    site.deliver()
    assert client.frames() == [] and not client.conn.closing
