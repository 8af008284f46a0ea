"""WebSocket data frames built once and written to many connections (group broadcast).

Theory of operation
-------------------
A group message reaches one interface process as one entry per member channel of that process,
each with an equal message dict (the layer expands its fan-out entry locally). Framing and
sending it through Autobahn's ``sendMessage`` for every member repeats the same work: argument
checks, opcode and length bytes, a fresh ``bytes`` join. Instead the reply loop asks a
:class:`FrameCache` for the frame of a ``{"text": ...}`` / ``{"bytes": ...}`` reply; equal
payloads met in a row share one Autobahn :class:`~autobahn.websocket.protocol.PreparedMessage`
(server frames are unmasked, so its bytes are the same for every connection), and each member
writes those bytes with :func:`send_prepared`.

The shortcut is taken only where it is byte-for-byte what ``sendMessage`` would write and leaves
Autobahn's state as ``sendMessage`` would: the connection is OPEN, no fragmented message is being
sent (``send_state`` is ground), and permessage-deflate was not negotiated (a compressed
connection falls back to ``sendMessage``, which compresses with that connection's own context).
A payload over ``maxMessagePayloadSize`` (or one Autobahn would fragment, or frame logging or
timing tracking switched on) also falls back, so Autobahn raises, fragments and logs as before.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol

__all__ = ["FrameCache", "send_prepared"]

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND


class FrameCache:
    """The frame of the last data-only reply seen, reused while the same payload repeats.

    One entry is enough: the members of one fan-out arrive one after the other. Holding one
    frame also bounds the memory (at most one message's worth).
    """

    __slots__ = ("_binary", "_payload", "_prepared")

    def __init__(self) -> None:
        self._payload: str | bytes | None = None
        self._binary = False
        self._prepared: PreparedMessage | None = None

    def frame_for(self, message: dict[str, Any]) -> PreparedMessage | None:
        """The prepared frame for ``message`` if it is exactly ``{"text": str}`` or
        ``{"bytes": bytes}``; None for anything else (close, accept, bad types: the normal path
        validates and reports those)."""
        if len(message) != 1:
            return None
        payload = message.get("text")
        if payload is not None:
            if type(payload) is not str:
                return None
            binary = False
        else:
            payload = message.get("bytes")
            if type(payload) is not bytes:
                return None
            binary = True
        if binary is self._binary and payload == self._payload and self._prepared is not None:
            return self._prepared
        data = payload if binary else payload.encode("utf-8")
        prepared = PreparedMessage(data, binary, applyMask=False, doNotCompress=False)
        self._payload, self._binary, self._prepared = payload, binary, prepared
        return prepared

    def clear(self) -> None:
        """Forget the held frame (its memory is released)."""
        self._payload, self._prepared = None, None


def send_prepared(connection: WebSocketProtocol, prepared: PreparedMessage) -> bool:
    """Write ``prepared`` on ``connection`` as ``sendMessage`` would; False if not OPEN.

    Uses the shared frame bytes when that is exactly equivalent (see the module docstring),
    otherwise ``sendMessage`` with the original payload.
    """
    if connection.state != _OPEN:
        return False
    payload = prepared.payload
    if (
        connection._perMessageCompress is not None
        or connection.send_state != _GROUND
        or 0 < connection.maxMessagePayloadSize < len(payload)
        or 0 < connection.autoFragmentSize < len(payload)
        or connection.trackedTimings
        or connection.logFrames
    ):
        connection.sendMessage(payload, isBinary=prepared.binary)
        return True
    stats = connection.trafficStats
    stats.outgoingWebSocketMessages += 1
    stats.outgoingWebSocketFrames += 1
    stats.outgoingOctetsAppLevel += len(payload)
    stats.outgoingOctetsWebSocketLevel += len(payload)
    connection.sendData(prepared.payloadHybi)
    return True
