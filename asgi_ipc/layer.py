"""``IPCChannelLayer``: the ASGI 1 channel layer on one shared-memory segment.

The layer is a thin shell: names are validated and messages serialised *outside* the lock;
inside it, the two critical sections of ``critical.py`` ("append and pick a waiter", "take, or
register as waiter"; in C when they can) and ``store``/``groups``/``waiters`` do O(message) work
on the segment and pick a waiting receiver; after it, that receiver's doorbell is rung. The
source follows the spec's order: core API, groups, flush, statistics, process deaths, then the
blocking/Twisted/asyncio receive machinery.

Crash-safe wake-ups
-------------------
A sender can be killed between picking a receiver (its slot marked ``NOTIFIED`` under the lock)
and ringing it, or while holding the lock. Neither may leave the receiver asleep next to its
message, so a blocked receiver never sleeps longer than ``CHECK_INTERVAL`` without looking, for
free, at three things (``Attachment.stalled``): its slot is ``NOTIFIED`` (a ring may be lost),
the lock word is non-zero (a holder may have died inside: taking the lock repairs, and the
repair rings every live waiter), or a channel it waits on holds messages (anything else). Any
of them makes it take again. So a process killed at any instruction delays a live receiver by
at most ``CHECK_INTERVAL``, and by nothing when another process takes the lock first.

Ringing *after* the lock is released matters for speed: a receiver woken while its waker still
holds the lock would find it taken and sleep again on the futex (measured: round trip p50 about
1.6x slower on 2 busy cores with the ring inside the critical section).
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any, Mapping

import msgpack

from .attachment import Attachment
from .critical import Bell, Sections
from .errors import (
    ArenaFull,
    ChannelFull,
    MessageTooLarge,
    SegmentError,
    SegmentLost,
)
from .layout import MSG_FANOUT, W_FREE, Sizes
from .names import (
    CapacityRules,
    new_channel_names,
    non_local_name,
    validate_channel,
    validate_group,
    validate_receive_channels,
)
from .recovery import check
from .segment import is_alive, validate_prefix
from .serialise import pack_within, unpack
from .store import now

__all__ = ["IPCChannelLayer"]


#: This process's id, kept current across ``fork`` (every layer call checks that its
#: attachment belongs to the calling process; ``os.getpid()`` is a system call each time).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))

#: Longest a blocked receiver sleeps without looking at its slot, the lock and its queues: the
#: bound on how long a process killed at the worst instruction can delay a live one.
CHECK_INTERVAL = 1.0


class IPCChannelLayer:
    """An ASGI 1 channel layer in POSIX shared memory, shared by the processes of one machine.

    Parameters
    ----------
    prefix:
        Names the segment (``/dev/shm/asgi_ipc.<prefix>``); every process of a site uses the
        same prefix, and different sites use different ones.
    expiry:
        Seconds a message may wait to be received before it is dropped.
    group_expiry:
        Seconds a group membership lasts after its latest ``group_add``.
    capacity, channel_capacity:
        Messages a channel may hold before ``send`` raises ``ChannelFull``; ``channel_capacity``
        maps globs or compiled regexes to capacities (first match wins). Process-specific
        channels share one capacity per ``prefix!``.
    create:
        ``None`` attaches to the segment or creates it; ``True`` must create (the site's
        supervisor); ``False`` must attach (``SegmentMissing`` if there is none).
    message_memory, channels, groups, group_members, waiters, max_message_size:
        Sizes fixed when the segment is created: bytes of message arena (32 MiB), channel
        records (4096), group records (4096), memberships (32768), simultaneously blocked
        receivers (256), and the largest serialised message accepted (1 MiB;
        ``MessageTooLarge`` above it). An attacher that gives none of them adopts the
        segment's; one that gives any must match the creator's sizes exactly.
    receive_timeout:
        Longest a blocking receive waits before returning ``(None, None)``.
    lock_timeout:
        Longest to wait for the segment lock held by a live process.
    """

    extensions = ["groups", "flush", "statistics", "twisted", "asyncio"]
    ChannelFull = ChannelFull
    MessageTooLarge = MessageTooLarge
    ArenaFull = ArenaFull

    def __init__(
        self,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        create: bool | None = None,
        message_memory: int | None = None,
        channels: int | None = None,
        groups: int | None = None,
        group_members: int | None = None,
        waiters: int | None = None,
        max_message_size: int | None = None,
        receive_timeout: float = 5.0,
        lock_timeout: float = 10.0,
    ) -> None:
        self.prefix = validate_prefix(prefix)
        if not expiry > 0:
            raise ValueError(f"expiry must be a positive number of seconds, not {expiry!r}")
        if not group_expiry > 0:
            raise ValueError(f"group_expiry must be positive, not {group_expiry!r}")
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.get_capacity = CapacityRules(capacity, channel_capacity)
        given = (message_memory, channels, groups, group_members, waiters, max_message_size)
        if create is False and all(value is None for value in given):
            self.sizes = None  # adopt the segment's own sizes
        else:
            self.sizes = Sizes.from_config(
                32 * 2**20 if message_memory is None else message_memory,
                4096 if channels is None else channels,
                4096 if groups is None else groups,
                32768 if group_members is None else group_members,
                256 if waiters is None else waiters,
                2**20 if max_message_size is None else max_message_size)
        self.receive_timeout = receive_timeout
        self.lock_timeout = lock_timeout
        self._create = create
        self._attach_lock = threading.Lock()
        self._att: Attachment | None = Attachment(self, create)
        self._crit = Sections(self._att, self._forget_dead)
        self._owner = self._att.segment.owner
        self.sizes = self._att.segment.sizes
        self.max_message_size = self.sizes.max_message_size
        self._closed = False
        self._valid_names: dict[str, str] = {}
        # Messages already taken from the segment for this process: a group fan-out to
        # several local channels of one ``prefix!`` arrives as one entry and is expanded here.
        self._local: dict[str, collections.deque] = {}
        self._local_lock = threading.Lock()
        # The event-loop receivers of this process, by loop (see ``loop_receivers``).
        self._loop_receivers: dict[str, Any] = {}
        self._interrupts = 0  # bumped by wake(): blocked receives return (None, None)
        self._key_cache: dict[tuple[str, ...], tuple[bytes, ...]] = {}
        self._recv_cache: dict[tuple, tuple[list[str], tuple[bytes, ...]]] = {}

    # -- attachment ------------------------------------------------------------------------------
    def _a(self) -> Attachment:
        att = self._att
        if att is not None and att.pid == _PID[0]:
            return att
        with self._attach_lock:
            if self._closed:
                raise SegmentLost("this channel layer was closed")
            if self._att is None or self._att.pid != os.getpid():
                # A forked child: never reuse the parent's sockets; attach anew, never as owner.
                self._att = Attachment(self, create=False)
                self._crit = Sections(self._att, self._forget_dead)
                self._owner = False
                self._local = {}
                self._loop_receivers = {}
            return self._att

    def _sections(self) -> Sections:
        """The critical sections on this process's attachment (re-attaching after a fork)."""
        crit = self._crit
        if crit.att is self._att and crit.att.pid == _PID[0]:
            return crit
        att = self._a()
        if self._crit.att is not att:
            self._crit = Sections(att, self._forget_dead)
        return self._crit

    @property
    def owner(self) -> bool:
        """Whether this instance created the segment (and so removes it on ``close``)."""
        return self._owner and self._att is not None and self._att.pid == os.getpid()

    def close(self) -> None:
        """Detach; the creating instance also removes the segment. Idempotent."""
        with self._attach_lock:
            if self._closed:
                return
            self._closed = True
            att, self._att = self._att, None
        for receiver in list(self._loop_receivers.values()):
            receiver.close()
        if att is not None and att.pid == os.getpid():
            att.close(unlink=self._owner)

    def unlink(self) -> None:
        """Remove the segment now (creator only); attached processes get ``SegmentLost``."""
        if not self.owner:
            raise SegmentError("only the instance that created the segment may remove it")
        self._a().segment.unlink()

    def __enter__(self) -> "IPCChannelLayer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<IPCChannelLayer prefix={self.prefix!r}>"

    # -- names -----------------------------------------------------------------------------------
    def _channel(self, name: object) -> str:
        try:
            return self._valid_names[name]  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        validate_channel(name)
        if len(self._valid_names) < 20000:
            self._valid_names[name] = name  # type: ignore[index]
        return name  # type: ignore[return-value]

    # ===== core API ===============================================================================
    def send(self, channel: str, message: dict) -> None:
        """Send ``message`` to ``channel``. Never blocks.

        Raises ``ChannelFull`` if the channel is at capacity, ``ArenaFull`` if shared memory
        is exhausted, ``MessageTooLarge`` above ``max_message_size`` and ``TypeError`` for a
        bad name or message. The message is serialised before this returns, so later changes
        to the dict do not affect what is received.
        """
        channel = self._channel(channel)
        payload = self._payload(message, f"message to {channel!r}")
        t = now()
        key = non_local_name(channel)
        self._sections().append(key.encode("ascii"), channel.encode("ascii"), payload,
                                t + self.expiry, t, self.get_capacity(key))

    def _payload(self, message: dict, what: str) -> bytes:
        """Serialise ``message``; raise ``MessageTooLarge`` (counted) above the limit."""
        try:
            return pack_within(message, self.max_message_size, what)
        except MessageTooLarge:
            self._count("too_large")
            raise

    def _forget_dead(self, pids: list[int]) -> None:
        for pid in set(pids):
            if not is_alive(pid):  # a refused ring can also be a doorbell just closed
                self.forget_process(pid)

    def _count(self, counter: str) -> None:
        att = self._a()
        with att.lock:
            att.store.bump(counter)

    def receive(self, channels: list[str], block: bool = False) -> tuple[str | None, dict | None]:
        """Take one message from any of ``channels``: ``(channel, message)`` or ``(None, None)``.

        ``block=True`` waits (without polling) until a message arrives or ``receive_timeout``
        passes. Channels are tried in a rotating order so a busy one cannot starve the others.
        """
        keys, keys_b = self._receive_keys(channels)
        if not block:
            got = self._take(keys, keys_b, None)
            return got if got is not None else (None, None)
        att = self._a()
        bell = att.doorbell()
        deadline = now() + self.receive_timeout
        interrupts = self._interrupts
        while True:
            got = self._take(keys, keys_b, bell)
            if got is not None:
                return got
            remaining = deadline - now()
            if remaining <= 0 or self._interrupts != interrupts:
                self._sections().unregister(bell)
                return None, None
            while not bell.wait(min(remaining, CHECK_INTERVAL)):
                remaining = deadline - now()
                if remaining <= 0 or att.stalled(bell.wid):
                    break
            self.count_foreign(bell)
            att.segment.check_linked()

    def receive_fanout(self, channels: list[str]) -> tuple[list[str] | None, dict | None]:
        """Take one waiting entry for ``channels`` whole, without blocking: ``([channel, ...],
        message)``, or ``(None, None)`` if none is waiting.

        A group message sent to several local channels of one ``prefix!`` is one entry: it comes
        back as every one of those channels with the message decoded ONCE, the same dict for
        all of them (callers must treat it as read-only). Any other entry comes back as a list
        of one channel. Per channel, messages come in send order, as with ``receive``.
        """
        keys, keys_b = self._receive_keys(channels)
        if self._local:
            got = self._take_local_run(keys)
            if got is not None:
                return got
        popped = self._sections().take(keys_b, now())
        if popped is None:
            return None, None
        name, payload, extra, kind = popped[:4]
        name = name.decode("ascii")
        message = unpack(payload)
        if kind == MSG_FANOUT:
            return [name + local.decode("ascii")
                    for local in msgpack.unpackb(extra, raw=True)], message
        return [name], message

    def count_foreign(self, bell) -> None:
        """Add the rings from other users that ``bell`` swallowed to the statistics."""
        if bell.foreign:
            n, bell.foreign = bell.foreign, 0
            att = self._a()
            with att.lock:
                att.store.bump("foreign_rings", n)

    def wake(self) -> None:
        """End every receive blocked in this process now: they return ``(None, None)``.

        Safe to call from a signal handler (a stop signal: procman's worker and the interface
        call it): it takes no lock and only sends one byte to this process's own doorbells.
        """
        self._interrupts += 1
        att = self._att
        if att is None or att.pid != os.getpid():
            return
        bells = list(att.bells)
        for receiver in list(self._loop_receivers.values()):
            bells.append(receiver.bell)
        for bell in bells:
            bell.ring_self()

    @property
    def interrupts(self) -> int:
        """How many times ``wake`` was called: a receiver that sees it change ends its waits."""
        return self._interrupts

    def loop_receivers(self) -> dict[str, Any]:
        """This process's event-loop receivers by loop, for ``reactor_receive`` to make and
        keep (a forked child starts with none); ``wake`` rings their doorbells (each has a
        ``bell``) and ``close`` closes them (each has ``close()``)."""
        self._a()
        return self._loop_receivers

    @property
    def attachment(self) -> Attachment:
        """This process's attachment to the segment (made anew in a forked child)."""
        return self._a()

    def _receive_keys(self, channels: list[str]) -> tuple[list[str], tuple[bytes, ...]]:
        """Validated queue keys for a receive's channel list, as text and as bytes (cached per
        distinct list)."""
        try:
            cache_key = tuple(channels)
            found = self._recv_cache.get(cache_key)
        except TypeError:  # unhashable entries: let validation say what is wrong
            cache_key, found = None, None
        if found is None:
            keys = [non_local_name(n) for n in validate_receive_channels(channels)]
            found = keys, tuple(key.encode("ascii") for key in keys)
            if cache_key is not None and isinstance(channels, (list, tuple)):
                if len(self._recv_cache) > 1000:
                    self._recv_cache.clear()
                self._recv_cache[cache_key] = found
        return found

    def take(self, keys: list[str], bell: Bell | None = None) -> tuple[str, dict] | None:
        """Take one message for the queue ``keys`` (``prefix!`` keys stand for all their local
        channels), or return None; never blocks. The event-loop receivers' entry point.

        With a doorbell ``bell`` (``pid``, ``nonce`` and a waiter slot ``wid``, -1 for none
        yet), finding nothing registers its slot as waiting on ``keys`` in the same critical
        section, so the next send to any of them rings it (``critical.Sections.take``); taking a
        message unregisters it. Release the slot with ``release_waiter``.
        """
        return self._take(keys, self._key_bytes(keys), bell)

    def _take(self, keys: list[str], keys_b: tuple[bytes, ...],
              bell: Bell | None) -> tuple[str, dict] | None:
        if self._local:
            got = self._take_local(keys)
            if got is not None:
                return got
        popped = self._sections().take(keys_b, now(), bell)
        return None if popped is None else self._deliver(popped)

    def release_waiter(self, bell: Bell) -> None:
        """Give back the waiter slot ``take`` registered for ``bell`` (``bell.wid`` -> -1)."""
        self._sections().release(bell)

    def _deliver(self, popped: tuple) -> tuple[str, dict]:
        """``(channel, message)`` of a taken entry (``Popped``'s fields first); the other
        local channels of a fan-out entry are queued in this process for later receives."""
        name, payload, extra, kind = popped[:4]
        name = name.decode("ascii")
        if kind == MSG_FANOUT:
            locals_ = [local.decode("ascii") for local in msgpack.unpackb(extra, raw=True)]
            if len(locals_) > 1:
                with self._local_lock:
                    queue = self._local.setdefault(name, collections.deque())
                    queue.extend((name + local, payload) for local in locals_[1:])
            name = name + locals_[0]
        return name, unpack(payload)

    def _key_bytes(self, keys: list[str]) -> tuple[bytes, ...]:
        cache = self._key_cache
        key = tuple(keys)
        found = cache.get(key)
        if found is None:
            found = tuple(k.encode("ascii") for k in keys)
            if len(cache) > 1000:
                cache.clear()
            cache[key] = found
        return found

    def _take_local(self, keys: list[str]) -> tuple[str, dict] | None:
        with self._local_lock:
            for key in keys:
                queue = self._local.get(key)
                if queue:
                    full, payload = queue.popleft()
                    if not queue:
                        del self._local[key]
                    return full, unpack(payload)
        return None

    def _take_local_run(self, keys: list[str]) -> tuple[list[str], dict] | None:
        """The rest of one expanded fan-out for ``keys``: every leading entry of the first
        non-empty local queue that shares its payload (one entry's copies share one bytes
        object; equal payloads of two entries, which only tiny cached ones can share, are equal
        messages anyway), decoded once."""
        with self._local_lock:
            for key in keys:
                queue = self._local.get(key)
                if queue:
                    full, payload = queue.popleft()
                    names = [full]
                    while queue and queue[0][1] is payload:
                        names.append(queue.popleft()[0])
                    if not queue:
                        del self._local[key]
                    return names, unpack(payload)
        return None

    def new_channel(self, pattern: str) -> str:
        """A new, unused single-reader channel name: ``pattern`` (ending in ``?``) + 12 letters."""
        names = new_channel_names(pattern)
        att = self._a()
        for name in names:
            with att.lock:
                if att.store.find(name.encode("ascii")) < 0:
                    return name
        raise RuntimeError("could not find an unused channel name")  # pragma: no cover

    # ===== groups extension ======================================================================
    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (idempotent; refreshes the membership's expiry)."""
        g = validate_group(group).encode("ascii")
        c = self._channel(channel).encode("ascii")
        att = self._a()
        with att.lock:
            att.groups.add(g, c, now())

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a member."""
        g = validate_group(group).encode("ascii")
        c = self._channel(channel).encode("ascii")
        att = self._a()
        with att.lock:
            att.groups.discard(g, c)

    def group_channels(self, group: str) -> list[str]:
        """The current members of ``group``."""
        g = validate_group(group).encode("ascii")
        att = self._a()
        with att.lock:
            names = att.groups.members(g, now(), self.group_expiry)
        return [n.decode("ascii") for n in names]

    def send_group(self, group: str, message: dict) -> None:
        """Send ``message`` to every member of ``group``; full members are skipped silently.

        Members that are local channels of the same ``prefix!`` receive ONE shared entry that
        the reading process expands, so a broadcast to 1,000 sockets of one interface process
        costs one write. The send is not atomic: a member added or discarded meanwhile may or
        may not get the message. Raises ``MessageTooLarge`` and ``TypeError`` like ``send``,
        never ``ChannelFull``.
        """
        g = validate_group(group).encode("ascii")
        payload = self._payload(message, f"message to group {group!r}")
        att = self._a()
        t = now()
        deadline = t + self.expiry
        with att.lock:
            members = att.groups.members(g, t, self.group_expiry)
        # One entry per destination: a plain channel, or a ``prefix!`` with its local names.
        entries: dict[bytes, list[bytes]] = {}
        found = entries.get
        for name in members:  # per member: one partition, no list made for a known prefix
            head, bang, local = name.partition(b"!")
            if bang:
                key = head + bang
                locals_ = found(key)
                if locals_ is None:
                    entries[key] = [local]
                else:
                    locals_.append(local)
            else:
                entries[name] = []
        delivered = dropped = 0
        crit = self._sections()
        for key, locals_ in entries.items():
            if len(locals_) > 1:
                name, extra, kind = key, msgpack.packb(locals_), MSG_FANOUT
            else:
                name, extra, kind = key + (locals_[0] if locals_ else b""), b"", 0
            count = max(1, len(locals_))
            try:
                crit.append(key, name, payload, deadline, t, self.get_capacity(key.decode("ascii")),
                            extra, kind)
                delivered += count
            except ChannelFull:  # group sends skip full members (ArenaFull included)
                dropped += count
        with att.lock:
            att.store.bump("group_sends")
            att.store.bump("group_deliveries", delivered)
            if dropped:
                att.store.bump("group_drops", dropped)
            att.store.sweep_step(t)

    # ===== flush extension =======================================================================
    def flush(self) -> None:
        """Drop every message and every group membership of the layer."""
        att = self._a()
        store = att.store
        with att.lock:
            for cid in store.used_channels():
                store.drain(cid)
                store.release_if_idle(cid)
            layout = att.segment.layout
            mm = att.segment.mm
            mm[layout.groups_at:layout.waiters_at] = bytes(layout.waiters_at - layout.groups_at)
            att.groups.reset_free_lists()
            store.bump("flushes")
        with self._local_lock:
            self._local.clear()

    # ===== statistics extension ==================================================================
    def global_statistics(self) -> dict[str, float | int]:
        """Layer-wide ASGI statistics, plus memory and error counters."""
        att = self._a()
        store = att.store
        t = now()
        with att.lock:
            counters = store.counters()
            pending, max_age, rate, full_rate = 0, 0.0, 0.0, 0.0
            for cid in store.used_channels():
                stats = store.channel_stats(cid, t)
                pending += stats["messages_pending"]
                max_age = max(max_age, stats["messages_max_age"])
                rate += stats["messages_count_per_second"]
                full_rate += stats["channel_full_count_per_second"]
            free = store.arena.free_bytes() // 256
            groups = att.groups.group_sizes()
        units = att.segment.layout.sizes.unit_count
        return {
            "messages_count": counters["sent"],
            "messages_count_per_second": rate,
            "messages_pending": pending,
            "messages_max_age": max_age,
            "channel_full_count": counters["channel_full"],
            "channel_full_count_per_second": full_rate,
            "messages_received": counters["received"],
            "messages_expired": counters["expired"],
            "arena_full_count": counters["arena_full"],
            "message_too_large_count": counters["too_large"],
            "group_sends": counters["group_sends"],
            "group_deliveries": counters["group_deliveries"],
            "group_drops": counters["group_drops"],
            "groups": len(groups),
            "group_members": sum(groups.values()),
            "memory_bytes": units * 256,
            "memory_free_bytes": free * 256,
            "foreign_rings": counters["foreign_rings"],
            "dead_processes": counters["dead_processes"],
            "reclaimed_messages": counters["reclaimed_messages"],
        }

    def channel_statistics(self, channel: str) -> dict[str, float | int]:
        """ASGI statistics of one channel (process-specific names report their ``prefix!``)."""
        key = non_local_name(self._channel(channel)).encode("ascii")
        att = self._a()
        with att.lock:
            cid = att.store.find(key)
            if cid >= 0:
                return att.store.channel_stats(cid, now())
        return {"messages_count": 0, "messages_count_per_second": 0.0, "messages_pending": 0,
                "messages_max_age": 0.0, "channel_full_count": 0,
                "channel_full_count_per_second": 0.0, "messages_received": 0,
                "messages_expired": 0}

    def channel_list(self) -> list[tuple[str, dict[str, float | int]]]:
        """Every channel record with its statistics (for operators' tools)."""
        att = self._a()
        t = now()
        with att.lock:
            return [(att.store.key_of(cid).decode("ascii"), att.store.channel_stats(cid, t))
                    for cid in att.store.used_channels()]

    def group_sizes(self) -> dict[str, int]:
        """Every group's member count (for operators' tools)."""
        att = self._a()
        with att.lock:
            return att.groups.group_sizes()

    def check(self) -> list[str]:
        """Verify the segment's consistency (under the lock); an empty list means healthy."""
        att = self._a()
        with att.lock:
            return check(att.segment.mm, att.segment.layout)

    # ===== process deaths =======================================================================
    def forget_process(self, pid: int) -> dict[str, int]:
        """Reclaim what the dead process ``pid`` left in the segment, at once.

        Its process-local (``prefix!``) channels - those it blocked on - leave every group and
        their queued messages are dropped; its waiter slots are freed; and every channel that
        holds messages gets one of its waiters woken, in case ``pid`` was woken for a message it
        never took. Called by a supervisor that reaped ``pid`` (the caller vouches that it is
        dead) and by the layer itself when a ring finds ``pid``'s doorbell gone. Counted in
        the statistics (``dead_processes``, ``reclaimed_messages``). Returns what was reclaimed.
        """
        if not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"forget_process needs a process id, not {pid!r}")
        if pid == os.getpid():
            raise ValueError("a process cannot forget itself: it is alive")
        att = self._a()
        store, waiters = att.store, att.waiters
        report = {"channels": 0, "messages": 0, "memberships": 0, "waiters": 0}
        picks = []
        with att.lock:
            for wid in range(waiters.count):
                state, slot_pid = waiters.slot(wid)[:2]
                if state != W_FREE and slot_pid == pid:
                    waiters.free(wid)
                    report["waiters"] += 1
            for cid in store.owned_by(pid):
                key = store.key_of(cid)
                report["channels"] += 1
                report["messages"] += store.drain(cid)
                report["memberships"] += att.groups.drop_prefix(key)
                store.release_if_idle(cid)
            for cid in store.used_channels():
                if store.depth(cid) and att.waiters.has_waiters(cid):
                    pick = att.waiters.pick(cid)
                    if pick is not None:
                        picks.append((*pick, cid))
            store.bump("dead_processes")
            if report["messages"]:
                store.bump("reclaimed_messages", report["messages"])
        if picks:
            self._sections().ring(picks)
        return report

    # ===== twisted and asyncio extensions ========================================================
    def receive_twisted(self, channels: list[str]):
        """A Deferred firing ``(channel, message)``, or ``(None, None)`` after
        ``receive_timeout``; the wait is driven by the reactor watching a doorbell fd."""
        from .reactor_receive import twisted_receiver
        return twisted_receiver(self).receive(self._receive_keys(channels)[0])

    async def receive_async(self, channels: list[str]) -> tuple[str | None, dict | None]:
        """Await ``(channel, message)`` on the running asyncio loop (``(None, None)`` after
        ``receive_timeout``). Cancelling the await never loses a message."""
        from .reactor_receive import asyncio_receiver
        return await asyncio_receiver(self).receive(self._receive_keys(channels)[0])

