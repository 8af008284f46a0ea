"""Where the Redis layer keeps things: host URLs, shard choice, key names, the queue entry.

Pure functions and small value classes, no I/O, so the rules are tested without a server.

Sharding follows ``asgi_redis``: a name is hashed with CRC-32, its low 12 bits (0..4095) are
scaled onto the list of hosts, so adding a host moves only the names of one slice of the ring.
A channel lives on the shard of its *non-local* name (``http.response!`` for
``http.response!abc``), so every message a process must read sits in one list on one server;
a group lives on the shard of the group name.

Keys, for a layer ``prefix``::

    <prefix>:q:<channel key>   list of entries, oldest first (LPOP takes the head)
    <prefix>:s:<channel key>   hash of the channel's counters (sent, received, expired, full, rates)
    <prefix>:g:<group>         sorted set of member channels scored by their latest group_add
    <prefix>:m:<channel>       set of the groups a (full) channel name belongs to, on the
                               shard of the channel, so an expiry can evict it from them
    <prefix>:stats             hash of the shard's layer-wide counters

An entry is ``b"<deadline ms> <sent ms> <full channel name> <msgpack payload>"``: names never hold
spaces, and the server-side scripts read the deadline with one pattern match.
"""

from __future__ import annotations

import urllib.parse
import zlib
from typing import NamedTuple, Sequence, Union

__all__ = ["DEFAULT_HOST", "Entry", "Keys", "decode_entry", "encode_entry",
           "normalise_hosts", "redact", "shard_index"]

DEFAULT_HOST = "redis://127.0.0.1:6379/0"
_RING = 4096  # 12 bits of CRC-32, as asgi_redis

HostSpec = Union[str, Sequence[object]]


def shard_index(name: str, count: int) -> int:
    """The shard (0..count-1) of ``name`` on a consistent ring of ``count`` hosts."""
    if count == 1:
        return 0
    return int((zlib.crc32(name.encode("ascii")) & (_RING - 1)) / (_RING / count))


def normalise_hosts(hosts: object) -> list[str]:
    """Turn the ``hosts`` setting into ``redis://``/``rediss://``/``unix://`` URLs.

    Accepts a list of URLs or of ``(host, port)`` pairs; ``None`` means ``[DEFAULT_HOST]``. A bare
    string is refused, since iterating it would give one "host" per character.
    """
    if hosts is None:
        return [DEFAULT_HOST]
    if isinstance(hosts, (str, bytes)):
        raise TypeError(f"hosts must be a list of Redis URLs, not a string: use [{hosts!r}]")
    if not isinstance(hosts, (list, tuple)) or not hosts:
        raise TypeError(f"hosts must be a non-empty list of Redis URLs, not {hosts!r}")
    urls = []
    for host in hosts:
        if isinstance(host, str):
            scheme = urllib.parse.urlsplit(host).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError(
                    f"Redis host {redact(host)!r} must be a redis://, rediss:// (TLS) or unix:// "
                    "URL, e.g. redis://:password@127.0.0.1:6379/0")
            urls.append(host)
        elif (isinstance(host, (list, tuple)) and len(host) == 2 and isinstance(host[0], str)
              and isinstance(host[1], int)):
            urls.append(f"redis://{host[0]}:{host[1]}/0")
        else:
            raise TypeError(f"each Redis host must be a URL or a (host, port) pair, not {host!r}")
    if len(set(urls)) != len(urls):
        raise ValueError(f"hosts lists a server twice: {[redact(u) for u in urls]}")
    return urls


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class Keys:
    """The Redis key names of one layer ``prefix`` (see the module docstring)."""

    __slots__ = ("prefix", "stats", "pattern", "_q", "_s", "_g", "_m")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.stats = f"{prefix}:stats"
        self.pattern = f"{prefix}:*"
        self._q, self._s, self._g = f"{prefix}:q:", f"{prefix}:s:", f"{prefix}:g:"
        self._m = f"{prefix}:m:"

    def queue(self, key: str) -> str:
        """The list holding the messages of channel key ``key`` (a non-local name)."""
        return self._q + key

    def channel_stats(self, key: str) -> str:
        """The hash of counters of channel key ``key``."""
        return self._s + key

    def group(self, group: str) -> str:
        """The sorted set of ``group``'s members."""
        return self._g + group

    def memberships(self, channel: str) -> str:
        """The set of groups the full channel name ``channel`` belongs to."""
        return self._m + channel

    def queue_pattern(self) -> str:
        return self._q + "*"

    def group_pattern(self) -> str:
        return self._g + "*"

    def channel_of_queue(self, queue_key: bytes | str) -> str:
        """The channel key of a queue key found by SCAN."""
        text = queue_key.decode("ascii") if isinstance(queue_key, bytes) else queue_key
        return text[len(self._q):]

    def group_of_key(self, group_key: bytes | str) -> str:
        """The group name of a group key found by SCAN."""
        text = group_key.decode("ascii") if isinstance(group_key, bytes) else group_key
        return text[len(self._g):]


class Entry(NamedTuple):
    """A decoded queue entry."""

    deadline_ms: int
    sent_ms: int
    channel: str
    payload: bytes


def encode_entry(deadline_ms: int, sent_ms: int, channel: str, payload: bytes) -> bytes:
    """The bytes stored in a channel's list for one message (see the module docstring)."""
    return b"%d %d %s %s" % (deadline_ms, sent_ms, channel.encode("ascii"), payload)


def decode_entry(entry: bytes) -> Entry:
    """Split an entry written by ``encode_entry`` (or the enqueue script)."""
    deadline, sent, channel, payload = entry.split(b" ", 3)
    return Entry(int(deadline), int(sent), channel.decode("ascii"), payload)
