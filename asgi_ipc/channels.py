"""``asgi_ipc.channels.IPCChannelLayer``: the Channels 4 channel-layer API on the shared segment.

A drop-in for ``channels_redis.core.RedisChannelLayer`` on one machine::

    CHANNEL_LAYERS = {"default": {"BACKEND": "asgi_ipc.channels.IPCChannelLayer",
                                  "CONFIG": {"prefix": "mysite"}}}

Theory of operation
-------------------
Each process holds one ASGI 1 layer (``asgi_ipc.layer.IPCChannelLayer``) on the site's segment,
made lazily and made anew after ``fork`` (with a new client prefix, so forked siblings never
read each other's ``specific.<client>!<id>`` channels). Sends, groups and flush are that layer's
calls. Receiving is where Channels 4 differs, and it is done here:

* ``receive(name)`` never takes a message for itself. It registers a *waiter* for ``name`` and
  sleeps on a future. One *pump* task per event loop and queue key (a normal channel name, or a
  ``specific.<client>!`` prefix shared by all of the process's specific channels) awaits the
  segment (``receive_async``: a doorbell fd on the loop, no polling, no thread) while that loop
  has waiters on the key, puts each message in this process's buffer for its full channel name
  and wakes one waiter of that name. The woken receiver takes the message from the buffer.
* A receive cancelled at any moment (``asyncio.wait_for``, a consumer's task cancelled) leaves
  the message in the buffer and passes the wake-up to another waiter of the channel; if none is
  left, a message of a *normal* channel is sent back to the segment so any process can take it
  (``ChannelFull`` there: it stays buffered for this process's next receive of that channel).
* Buffers of specific channels are bounded per channel by its capacity: at the bound the oldest
  buffered message is dropped (channels_redis does the same, its #212), and buffered messages
  older than ``expiry`` are dropped, so channels of departed consumers do not grow memory.
* Futures are always woken on their own loop (``call_soon_threadsafe`` from another thread), and
  pumps and waiters of a closed loop are dropped: ``async_to_sync`` may run every call on a new
  event loop.

Lifetime: the segment is created by whichever process comes first and removed by the last one
to leave (``Segment(shared=True)``: a shared ``flock`` per process, ``LOCK_EX|LOCK_NB`` on close);
every process closes at interpreter exit, since Channels itself never calls ``close``. See
docs/channels4-layer.md.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import os
import secrets
import string
import threading
import time
import uuid
import warnings
from typing import Any, Mapping

try:
    from channels.exceptions import ChannelFull
    from channels.layers import BaseChannelLayer
except ImportError as exc:  # channels is an extra: say what to install
    raise ImportError(
        "asgi_ipc.channels needs Channels 4: pip install 'asgi_ipc[channels4]' "
        f"(or 'channels>=4,<5'); importing it failed with: {exc}") from exc

from . import errors
from .cluster import backend_for as cluster_backend_for
from .layer import IPCChannelLayer as _ASGI1Layer
from .serialise import unpack

__all__ = ["IPCChannelLayer", "IgnoredConfigWarning"]

_LETTERS = string.ascii_letters
_SWEEP_EVERY = 256  # buffered deliveries between sweeps of expired buffered messages
_ATTACH_ATTEMPTS = 20
_VALID_CACHE = 20000  # channel names remembered as valid

# channels_redis CONFIG keys that have no meaning on one machine's shared memory.
_IGNORED = {
    "hosts": "there is no server: every process of the site maps the same shared memory",
    "symmetric_encryption_keys": "messages never leave the machine; the segment is mode 0600 "
                                 "and readable by your user only",
    "random_prefix_length": "message ids are not needed by the segment's queues",
    "serializer_format": "the segment always stores msgpack",
    "on_disconnect": "there is no connection to lose",
    "on_reconnect": "there is no connection to lose",
}


class IgnoredConfigWarning(UserWarning):
    """A ``channels_redis`` CONFIG key was given that this layer accepts but does not use."""


class _SegmentLayer(_ASGI1Layer):
    """The ASGI 1 layer with the Channels 4 switches (read by ``asgi_ipc.attachment``)."""

    shared_lifetime = True
    """The segment belongs to no single process: the last process to close removes it."""

    expired_members_leave_groups = False
    """A member whose message expired stays in its groups (channels_redis semantics)."""

    def take_fanout(self, key: str) -> list[tuple[str, dict]]:
        """Remove and return the rest of the group-send fan-out entries that ``receive`` has
        expanded for the ``prefix!`` queue ``key`` (it returned only the first member's copy),
        as ``(channel, message)`` pairs in order; each message is its own dict."""
        with self._local_lock:
            queue = self._local.pop(key, None)
        if not queue:
            return []
        return [(name, unpack(payload)) for name, payload in queue]


class _Waiter:
    __slots__ = ("loop", "future", "woken")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future = loop.create_future()
        self.woken = False


def _set_done(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _set_error(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Process:
    """This process's side of the layer: its segment layer, client prefix, buffers, waiters."""

    def __init__(self, layer: "IPCChannelLayer") -> None:
        self.pid = os.getpid()
        self.layer = layer
        self.client = "".join(secrets.choice(_LETTERS) for _ in range(12))
        self.mine = f".{self.client}!"  # how this process's specific queue keys end
        self.segment = layer._attach()
        self.lock = threading.Lock()
        self.buffers: dict[str, collections.deque] = {}
        self.waiters: dict[str, list[_Waiter]] = {}
        # (loop, key) -> waiters registered there and not yet woken: what the pump serves
        self.hungry: collections.Counter = collections.Counter()
        self.pumps: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task] = {}
        self.deliveries = 0
        self.dropped = 0

    # -- buffer and waiters (callers hold self.lock) -------------------------------------------
    def _pop(self, name: str) -> tuple[bool, Any]:
        buf = self.buffers.get(name)
        now = time.monotonic()
        while buf:
            deadline, message = buf.popleft()
            if deadline >= now:
                if not buf:
                    del self.buffers[name]
                return True, message
        self.buffers.pop(name, None)
        return False, None

    # -- operations ----------------------------------------------------------------------------
    def take_or_wait(self, name: str, key: str,
                     loop: asyncio.AbstractEventLoop) -> tuple[bool, Any, _Waiter | None]:
        """A buffered message for ``name``, or a registered waiter (in one critical section,
        so a delivery cannot slip between the check and the registration)."""
        with self.lock:
            found, message = self._pop(name)
            if found:
                return True, message, None
            waiter = _Waiter(loop)
            self.waiters.setdefault(name, []).append(waiter)
            self.hungry[(loop, key)] += 1
            return False, None, waiter

    def take_buffered(self, name: str) -> tuple[bool, Any]:
        with self.lock:
            return self._pop(name)

    def leave(self, waiter: _Waiter, name: str, key: str, taking: bool) -> tuple[bool, Any]:
        """Unregister ``waiter``; if ``taking``, pop its message. If it leaves without taking
        (cancelled), a buffered message is handed to another waiter or, for a normal channel
        nobody here waits for, sent back to the segment."""
        give_back: list = []
        with self.lock:
            waiters = self.waiters.get(name, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self.waiters.pop(name, None)
            if not waiter.woken:
                self._fed(waiter.loop, key)
            if taking:
                return self._pop(name)
            if self.buffers.get(name) and not self._wake_one(name) and "!" not in name:
                give_back = list(self.buffers.pop(name))
        self._give_back(name, give_back)
        return False, None

    def _fed(self, loop: asyncio.AbstractEventLoop, key: str) -> None:
        """One waiter of ``key`` on ``loop`` no longer needs a message (caller holds the lock)."""
        self.hungry[(loop, key)] -= 1
        if self.hungry[(loop, key)] <= 0:
            del self.hungry[(loop, key)]

    def _give_back(self, name: str, entries: list) -> None:
        """Send messages taken for nobody back to the segment (oldest first)."""
        now = time.monotonic()
        kept: collections.deque = collections.deque()
        for deadline, message in entries:
            if deadline < now:
                continue
            if kept:
                kept.append((deadline, message))
                continue
            try:
                self.segment.send(name, message)
            except errors.ChannelFull:
                kept.append((deadline, message))
        if kept:
            with self.lock:
                kept.extend(self.buffers.get(name, ()))
                self.buffers[name] = kept

    def deliver(self, name: str, message: dict,
                running: asyncio.AbstractEventLoop | None = None) -> None:
        """Buffer a message taken from the segment and wake one waiter of its channel; a
        normal channel's message that nobody here waits for any more goes back."""
        self.deliver_all([(name, message)], running)

    def deliver_all(self, items: list[tuple[str, dict]],
                    running: asyncio.AbstractEventLoop | None = None) -> None:
        """``deliver`` for many ``(channel, message)`` pairs (a group send's fan-out to this
        process) in one critical section, in order."""
        if running is None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                pass
        give_back = []
        buffers = self.buffers
        get_capacity = self.layer.get_capacity
        with self.lock:
            deadline = time.monotonic() + self.layer.expiry
            for name, message in items:
                buf = buffers.get(name)
                if buf is None:
                    buf = buffers[name] = collections.deque()
                specific = "!" in name
                if specific and len(buf) >= get_capacity(name):
                    buf.popleft()  # a specific channel nobody reads: drop its oldest message
                    self.dropped += 1
                buf.append((deadline, message))
                if not self._wake_one(name, running) and not specific and \
                        not self.waiters.get(name):
                    give_back.append((name, list(buffers.pop(name))))
            before, self.deliveries = self.deliveries, self.deliveries + len(items)
            if before // _SWEEP_EVERY != self.deliveries // _SWEEP_EVERY:
                self._sweep()
        for name, entries in give_back:
            self._give_back(name, entries)

    def _wake_one(self, name: str, running: asyncio.AbstractEventLoop | None = None) -> bool:
        """Wake one not yet woken waiter of ``name`` whose loop lives; False if there is none
        (caller holds the lock; ``running``: the caller's loop, if it knows it)."""
        waiters = self.waiters.get(name)
        if not waiters:
            return False
        key = self.layer.non_local_name(name)
        for waiter in waiters:
            if waiter.woken:
                continue
            waiter.woken = True
            self._fed(waiter.loop, key)
            if waiter.loop.is_closed():
                continue  # a dead loop's waiter: never touched again
            if running is None:
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    pass
            if running is waiter.loop:
                _set_done(waiter.future)
            else:
                try:
                    waiter.loop.call_soon_threadsafe(_set_done, waiter.future)
                except RuntimeError:  # its loop closed just now
                    continue
            return True
        return False

    def _sweep(self) -> None:
        """Drop expired buffered messages and empty buffers (caller holds the lock)."""
        now = time.monotonic()
        for name in list(self.buffers):
            buf = self.buffers[name]
            while buf and buf[0][0] < now:
                buf.popleft()
            if not buf:
                del self.buffers[name]

    def fail(self, loop: asyncio.AbstractEventLoop, key: str, exc: BaseException) -> None:
        """The pump of ``key`` on ``loop`` failed: every waiter it served hears of it."""
        with self.lock:
            for name, waiters in self.waiters.items():
                if self.layer.non_local_name(name) != key:
                    continue
                for waiter in waiters:
                    if waiter.loop is loop and not waiter.woken:
                        waiter.woken = True
                        self._fed(loop, key)
                        _set_error(waiter.future, exc)

    def ensure_pump(self, loop: asyncio.AbstractEventLoop, key: str) -> None:
        """Start the pump of ``key`` on ``loop`` unless it runs (called on ``loop``)."""
        task = self.pumps.get((loop, key))
        if task is None or task.done():
            self.pumps[(loop, key)] = loop.create_task(self._pump(loop, key))

    async def _pump(self, loop: asyncio.AbstractEventLoop, key: str) -> None:
        """Take messages of ``key`` while this loop has waiters not yet served. There is no
        await between the last check and leaving: a receive on this loop either sees the pump
        running or starts a new one."""
        specific = key.endswith("!")
        segment = self.segment
        try:
            while self.hungry.get((loop, key), 0) > 0:
                try:
                    name, message = await segment.receive_async([key])
                    # Then, without waiting: a process's specific channels are all its own, so
                    # take what is there (a group_send's fan-out arrives at once); a normal
                    # channel only as many as this loop still waits for.
                    while name is not None:
                        if specific:  # a fan-out entry: all its members' copies at once
                            self.deliver_all([(name, message)] + segment.take_fanout(key), loop)
                        else:
                            self.deliver(name, message, loop)
                        if not specific and self.hungry.get((loop, key), 0) <= 0:
                            break
                        name, message = segment.receive([key], block=False)
                except (errors.SegmentError, OSError) as exc:
                    self.fail(loop, key, exc)
                    return
        finally:
            if self.pumps.get((loop, key)) is asyncio.current_task():
                del self.pumps[(loop, key)]

    def _stop(self) -> list[asyncio.Task]:
        """Give normal channels' buffered messages back and cancel the pumps (a pump cancelled
        just after the segment handed it a message loses that message: closing drops what
        this process would have received). Returns the pumps of the running loop."""
        with self.lock:
            buffers, self.buffers = self.buffers, {}
            pumps, self.pumps = dict(self.pumps), {}
        for name, buf in buffers.items():
            if "!" not in name:
                self._give_back(name, list(buf))
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        here = []
        for (loop, _key), task in pumps.items():
            if task.done() or loop.is_closed():
                continue
            if loop is running:
                task.cancel()
                here.append(task)
            else:
                loop.call_soon_threadsafe(task.cancel)
        return here

    def close(self) -> None:
        """Stop, then detach from the segment (from sync code or at exit)."""
        self._stop()
        self.segment.close()

    async def close_async(self) -> None:
        """Stop, let this loop's pumps end, then detach."""
        pumps = self._stop()
        if pumps:
            await asyncio.wait(pumps, timeout=5)
        self.segment.close()


class IPCChannelLayer(BaseChannelLayer):
    """The Channels 4 channel layer on the shared-memory segment of one machine.

    Parameters (``CONFIG`` keys)
    ----------------------------
    prefix:
        Names the segment (``/dev/shm/asgi_ipc.<prefix>``): the same in every process of a
        site, different per site; ``[A-Za-z0-9_.-]{1,64}``.
    expiry, group_expiry, capacity, channel_capacity:
        As in ``channels_redis``: seconds a message waits to be received (60), seconds a group
        membership lasts after its latest ``group_add`` (86400), messages a channel holds
        before ``send`` raises ``channels.exceptions.ChannelFull`` (100), and per-channel
        capacities as ``{glob or compiled regex: capacity}``, first match wins. Specific
        channels ``x.<client>!<id>`` share the capacity of their ``x.<client>!`` queue.
    message_memory, channels, groups, group_members, waiters, max_message_size:
        The segment's sizes, fixed by the process that creates it (see docs/layer-api.md);
        processes that give none adopt the segment's, any given must match.
    hosts, symmetric_encryption_keys, random_prefix_length, serializer_format, on_disconnect,
    on_reconnect:
        ``channels_redis`` keys: accepted so a settings file switches layers by its BACKEND
        line alone, and ignored with an ``IgnoredConfigWarning`` naming the key and why.

    Guarantees beyond ``channels_redis``: each message of a normal channel reaches exactly one
    receiver among all processes (never a duplicate); a cancelled ``receive`` never loses a
    message; forked processes get their own client prefix; any event loop may call it.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        message_memory: int | None = None,
        channels: int | None = None,
        groups: int | None = None,
        group_members: int | None = None,
        waiters: int | None = None,
        max_message_size: int | None = None,
        hosts: Any = None,
        symmetric_encryption_keys: Any = None,
        random_prefix_length: Any = None,
        serializer_format: Any = None,
        on_disconnect: Any = None,
        on_reconnect: Any = None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        given = {"hosts": hosts, "symmetric_encryption_keys": symmetric_encryption_keys,
                 "random_prefix_length": random_prefix_length,
                 "serializer_format": serializer_format, "on_disconnect": on_disconnect,
                 "on_reconnect": on_reconnect}
        for key, value in given.items():
            if value is not None and not (key == "serializer_format" and value == "msgpack"):
                warnings.warn(f"asgi_ipc.channels.IPCChannelLayer ignores CONFIG key {key!r}: "
                              f"{_IGNORED[key]}; remove it", IgnoredConfigWarning, stacklevel=2)
        self.prefix = prefix
        self.group_expiry = group_expiry
        self._raw_capacities = dict(channel_capacity or {})
        self.channel_capacity = self.compile_capacities(self._raw_capacities)
        self._segment_config = {
            "prefix": prefix, "expiry": expiry, "group_expiry": group_expiry,
            "capacity": capacity, "channel_capacity": self._raw_capacities,
            "message_memory": message_memory, "channels": channels, "groups": groups,
            "group_members": group_members, "waiters": waiters,
            "max_message_size": max_message_size,
        }
        self._lock = threading.Lock()
        self._valid_channels: set = set()
        self._process: _Process | None = None
        self._process_for()  # attach now: a bad prefix or size fails at start-up, not later

    # -- this process's state --------------------------------------------------------------------
    def _attach(self) -> _SegmentLayer:
        """This process's layer on the segment, creating the segment if no process has it. Under
        ``procman run --cluster`` it is the cluster subclass (``asgi_ipc.cluster``): group sends
        and shared channels also go to the machine's cluster link."""
        layer_class = cluster_backend_for(_SegmentLayer)
        for _ in range(_ATTACH_ATTEMPTS):
            try:
                return layer_class(create=None, **self._segment_config)
            except errors.SegmentMissing:
                continue  # the last process removed it between our checks: create it anew
        raise errors.SegmentMissing(
            f"could not attach to or create the segment for prefix {self.prefix!r} in "
            f"{_ATTACH_ATTEMPTS} attempts (other processes keep removing it)")

    def _process_for(self) -> _Process:
        process = self._process
        if process is not None and process.pid == os.getpid():
            return process
        with self._lock:
            if self._process is None or self._process.pid != os.getpid():
                self._process = _Process(self)  # first use, or a forked child: a fresh start
                _LIVE.add(self)
            return self._process

    def asgi1_layer(self, **options: Any) -> _SegmentLayer:
        """A new ASGI 1 layer (``asgi_ipc.IPCChannelLayer`` API) on this layer's segment, attached
        as the site's processes are (the last one out removes the segment), with ``options`` such
        as ``receive_timeout`` added to the CONFIG. It is what the cluster link
        (``procman.cluster_link``) relays a Channels 4 site's broadcasts with; always the plain
        class, never the cluster subclass. The caller closes it."""
        return _SegmentLayer(create=None, **self._segment_config, **options)

    @property
    def client_prefix(self) -> str:
        """This process's part of its specific channel names (new after ``fork``)."""
        return self._process_for().client

    # -- names -------------------------------------------------------------------------------------
    def _check_channel(self, name: object) -> str:
        """``name`` if Channels' rules accept it (cached), else ``TypeError`` naming it."""
        if type(name) is str and name in self._valid_channels:
            return name
        try:
            self.require_valid_channel_name(name)
        except TypeError as exc:
            raise TypeError(f"{exc} Got {name!r}.") from None
        if len(self._valid_channels) >= _VALID_CACHE:
            self._valid_channels.clear()
        self._valid_channels.add(name)
        return name  # type: ignore[return-value]

    def _check_group(self, name: object) -> str:
        try:
            self.require_valid_group_name(name)
        except TypeError as exc:
            raise TypeError(f"{exc} Got {name!r}.") from None
        return name  # type: ignore[return-value]

    @staticmethod
    def _check_message(message: object) -> dict:
        if not isinstance(message, dict):
            raise TypeError(f"a message must be a dict, not {type(message).__name__}")
        return message

    # -- the contract ------------------------------------------------------------------------------
    async def send(self, channel: str, message: dict) -> None:
        """Send ``message`` to ``channel``; never blocks. Raises ``ChannelFull`` (Channels' type)
        at capacity or when the segment's memory is exhausted, ``MessageTooLarge`` above
        ``max_message_size`` and ``TypeError`` for a bad name or message."""
        self._check_channel(channel)
        self._check_message(message)
        try:
            self._process_for().segment.send(channel, message)
        except errors.ChannelFull as exc:
            raise ChannelFull(str(exc) or f"channel {channel!r} is full") from None

    async def receive(self, channel: str) -> dict:
        """The next message of ``channel``; waits (on the running loop, without polling) until
        one arrives. Cancelling it never loses a message."""
        self._check_channel(channel)
        process = self._process_for()
        loop = asyncio.get_running_loop()
        key = self.non_local_name(channel)
        if key is not channel and not key.endswith(process.mine):
            raise ValueError(
                f"cannot receive on {channel!r}: it was made by another process (or before a "
                f"fork); this process's specific channels are '<prefix>.{process.client}!...', "
                "and only the process that made a channel with new_channel() may read it")
        segment = process.segment
        specific = key.endswith("!")
        while True:
            if (loop, key) not in process.pumps:
                # Nobody on this loop takes this key's messages: take one now, without
                # awaiting, if the segment has one (the pump would only be slower).
                found, message = process.take_buffered(channel)
                if found:
                    return message
                name, message = segment.receive([key], block=False)
                if name is not None and specific:  # a fan-out's other copies: buffer them now
                    rest = segment.take_fanout(key)
                    if rest:
                        if name == channel:
                            process.deliver_all(rest, loop)
                            return message
                        process.deliver_all([(name, message)] + rest, loop)
                        continue
                if name == channel:
                    return message
                if name is not None:  # another of this process's specific channels
                    process.deliver(name, message, loop)
                    continue
            found, message, waiter = process.take_or_wait(channel, key, loop)
            if found:
                return message
            process.ensure_pump(loop, key)
            try:
                await waiter.future
            except BaseException:
                process.leave(waiter, channel, key, taking=False)
                raise
            found, message = process.leave(waiter, channel, key, taking=True)
            if found:
                return message

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new channel name only this process reads: ``{prefix}.{client_prefix}!{unique}``."""
        name = f"{prefix}.{self._process_for().client}!{uuid.uuid4().hex}"
        self._check_channel(name)
        return name

    # -- groups ------------------------------------------------------------------------------------
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``: idempotent; refreshes the membership's expiry."""
        self._process_for().segment.group_add(self._check_group(group),
                                              self._check_channel(channel))

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a member."""
        self._process_for().segment.group_discard(self._check_group(group),
                                                  self._check_channel(channel))

    async def group_send(self, group: str, message: dict) -> None:
        """Send ``message`` to every member of ``group`` in every process: one write per
        receiving process's specific channels; full members are skipped, never raised."""
        self._check_group(group)
        self._check_message(message)
        self._process_for().segment.send_group(group, message)

    # -- flush and close ---------------------------------------------------------------------------
    async def flush(self) -> None:
        """Drop every message (buffered ones too) and every group; done when it returns."""
        process = self._process_for()
        process.segment.flush()
        with process.lock:
            process.buffers.clear()

    async def close(self) -> None:
        """Detach this process (the last process out removes the segment). The layer stays
        usable: the next call attaches again."""
        process = self._detach()
        if process is not None:
            await process.close_async()

    close_pools = close  # what channels_redis users call

    def close_now(self) -> None:
        """``close`` for sync code and interpreter exit."""
        process = self._detach()
        if process is not None:
            process.close()

    def _detach(self) -> _Process | None:
        """Forget this process's state; return it if this process may close it."""
        with self._lock:
            process, self._process = self._process, None
            _LIVE.discard(self)
        return process if process is not None and process.pid == os.getpid() else None

    def __repr__(self) -> str:
        return f"<asgi_ipc.channels.IPCChannelLayer prefix={self.prefix!r}>"


# Layers attached in this process, closed at exit (Channels keeps its layers for the process's
# lifetime and never closes them; an unclosed layer is kept alive here until exit).
_LIVE: "set[IPCChannelLayer]" = set()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    for layer in list(_LIVE):
        layer._lock = threading.Lock()


def _close_all_at_exit() -> None:
    """Channels never calls ``close``: leave the segment at exit, so the last one out removes
    it and a clean stop of the whole site leaves nothing in /dev/shm."""
    for layer in list(_LIVE):
        try:
            layer.close_now()
        except Exception:  # exit must go on; a leftover segment is reported by doctor
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
