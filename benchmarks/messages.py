"""The messages the channel-layer benchmark sends, and how their ids are packed.

Every benchmark message carries an integer under ``"bench_id"`` so receivers can count losses and
duplicates. Cross-process ids pack the producer number into the high bits: ``make_id(p, seq)``.

- :func:`http_request` is an ASGI-1 ``http.request`` message (reference ``channels1.md`` section 2.1)
  padded with realistic headers to a given msgpack size (about 1 KB by default);
- :func:`http_response` is the small reply used by the round-trip case;
- :func:`payload` is a bare ``{"bench_id", "body"}`` message of a given msgpack size, for the
  100 B / 10 KB / 512 KB cases.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = [
    "ID_KEY",
    "STOP_KEY",
    "http_request",
    "http_response",
    "make_id",
    "packed_size",
    "payload",
    "split_id",
    "stop_message",
]

ID_KEY = "bench_id"
STOP_KEY = "bench_stop"
_SEQ_BITS = 40


def make_id(producer: int, seq: int) -> int:
    """Return a unique id for message ``seq`` of producer ``producer`` (both >= 0, seq < 2**40)."""
    if producer < 0 or not 0 <= seq < 1 << _SEQ_BITS:
        raise ValueError(f"producer must be >= 0 and 0 <= seq < 2**40, got {producer}, {seq}")
    return (producer << _SEQ_BITS) | seq


def split_id(message_id: int) -> tuple[int, int]:
    """Inverse of :func:`make_id`: ``(producer, seq)``."""
    return message_id >> _SEQ_BITS, message_id & ((1 << _SEQ_BITS) - 1)


def packed_size(message: dict[str, Any]) -> int:
    """Size in bytes of ``message`` as msgpack (``use_bin_type=True``, as both layers encode it)."""
    return len(msgpack.packb(message, use_bin_type=True))


_HEADERS = [
    [b"host", b"localhost:8000"],
    [b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"],
    [b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
    [b"accept-language", b"en-GB,en;q=0.7,fr;q=0.3"],
    [b"accept-encoding", b"gzip, deflate, br, zstd"],
    [b"referer", b"http://localhost:8000/articles/2026/11/"],
    [b"connection", b"keep-alive"],
    [b"upgrade-insecure-requests", b"1"],
    [b"sec-fetch-dest", b"document"],
    [b"sec-fetch-mode", b"navigate"],
    [b"sec-fetch-site", b"same-origin"],
    [b"sec-fetch-user", b"?1"],
    [b"priority", b"u=0, i"],
]


def http_request(reply_channel: str, size: int = 1024, message_id: int = 0) -> dict[str, Any]:
    """An ``http.request`` message whose msgpack encoding is ``size`` bytes (within a few bytes).

    The padding is a ``cookie`` header, as a real browser's session and analytics cookies would be.
    Raises ValueError if ``size`` is smaller than the message without any cookie.
    """
    message: dict[str, Any] = {
        "reply_channel": reply_channel,
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/articles/2026/11/a-fairly-typical-url-slug/",
        "query_string": b"page=2&sort=-published",
        "root_path": "",
        "headers": [list(h) for h in _HEADERS],
        "body": b"",
        "client": ["127.0.0.1", 51234],
        "server": ["127.0.0.1", 8000],
        ID_KEY: message_id,
    }
    message["headers"].append([b"cookie", b"sessionid="])
    base = packed_size(message)
    if size < base:
        raise ValueError(f"an http.request message packs to at least {base} bytes; asked for {size}")
    for _ in range(3):  # the bin header of the cookie grows by 1-2 bytes past 255 / 65535 bytes
        missing = size - packed_size(message)
        if missing == 0:
            break
        cookie = message["headers"][-1][1]
        message["headers"][-1][1] = cookie + b"x" * missing if missing > 0 else cookie[:missing]
    return message


def http_response(message_id: int = 0) -> dict[str, Any]:
    """A small complete ``http.response`` (status, headers, short content), as a view would send."""
    return {
        "status": 200,
        "headers": [[b"content-type", b"text/html; charset=utf-8"], [b"content-length", b"12"]],
        "content": b"Hello world!",
        "more_content": False,
        ID_KEY: message_id,
    }


def payload(size: int, message_id: int = 0) -> dict[str, Any]:
    """A ``{"bench_id": id, "body": bytes}`` message whose msgpack encoding is about ``size`` bytes.

    Exact for ids that pack like the given one; raises ValueError for sizes under 32 bytes.
    """
    if size < 32:
        raise ValueError(f"payload size must be >= 32 bytes, got {size}")
    message: dict[str, Any] = {ID_KEY: message_id, "body": b""}
    overhead = packed_size(message)
    body_len = size - overhead
    # a bin8 header is 2 bytes, bin16 3 bytes, bin32 5 bytes; the empty body already counts 2
    if body_len > 255:
        body_len -= 1
    if body_len > 65535:
        body_len -= 2
    message["body"] = b"\x00" * body_len
    return message


def stop_message() -> dict[str, Any]:
    """The sentinel a producer sends after its data so consumers know when to stop."""
    return {STOP_KEY: True, ID_KEY: -1}
