"""``RedisChannelLayer``: the ASGI 1 channel layer of ``asgi_ipc`` over one or more Redis servers.

The same API, names, errors, serialisation and capacity rules as ``IPCChannelLayer`` (they are
imported from ``names``, ``errors`` and ``serialise``), for sites that span machines. Needs
redis-py >= 5 (``pip install 'asgi_ipc[redis]'``).

How it keeps the guarantees (details in ``redis_shards``, ``redis_scripts``, ``redis_receive``):

- Each channel is one Redis list of entries on the shard its non-local name hashes to; a
  message is taken with one atomic pop (``LPOP`` inside a script, or ``BLPOP``), so it is
  delivered at most once however many processes read the channel.
- Sends, group sends and pops are Lua scripts: the capacity check and the push, or the pop and
  its counters, happen together or not at all.
- Every entry carries its deadline; scripts drop expired entries (counted) instead of
  delivering them, and a list's TTL makes an abandoned channel vanish by itself.
- Groups are sorted sets scored by the time of the latest ``group_add``; older members are
  removed before the set is read.
- Blocking receives wait in ``BLPOP`` (no polling) and end without ever losing a popped
  message, also when cancelled; see ``redis_receive``.

The source follows the spec's order: core API, groups, flush, then the Twisted and asyncio
extensions; the statistics extension and the operators' tools are in ``redis_stats``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterator, Mapping

import redis as redis_py
from redis import exceptions as redis_errors

from .errors import ArenaFull, ChannelFull, MessageTooLarge
from .names import (
    CapacityRules,
    new_channel_names,
    non_local_name,
    validate_channel,
    validate_group,
    validate_receive_channels,
)
from .redis_receive import receive_async, receive_blocking, receive_twisted
from .redis_scripts import ENQUEUE, POP, SETTLE
from .redis_shards import Keys, decode_entry, normalise_hosts, redact, shard_index
from .redis_stats import StatisticsExtension
from .segment import validate_prefix
from .serialise import pack_within, unpack

__all__ = ["RedisChannelLayer", "RedisUnavailable"]

_STATS_TTL = 3600  # seconds a channel's counters outlive its latest send



class RedisUnavailable(ConnectionError):
    """A Redis server of the layer cannot be reached; the call did nothing (or, for a receive,
    nothing was taken). The layer reconnects by itself on the next call once the server is back."""


class _Shard:
    """One Redis server: its connection pool, a client on it and the registered scripts."""

    def __init__(self, url: str, connection_kwargs: Mapping[str, Any]) -> None:
        self.url = url
        self.name = redact(url)
        self.pool = redis_py.ConnectionPool.from_url(url, **connection_kwargs)
        self.client = redis_py.Redis(connection_pool=self.pool)
        self.enqueue = self.client.register_script(ENQUEUE)
        self.pop = self.client.register_script(POP)
        self.settle = self.client.register_script(SETTLE)


class RedisChannelLayer(StatisticsExtension):
    """An ASGI 1 channel layer over Redis, sharded over ``hosts``.

    Parameters
    ----------
    hosts:
        Redis URLs (``redis://[:password@]host:port/db``, ``rediss://`` for TLS,
        ``unix:///path``) or ``(host, port)`` pairs; default ``["redis://127.0.0.1:6379/0"]``.
        Channels and groups are spread over them by consistent hashing; every process of a site
        must list the same hosts in the same order.
    prefix:
        Starts every key (``<prefix>:...``); sites sharing a server use different prefixes.
    expiry, group_expiry, capacity, channel_capacity:
        As ``IPCChannelLayer``: seconds a message may wait, seconds a membership lasts after
        its latest ``group_add``, the default per-channel capacity and pattern overrides (a
        process's ``prefix!`` channels share one capacity).
    max_message_size:
        Largest serialised message accepted (1 MiB); ``MessageTooLarge`` above it.
    receive_timeout:
        Longest a blocking receive waits before returning ``(None, None)``.
    connection_kwargs:
        Passed to redis-py's ``ConnectionPool.from_url`` for every host (e.g. ``ssl_ca_certs``,
        ``socket_connect_timeout``). ``decode_responses`` and retries are refused: a command
        retried after a lost reply could deliver a message twice.
    """

    extensions = ["groups", "flush", "statistics", "twisted", "asyncio"]
    ChannelFull = ChannelFull
    MessageTooLarge = MessageTooLarge
    ArenaFull = ArenaFull

    def __init__(
        self,
        hosts: list[Any] | None = None,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        max_message_size: int = 2**20,
        receive_timeout: float = 5.0,
        connection_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        urls = normalise_hosts(hosts)
        self.prefix = validate_prefix(prefix)
        if not expiry > 0:
            raise ValueError(f"expiry must be a positive number of seconds, not {expiry!r}")
        if not group_expiry > 0:
            raise ValueError(f"group_expiry must be positive, not {group_expiry!r}")
        if not receive_timeout > 0:
            raise ValueError(f"receive_timeout must be positive, not {receive_timeout!r}")
        if not isinstance(max_message_size, int) or max_message_size < 1:
            raise ValueError(f"max_message_size must be a positive int, not {max_message_size!r}")
        kwargs = {"socket_connect_timeout": 5.0,
                  "socket_timeout": max(10.0, receive_timeout + 5.0),
                  **(connection_kwargs or {})}
        if kwargs.get("decode_responses"):
            raise ValueError("connection_kwargs must not set decode_responses: messages are bytes")
        for name in ("retry", "retry_on_error", "retry_on_timeout"):
            if kwargs.get(name):
                raise ValueError(
                    f"connection_kwargs must not set {name}: a send retried after its reply was "
                    "lost could run twice and deliver the message twice (at most once)")
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.get_capacity = CapacityRules(capacity, channel_capacity)
        self.max_message_size = max_message_size
        self.receive_timeout = receive_timeout
        self.hosts = urls
        self._keys = Keys(self.prefix)
        self._shards = [_Shard(url, kwargs) for url in urls]
        self._queue_ttl = int(math.ceil(expiry)) + 1
        self._rotation = 0
        self._plans: dict[tuple[str, ...], list[tuple[str, int]]] = {}

    def close(self) -> None:
        """Close every connection to every host. Idempotent; the layer reconnects if used."""
        for shard in self._shards:
            shard.pool.disconnect()

    def __enter__(self) -> "RedisChannelLayer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisChannelLayer prefix={self.prefix!r} hosts={[s.name for s in self._shards]}>"

    # -- shards and errors -----------------------------------------------------------------------
    def _shard_of(self, name: str) -> _Shard:
        return self._shards[shard_index(name, len(self._shards))]

    @contextlib.contextmanager
    def _guard(self, shard: _Shard) -> Iterator[None]:
        """Turn redis-py's connection errors into ``RedisUnavailable`` naming the server, and
        Redis running out of ``maxmemory`` into ``ArenaFull``."""
        try:
            yield
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise RedisUnavailable(
                f"Redis at {shard.name} cannot be reached ({exc}); start it or fix the layer's "
                "hosts. The layer reconnects by itself on the next call") from exc
        except redis_errors.OutOfMemoryError as exc:
            raise ArenaFull(
                f"Redis at {shard.name} is out of memory (maxmemory): consumers are behind "
                "or maxmemory is too small") from exc

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    # ===== core API ===============================================================================
    def send(self, channel: str, message: dict) -> None:
        """Send ``message`` to ``channel``. Never blocks on other clients.

        Raises ``ChannelFull`` if the channel holds its capacity, ``MessageTooLarge`` above
        ``max_message_size``, ``TypeError`` for a bad name or message and ``RedisUnavailable``
        if the channel's server cannot be reached. The message is serialised before this
        returns, so later changes to the dict do not affect what is received.
        """
        validate_channel(channel)
        payload = self._payload(message, f"message to {channel!r}")
        key = non_local_name(channel)
        shard = self._shard_of(key)
        _delivered, refused = self._enqueue(shard, [(key, channel)], payload)
        if refused:
            raise ChannelFull(
                f"channel {key!r} holds its capacity of {self.get_capacity(key)} messages")

    def _payload(self, message: dict, what: str) -> bytes:
        """Serialise ``message``; raise ``MessageTooLarge`` (counted) above the limit."""
        try:
            return pack_within(message, self.max_message_size, what)
        except MessageTooLarge:
            shard = self._shards[0]
            with self._guard(shard):
                shard.client.hincrby(self._keys.stats, "too_large", 1)
            raise

    def _enqueue(self, shard: _Shard, members: list[tuple[str, str]],
                 payload: bytes) -> tuple[int, int]:
        """Run the ``ENQUEUE`` script for ``(channel key, full name)`` pairs on one shard."""
        now = self._now_ms()
        keys = [self._keys.stats]
        args: list[Any] = [now, now + int(self.expiry * 1000), now, payload,
                           self._queue_ttl, _STATS_TTL]
        for key, name in members:
            keys += [self._keys.queue(key), self._keys.channel_stats(key)]
            args += [name, self.get_capacity(key)]
        with self._guard(shard):
            delivered, refused, *evicted = shard.enqueue(keys=keys, args=args)
        self._evict(evicted)
        return int(delivered), int(refused)

    def receive(self, channels: list[str], block: bool = False) -> tuple[str | None, dict | None]:
        """Take one message from any of ``channels``: ``(channel, message)`` or ``(None, None)``.

        ``block=True`` waits in ``BLPOP`` (no polling) until a message arrives or
        ``receive_timeout`` passes. Channels and shards are tried in a rotating order so a busy
        channel cannot starve the others.
        """
        keys = [non_local_name(name) for name in validate_receive_channels(channels)]
        if block:
            return receive_blocking(self, keys)
        got = self._take_now(keys)
        return got if got is not None else (None, None)

    def _turn(self) -> int:
        """A counter advanced once per take, for rotating the order channels are tried in."""
        self._rotation += 1
        return self._rotation

    def _plan(self, keys: list[str], turn: int) -> list[tuple[_Shard, list[str]]]:
        """``keys`` rotated by ``turn`` and grouped by shard, the shard of the first key first.

        Each key leads once every ``len(keys)`` turns, so a busy channel cannot starve a quiet
        one, on one shard or several."""
        cache_key = tuple(keys)
        located = self._plans.get(cache_key)
        if located is None:
            located = [(key, shard_index(key, len(self._shards))) for key in dict.fromkeys(keys)]
            if len(self._plans) > 1000:
                self._plans.clear()
            self._plans[cache_key] = located
        start = turn % len(located)
        by_shard: dict[int, list[str]] = {}
        for key, index in located[start:] + located[:start]:
            by_shard.setdefault(index, []).append(key)
        return [(self._shards[index], shard_keys) for index, shard_keys in by_shard.items()]

    def _take_now(self, keys: list[str]) -> tuple[str, dict] | None:
        """Pop the first live message of ``keys`` without waiting (the ``POP`` script)."""
        now = self._now_ms()
        for shard, shard_keys in self._plan(keys, self._turn()):
            script_keys = ([self._keys.stats] + [self._keys.queue(k) for k in shard_keys]
                           + [self._keys.channel_stats(k) for k in shard_keys])
            with self._guard(shard):
                entry, *evicted = shard.pop(keys=script_keys, args=[now])
            self._evict(evicted)
            if entry:
                return self._deliver(entry)
        return None

    def _blocking_plan(self, keys: list[str]) -> list[tuple[_Shard, list[str]]]:
        """The queues a round of blocking pops waits on, per shard, in rotating order."""
        return [(shard, [self._keys.queue(k) for k in shard_keys])
                for shard, shard_keys in self._plan(keys, self._turn())]

    def _settle(self, shard: _Shard, reply: list[bytes], mode: str) -> tuple[str, dict] | None:
        """Account for an entry a ``BLPOP`` took: ``take`` it (the message, or None if it
        expired) or ``return`` it to the head of its queue."""
        queue, entry = reply
        key = self._keys.channel_of_queue(queue)
        with self._guard(shard):
            kept, *evicted = shard.settle(
                keys=[self._keys.stats, queue, self._keys.channel_stats(key)],
                args=[self._now_ms(), entry, mode, self._queue_ttl])
        self._evict(evicted)
        if mode == "take" and kept == 1:
            return self._deliver(entry)
        return None

    @staticmethod
    def _deliver(entry: bytes) -> tuple[str, dict]:
        decoded = decode_entry(entry)
        return decoded.channel, unpack(decoded.payload)

    def new_channel(self, pattern: str) -> str:
        """A new, unused single-reader channel name: ``pattern`` (ending in ``?``) + 12 letters."""
        for name in new_channel_names(pattern):
            shard = self._shard_of(name)
            with self._guard(shard):
                if not shard.client.exists(self._keys.queue(name)):
                    return name
        raise RuntimeError("could not find an unused channel name")  # pragma: no cover

    # ===== groups extension ======================================================================
    # A membership is written twice: the member in the group's sorted set (on the group's shard)
    # and the group in the channel's set of groups (on the channel's shard, beside its queue), so
    # a channel whose message expires unread can leave every group, as in the shm layer.
    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (idempotent; refreshes the membership's expiry)."""
        key = self._keys.group(validate_group(group))
        validate_channel(channel)
        ttl = int(math.ceil(self.group_expiry))
        shard = self._shard_of(group)
        with self._guard(shard):
            pipe = shard.client.pipeline(transaction=True)
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, ttl)
            pipe.execute()
        home = self._shard_of(non_local_name(channel))
        with self._guard(home):
            pipe = home.client.pipeline(transaction=True)
            pipe.sadd(self._keys.memberships(channel), group)
            pipe.expire(self._keys.memberships(channel), ttl)
            pipe.execute()

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a member."""
        key = self._keys.group(validate_group(group))
        validate_channel(channel)
        shard = self._shard_of(group)
        with self._guard(shard):
            shard.client.zrem(key, channel)
        home = self._shard_of(non_local_name(channel))
        with self._guard(home):
            home.client.srem(self._keys.memberships(channel), group)

    def _evict(self, channels: list[bytes]) -> None:
        """Remove channels whose message expired unread from all their groups."""
        for raw in channels:
            channel = raw.decode("ascii")
            home = self._shard_of(non_local_name(channel))
            with self._guard(home):
                pipe = home.client.pipeline(transaction=True)
                pipe.smembers(self._keys.memberships(channel))
                pipe.delete(self._keys.memberships(channel))
                groups, _deleted = pipe.execute()
            for group in groups:
                name = group.decode("ascii")
                shard = self._shard_of(name)
                with self._guard(shard):
                    shard.client.zrem(self._keys.group(name), channel)

    def group_channels(self, group: str) -> list[str]:
        """The current members of ``group`` (expired memberships are removed first)."""
        key = self._keys.group(validate_group(group))
        shard = self._shard_of(group)
        with self._guard(shard):
            pipe = shard.client.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", f"({time.time() - self.group_expiry!r}")
            pipe.zrange(key, 0, -1)
            _removed, members = pipe.execute()
        return [name.decode("ascii") for name in members]

    def send_group(self, group: str, message: dict) -> None:
        """Send ``message`` to every member of ``group``; full members are skipped (counted).

        One script call per shard holding members, whatever the number of members. The send is
        not atomic across shards: a member added or discarded meanwhile may or may not get it.
        Raises ``MessageTooLarge`` and ``TypeError`` like ``send``, never ``ChannelFull``.
        """
        validate_group(group)
        payload = self._payload(message, f"message to group {group!r}")
        by_shard: dict[int, list[tuple[str, str]]] = {}
        for name in self.group_channels(group):
            key = non_local_name(name)
            by_shard.setdefault(shard_index(key, len(self._shards)), []).append((key, name))
        delivered = refused = 0
        for index, members in by_shard.items():
            done, full = self._enqueue(self._shards[index], members, payload)
            delivered += done
            refused += full
        shard = self._shard_of(group)
        with self._guard(shard):
            pipe = shard.client.pipeline(transaction=False)
            pipe.hincrby(self._keys.stats, "group_sends", 1)
            pipe.hincrby(self._keys.stats, "group_deliveries", delivered)
            pipe.hincrby(self._keys.stats, "group_drops", refused)
            pipe.execute()

    # ===== flush extension =======================================================================
    def flush(self) -> None:
        """Drop every message, membership and counter of this layer's prefix on every host."""
        for shard in self._shards:
            with self._guard(shard):
                batch = []
                for key in shard.client.scan_iter(match=self._keys.pattern, count=500):
                    batch.append(key)
                    if len(batch) >= 500:
                        shard.client.unlink(*batch)
                        batch = []
                if batch:
                    shard.client.unlink(*batch)

    # ===== twisted and asyncio extensions ========================================================
    def receive_twisted(self, channels: list[str]):
        """A Deferred firing ``(channel, message)``, or ``(None, None)`` after
        ``receive_timeout``; the reactor watches the blocking pops' sockets (no thread).
        Cancelling the Deferred never loses a message."""
        keys = [non_local_name(name) for name in validate_receive_channels(channels)]
        return receive_twisted(self, keys)

    async def receive_async(self, channels: list[str]) -> tuple[str | None, dict | None]:
        """Await ``(channel, message)`` on the running asyncio loop (``(None, None)`` after
        ``receive_timeout``). Cancelling the await never loses a message."""
        keys = [non_local_name(name) for name in validate_receive_channels(channels)]
        return await receive_async(self, keys)
