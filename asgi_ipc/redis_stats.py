"""The statistics extension of ``RedisChannelLayer`` and its operators' tools.

Counters are kept by the server-side scripts (``redis_scripts``) in one hash per channel and one per
shard; reading one channel's statistics is one pipelined round trip. The layer-wide forms walk the
prefix's keys with ``SCAN`` on every host: tools for operators, not for a hot path.
"""

from __future__ import annotations

import time
from typing import Iterator

from .names import non_local_name, validate_channel
from .redis_shards import decode_entry
from .store import Store

__all__ = ["StatisticsExtension"]

_NO_STATS = {"messages_count": 0, "messages_count_per_second": 0.0, "messages_pending": 0,
             "messages_max_age": 0.0, "channel_full_count": 0,
             "channel_full_count_per_second": 0.0, "messages_received": 0, "messages_expired": 0}


class StatisticsExtension:
    """``global_statistics``, ``channel_statistics``, ``channel_list``, ``group_sizes``, ``check``
    for ``RedisChannelLayer`` (which supplies ``_shards``, ``_keys``, ``_guard`` and
    ``group_expiry``)."""

    group_expiry: float

    def global_statistics(self) -> dict[str, float | int]:
        """Layer-wide ASGI statistics summed over the hosts, plus error and group counters.

        Walks every channel key (``SCAN``): an operator's tool, not for a hot path."""
        now = time.time()
        totals = {"messages_count": 0, "messages_count_per_second": 0.0, "messages_pending": 0,
                  "messages_max_age": 0.0, "channel_full_count": 0,
                  "channel_full_count_per_second": 0.0, "messages_received": 0,
                  "messages_expired": 0, "message_too_large_count": 0, "group_sends": 0,
                  "group_deliveries": 0, "group_drops": 0}
        for shard in self._shards:
            with self._guard(shard):
                counters = shard.client.hgetall(self._keys.stats)
            stats = self._counters(counters, now)
            for field in ("messages_count", "messages_count_per_second", "channel_full_count",
                          "channel_full_count_per_second", "messages_received",
                          "messages_expired"):
                totals[field] += stats[field]
            for field, name in (("message_too_large_count", b"too_large"),
                                ("group_sends", b"group_sends"),
                                ("group_deliveries", b"group_deliveries"),
                                ("group_drops", b"group_drops")):
                totals[field] += int(counters.get(name, 0))
        for _key, pending, max_age in self._queues(now):
            totals["messages_pending"] += pending
            totals["messages_max_age"] = max(totals["messages_max_age"], max_age)
        sizes = self.group_sizes()
        totals["groups"] = len(sizes)
        totals["group_members"] = sum(sizes.values())
        return totals

    def channel_statistics(self, channel: str) -> dict[str, float | int]:
        """ASGI statistics of one channel (process-specific names report their ``prefix!``)."""
        key = non_local_name(validate_channel(channel))
        shard = self._shard_of(key)
        with self._guard(shard):
            pipe = shard.client.pipeline(transaction=False)
            pipe.hgetall(self._keys.channel_stats(key))
            pipe.llen(self._keys.queue(key))
            pipe.lindex(self._keys.queue(key), 0)
            counters, pending, head = pipe.execute()
        if not counters and not pending:
            return dict(_NO_STATS)
        now = time.time()
        stats = self._counters(counters, now)
        stats["messages_pending"] = pending
        stats["messages_max_age"] = self._age(head, now)
        return stats

    @staticmethod
    def _age(head: bytes | None, now: float) -> float:
        return max(0.0, now - decode_entry(head).sent_ms / 1000) if head else 0.0

    @staticmethod
    def _counters(counters: dict[bytes, bytes], now: float) -> dict[str, float | int]:
        """The ASGI statistics held in a counters hash (rates blended as the shm store does)."""
        def get(name: str) -> int:
            return int(counters.get(name.encode("ascii"), 0))

        return {
            "messages_count": get("sent"),
            "messages_count_per_second": Store._per_second(now, get("ssec"), get("scur"),
                                                           get("sprev")),
            "messages_pending": 0,
            "messages_max_age": 0.0,
            "channel_full_count": get("full"),
            "channel_full_count_per_second": Store._per_second(now, get("fsec"), get("fcur"),
                                                               get("fprev")),
            "messages_received": get("received"),
            "messages_expired": get("expired"),
        }

    def _queues(self, now: float) -> Iterator[tuple[str, int, float]]:
        """``(channel key, pending, age of the head)`` of every non-empty queue."""
        for shard in self._shards:
            with self._guard(shard):
                queues = list(shard.client.scan_iter(match=self._keys.queue_pattern(), count=500))
                pipe = shard.client.pipeline(transaction=False)
                for queue in queues:
                    pipe.llen(queue)
                    pipe.lindex(queue, 0)
                replies = pipe.execute() if queues else []
            for i, queue in enumerate(queues):
                pending, head = replies[2 * i], replies[2 * i + 1]
                if pending:
                    yield self._keys.channel_of_queue(queue), pending, self._age(head, now)

    def channel_list(self) -> list[tuple[str, dict[str, float | int]]]:
        """Every channel holding messages, with its statistics (for operators' tools)."""
        return [(key, self.channel_statistics(key)) for key, _pending, _age in
                self._queues(time.time())]

    def group_sizes(self) -> dict[str, int]:
        """Every group's count of unexpired members (for operators' tools)."""
        sizes: dict[str, int] = {}
        oldest = f"({time.time() - self.group_expiry!r}"
        for shard in self._shards:
            with self._guard(shard):
                groups = list(shard.client.scan_iter(match=self._keys.group_pattern(), count=500))
                pipe = shard.client.pipeline(transaction=False)
                for group in groups:
                    pipe.zcount(group, oldest, "+inf")
                counts = pipe.execute() if groups else []
            for group, count in zip(groups, counts):
                if count:
                    sizes[self._keys.group_of_key(group)] = count
        return sizes

    def check(self) -> list[str]:
        """Problems found on the hosts (unreachable, keys of the wrong type); empty if healthy."""
        problems = []
        expected = {self._keys.queue(""): b"list", self._keys.channel_stats(""): b"hash",
                    self._keys.group(""): b"zset", self._keys.memberships(""): b"set"}
        for shard in self._shards:
            try:
                with self._guard(shard):
                    keys = list(shard.client.scan_iter(match=self._keys.pattern, count=500))
                    pipe = shard.client.pipeline(transaction=False)
                    for key in keys:
                        pipe.type(key)
                    types = pipe.execute() if keys else []
            except ConnectionError as exc:  # RedisUnavailable
                problems.append(str(exc))
                continue
            for key, kind in zip(keys, types):
                text = key.decode("ascii", "replace")
                want = next((t for p, t in expected.items() if text.startswith(p)),
                            b"hash" if text == self._keys.stats else None)
                if kind != want:
                    problems.append(f"{shard.name}: key {text!r} is a {kind.decode()}, "
                                    f"expected {(want or b'no key').decode()}")
        return problems
