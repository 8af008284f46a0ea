"""Message (de)serialisation: msgpack only (never pickle), bytes and str kept apart.

ASGI 1 messages are dicts of bytes, str, int (signed 64-bit), float, bool, None, lists (tuples
become lists) and dicts with str keys. Anything else is refused with a ``TypeError`` that names
where in the message the bad value is.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import MessageTooLarge

__all__ = ["pack", "pack_within", "unpack", "find_bad_value"]

_packer = msgpack.Packer(use_bin_type=True, autoreset=True, strict_types=False)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def find_bad_value(value: Any, path: str = "message") -> str | None:
    """Describe the first value that ASGI 1 does not allow, or None if all are fine."""
    if value is None or isinstance(value, (bool, float, str, bytes)):
        return None
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            return f"{path} is {value}, outside the signed 64-bit range"
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            bad = find_bad_value(item, f"{path}[{i}]")
            if bad:
                return bad
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key {key!r} of type {type(key).__name__}; keys must be str"
            bad = find_bad_value(item, f"{path}[{key!r}]")
            if bad:
                return bad
        return None
    return f"{path} is a {type(value).__name__} ({value!r:.60}), which a message cannot hold"


def pack(message: Any) -> bytes:
    """Serialise a message dict; raise ``TypeError`` saying which value is not allowed."""
    if not isinstance(message, dict):
        raise TypeError(f"a message must be a dict, not {type(message).__name__}")
    try:
        data = _packer.pack(message)
    except (TypeError, ValueError, OverflowError):
        _packer.reset()
        bad = find_bad_value(message)
        raise TypeError(f"cannot send this message: {bad or 'it is not serialisable'}") from None
    # msgpack accepts a few things ASGI does not (non-str keys); check those cheaply here.
    for key in message:
        if not isinstance(key, str):
            raise TypeError(f"cannot send this message: {find_bad_value(message)}")
    return data


def unpack(data: bytes) -> dict:
    """Deserialise a payload written by ``pack``."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def pack_within(message: Any, limit: int, what: str) -> bytes:
    """``pack(message)``, refused with ``MessageTooLarge`` above ``limit`` bytes.

    :param what: names the message in the error, e.g. ``"message to 'chat'"``.
    """
    payload = pack(message)
    if len(payload) > limit:
        raise MessageTooLarge(
            f"{what} is {len(payload)} bytes serialised; the limit is {limit}. "
            "Send large bodies in chunks")
    return payload
