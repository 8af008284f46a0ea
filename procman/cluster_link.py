"""The cluster link: the one process per machine that relays between the site's shared memory and
Redis (``procman run --cluster redis://HOST:PORT/DB``). See docs/cluster.md.

Four loops, one thread each, each waiting at most one second at a time:

``broadcasts out``  take an entry from the outbox ``cluster.broadcast`` (written by the site's
                    ``send_group``, see ``asgi_ipc.cluster``), ``PUBLISH`` it once on
                    ``<name>:broadcast`` with this link's id as its origin.
``broadcasts in``   subscribed to ``<name>:broadcast``; an entry of another origin becomes one local
                    ``send_group`` (a machine never re-handles its own publishes).
``shared out``      take an entry from ``cluster.shared`` and push it to the Redis list of its
                    channel (``RedisChannelLayer.send``: capacity, expiry, at-most-once pops).
``shared in``       pop (``BLPOP``) from the lists of the shared channels whose local queue holds
                    fewer than ``credit`` messages, and send each popped message to the local channel.

The main thread pings Redis once a second (renewing this machine in the sorted set
``<name>:machines``, so ``status`` can count the machines seen in the last 10 s), flips the connected state (one log line per change),
beats the heartbeat and writes the statistics file ``procman status`` shows. While Redis is away,
broadcasts are taken and dropped (counted) so local traffic never waits, and shared entries are
left in their bounded outbox, whose senders then get ``ChannelFull``.

Stopping (``stop`` set: SIGTERM, SIGINT, ``procman stop``) wakes every loop where it waits, so an
idle link stops at once instead of at its loops' timeouts: the shared-memory receives by
``layer.wake()``, the subscription by one publish on this link's own wake topic
``<name>:wake:<origin>``, and the ``BLPOP`` of ``shared in`` by cancelling it (it runs on an event
loop of that thread, as the Redis layer's ``receive_async``, which puts back a message popped for
a cancelled receive). While Redis is away a loop may still be inside a connection attempt
(``socket_connect_timeout``, 2 s) or wait up to a tick for the connection.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import exitcodes

if TYPE_CHECKING:  # asyncio (and the ssl it loads) only in the link process, not every supervisor
    import asyncio

__all__ = ["LinkStatistics", "ClusterLink", "status_path", "read_status", "link_role", "site_env", "relay_layer",
           "main"]

#: Seconds between health checks, statistics files and heartbeats.
TICK = 1.0
#: Seconds after its last health check that a machine no longer counts as seen.
MACHINE_TTL = 10.0
#: Seconds between refreshes of the set of shared channel names other machines have sent to.
NAMES_EVERY = 2.0


def site_env(config: Any) -> dict[str, str]:
    """Environment for the site's interface and worker processes: cluster mode on (their layer
    then writes the outboxes, see ``asgi_ipc.cluster``) when ``config.cluster`` is set.

    :raises ValueError: ``cluster_shared`` given without ``cluster``.
    """
    if not config.cluster:
        if config.cluster_shared:
            raise ValueError("--cluster-shared needs --cluster URL (the Redis the machines share)")
        return {}
    from asgi_ipc.cluster import cluster_env

    return cluster_env(config.cluster_shared)


def link_role(config: Any, project: Any) -> Any:
    """The ``cluster`` role: one link per machine (two would relay everything twice). It stops
    after the workers (``stop_order`` 2), so their last broadcasts still go out."""
    from .arbiter import Role

    argv = [sys.executable, "-m", "procman.cluster_link", "--settings", project.settings_module,
            "--alias", project.alias, "--url", config.cluster, "--name", config.cluster_name,
            "--credit", str(config.cluster_credit)]
    if project.asgi_application:  # an ASGI 3 site (its settings may not name the application)
        argv += ["--asgi", project.asgi_application]
    for glob in config.cluster_shared:
        argv += ["--shared", glob]
    return Role("cluster", argv, count=1, env=project.child_env(), stop_order=2)


def status_path(prefix: str) -> Path:
    """Where the link of site ``prefix`` writes its statistics (beside the control socket)."""
    from .control import runtime_dir

    return runtime_dir() / f"{prefix}.cluster.json"


def read_status(prefix: str) -> dict[str, Any]:
    """The ``cluster`` entry of ``procman status``: the link's latest statistics, or why there are none."""
    try:
        data = json.loads(status_path(prefix).read_text())
    except FileNotFoundError:
        return {"cluster": {"state": "starting"}}
    except (OSError, ValueError) as exc:
        return {"cluster": {"state": "unknown", "error": f"{type(exc).__name__}: {exc}"}}
    data["age"] = max(0.0, time.time() - data.get("written", 0.0))
    return {"cluster": data}


class LinkStatistics:
    """Counters of one link, updated by its threads (one lock; every update is a few adds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = collections.Counter()  # type: collections.Counter[str]
        self.lags: dict[str, collections.deque] = {"out": collections.deque(maxlen=1000),
                                                   "in": collections.deque(maxlen=1000)}

    def add(self, key: str, value: int = 1, lag: tuple[str, float] | None = None) -> None:
        with self.lock:
            self.counts[key] += value
            if lag is not None:
                self.lags[lag[0]].append((time.monotonic(), max(0.0, lag[1])))

    def snapshot(self, window: float = 60.0) -> dict[str, Any]:
        """Counters, and lag p50/p99 (seconds) of the entries relayed in the last ``window`` s."""
        cutoff = time.monotonic() - window
        with self.lock:
            counts = dict(self.counts)
            lags = {way: sorted(v for t, v in samples if t >= cutoff) for way, samples in self.lags.items()}
        lag = {}
        for way, values in lags.items():
            lag[way] = None if not values else {"p50": values[len(values) // 2],
                                                "p99": values[min(len(values) - 1, int(len(values) * 0.99))]}
        return {"counts": counts, "lag": lag}


class ClusterLink:
    """Relays one machine's broadcasts and shared channels through Redis.

    :param layer: the site's shared-memory layer (the plain class, not the cluster subclass).
    :param url: Redis URL (``redis://``, ``rediss://``, password allowed).
    :param name: Redis key namespace shared by every machine of the site.
    :param shared: globs of shared channels.
    :param credit: shared messages a local channel may hold before this link stops popping it.
    :param log: where the one-line state changes go.
    """

    def __init__(self, layer: Any, url: str, name: str, shared: list[str], credit: int = 8,
                 log: Callable[[str], None] = print) -> None:
        import redis as redis_py

        from asgi_ipc.cluster import BROADCAST_OUTBOX, SHARED_OUTBOX, SharedChannels
        from asgi_ipc.redis import RedisChannelLayer
        from asgi_ipc.redis_shards import redact

        if credit < 1:
            raise ValueError(f"cluster credit must be at least 1, got {credit}")
        self.layer = layer
        self.url = url
        self.shown_url = redact(url)
        self.name = name
        self.shared = SharedChannels(shared)
        self.credit = credit
        self.log = log
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.topic = f"{name}:broadcast"
        self.names_key = f"{name}:shared-names"
        self.machines_key = f"{name}:machines"
        # Where run() wakes this link's subscription on a stop (nobody else reads it).
        self.wake_topic = f"{name}:wake:{self.origin}"
        self.machines = 0
        self.outboxes = (BROADCAST_OUTBOX, SHARED_OUTBOX)
        timeouts = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
        self.client = redis_py.Redis.from_url(url, **timeouts)
        self.lists = RedisChannelLayer(hosts=[url], prefix=f"{name}.shared", receive_timeout=TICK,
                                       capacity=1000, connection_kwargs=timeouts)
        self.errors = (redis_py.RedisError, OSError)
        self.stats = LinkStatistics()
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.state_lock = threading.Lock()
        self.since = time.time()
        self.last_error = ""
        self.known_names: set[str] = set(self.shared.literal_names())
        self.started_names: set[str] = set()
        #: The four loops' threads, once :meth:`run` started them.
        self.threads: list[threading.Thread] = []
        #: The event loop ``shared in`` pops on, and its pop in flight (see :meth:`_pop_shared`).
        self.shared_in_loop: asyncio.AbstractEventLoop | None = None
        self._pop: asyncio.Future | None = None

    # -- connection state ------------------------------------------------------------------------
    def check(self) -> None:
        """Ping Redis and renew this machine's entry in ``<name>:machines`` (one round trip);
        log and record a change of state (one line per change, not per failure)."""
        now = time.time()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.ping()
            pipe.zadd(self.machines_key, {self.origin: now})
            pipe.zremrangebyscore(self.machines_key, "-inf", now - MACHINE_TTL)
            pipe.zcard(self.machines_key)
            self.machines = pipe.execute()[-1]
        except self.errors as exc:
            self.lost(exc)
            return
        if not self.connected.is_set():
            self.connected.set()
            self.since = time.time()
            self.log(f"cluster link: connected to Redis at {self.shown_url} as {self.origin}; relaying "
                     f"broadcasts and shared channels {self.shared.globs or '(none)'}")

    def lost(self, exc: BaseException) -> None:
        """Record that Redis is unreachable; the first failure after a success is logged."""
        with self.state_lock:  # several loops may fail at once: one line per change of state
            self.last_error = f"{type(exc).__name__}: {exc}"
            first = self.connected.is_set() or self.stats.counts["connect_failures"] == 0
            self.stats.add("connect_failures")
            self.connected.clear()
        if first:
            self.log(f"cluster link: error: Redis at {self.shown_url} unreachable ({self.last_error}); "
                     "local traffic continues, cross-machine broadcasts are dropped and shared sends "
                     "wait in their outbox until it returns (retrying every second)")
            self.since = time.time()

    def wait_connected(self) -> bool:
        """Wait up to one tick for the connection; False if not connected (or stopping)."""
        return self.connected.wait(TICK) and not self.stop.is_set()

    # -- the four loops ----------------------------------------------------------------------------
    def broadcasts_out(self) -> None:
        from asgi_ipc.serialise import pack

        while not self.stop.is_set():
            _, entry = self.layer.receive([self.outboxes[0]], block=True)
            if entry is None:
                continue
            if not self.connected.is_set():
                self.stats.add("dropped_out")
                continue
            entry["o"] = self.origin
            try:
                self.client.publish(self.topic, pack(entry))
            except self.errors as exc:
                self.stats.add("dropped_out")
                self.lost(exc)
                continue
            self.stats.add("broadcasts_out", lag=("out", time.time() - entry.get("t", time.time())))

    def broadcasts_in(self) -> None:
        while not self.stop.is_set():
            if not self.wait_connected():
                continue
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.topic, self.wake_topic)
                while not self.stop.is_set():
                    item = pubsub.get_message(timeout=TICK)
                    if item is None or item.get("type") != "message" or item.get("channel") != self.topic.encode():
                        continue  # nothing yet, or the wake-up of a stop
                    self.deliver_broadcast(item["data"])
            except self.errors as exc:
                if not self.stop.is_set():
                    self.lost(exc)
            finally:
                try:
                    pubsub.close()
                except self.errors:
                    pass

    def deliver_broadcast(self, data: bytes) -> None:
        """One published entry: a local ``send_group`` unless this machine published it. An entry
        that is not ours to read (another program on the topic, a bad group name) is counted as a
        drop instead of ending the loop."""
        from asgi_ipc.serialise import unpack

        try:
            entry = unpack(data)
            if entry.get("o") == self.origin:
                return  # our own publish: our members had it from the local send_group
            self.layer.send_group(entry["g"], entry["m"])
            lag = time.time() - float(entry.get("t", time.time()))
        except (ValueError, TypeError, KeyError, AttributeError, self.layer.MessageTooLarge):
            self.stats.add("dropped_in")
            return
        self.stats.add("broadcasts_in", lag=("in", lag))

    def shared_out(self) -> None:
        while not self.stop.is_set():
            # Not connected: leave entries in the outbox (bounded), so senders see ChannelFull
            # instead of the link taking messages it can only drop.
            if not self.wait_connected():
                continue
            _, entry = self.layer.receive([self.outboxes[1]], block=True)
            if entry is None:
                continue
            channel = entry["c"]
            if not self.connected.is_set():
                # Redis went away while we waited for this entry: nothing was pushed, so it goes
                # back to the outbox (at the end) rather than being lost.
                try:
                    self.layer.send(self.outboxes[1], entry)
                except self.layer.ChannelFull:
                    self.stats.add("dropped_out")
                continue
            try:
                if channel not in self.started_names:
                    self.client.sadd(self.names_key, channel)
                    self.started_names.add(channel)
                    self.known_names.add(channel)
                self.lists.send(channel, entry["m"])
            except (self.lists.ChannelFull, self.lists.ArenaFull, self.lists.MessageTooLarge):
                self.stats.add("dropped_shared_full")  # Redis list at capacity, or Redis out of memory
                continue
            except self.errors as exc:  # outcome unknown: never retried (at most once)
                self.stats.add("dropped_out")
                self.lost(exc)
                continue
            self.stats.add("shared_out", lag=("out", time.time() - entry.get("t", time.time())))

    def shared_in(self) -> None:
        # The pops wait on an event loop of this thread's own, so a stop can cancel them
        # (``receive_async`` is cancel-safe: a message popped for it goes back to its list).
        import asyncio

        loop = asyncio.new_event_loop()
        self.shared_in_loop = loop
        try:
            self._shared_in(loop)
        finally:
            loop.close()

    def _shared_in(self, loop: asyncio.AbstractEventLoop) -> None:
        refreshed = 0.0
        while not self.stop.is_set():
            if not self.wait_connected():
                continue
            try:
                if time.monotonic() - refreshed >= NAMES_EVERY:
                    refreshed = time.monotonic()
                    for raw in self.client.smembers(self.names_key):
                        name = raw.decode("ascii", "replace")
                        if self.shared(name):
                            self.known_names.add(name)
                room = [name for name in sorted(self.known_names)
                        if self.layer.channel_statistics(name)["messages_pending"] < self.credit]
                if not room:
                    # Every local queue holds its credit (workers are busy), or no shared channel is known yet.
                    self.stop.wait(0.05 if self.known_names else TICK)
                    continue
                channel, message = loop.run_until_complete(self._pop_shared(room))
            except self.errors as exc:
                self.lost(exc)
                continue
            if message is None:
                continue
            try:
                self.layer.send(channel, message)
            except self.layer.ChannelFull:
                self.stats.add("dropped_in")
                continue
            self.stats.add("shared_in")

    async def _pop_shared(self, room: list[str]) -> tuple[str | None, dict | None]:
        """One blocking pop from the lists of ``room``, or ``(None, None)`` at its timeout or when
        a stop cancels it (:meth:`_cancel_pop`, run on this loop: either it finds the pop and
        cancels it, or it ran first and the pop sees ``stop`` set and never starts)."""
        import asyncio

        if self.stop.is_set():
            return None, None
        self._pop = asyncio.ensure_future(self.lists.receive_async(room))
        try:
            return await self._pop
        except asyncio.CancelledError:
            return None, None
        finally:
            self._pop = None

    def _cancel_pop(self) -> None:
        if self._pop is not None:
            self._pop.cancel()

    # -- running -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``procman status`` shows (JSON-serialisable)."""
        snapshot = self.stats.snapshot()
        counts = snapshot["counts"]
        try:
            outbox_full = sum(self.layer.channel_statistics(name)["channel_full_count"] for name in self.outboxes)
            pending = {name: self.layer.channel_statistics(name)["messages_pending"] for name in self.outboxes}
        except Exception as exc:  # noqa: BLE001 - status must not kill the link
            outbox_full, pending = 0, {"error": str(exc)}
        return {
            "state": "connected" if self.connected.is_set() else "disconnected",
            "since": self.since, "url": self.shown_url, "origin": self.origin, "name": self.name,
            "shared": self.shared.globs, "credit": self.credit, "last_error": self.last_error,
            "machines": self.machines,
            "relayed_out": counts.get("broadcasts_out", 0) + counts.get("shared_out", 0),
            "relayed_in": counts.get("broadcasts_in", 0) + counts.get("shared_in", 0),
            "counts": counts, "outbox_pending": pending,
            "drops": (counts.get("dropped_out", 0) + counts.get("dropped_in", 0)
                      + counts.get("dropped_shared_full", 0) + outbox_full),
            "lag": snapshot["lag"], "written": time.time(),
        }

    def run(self, on_tick: Callable[[int], None], status_file: Path | None) -> int:
        """Start the loops; tick (health check, statistics, ``on_tick(relayed)``) until stopped."""
        self.check()
        threads = [threading.Thread(target=self._guarded(loop), name=loop.__name__, daemon=True)
                   for loop in (self.broadcasts_out, self.broadcasts_in, self.shared_out, self.shared_in)]
        self.threads = threads
        for thread in threads:
            thread.start()
        try:
            # The first report goes out at once (after the first check, above), so `procman status`
            # shows the link's state as soon as it runs rather than "starting" for a whole tick.
            while True:
                status = self.status()
                if status_file is not None:
                    _write_atomically(status_file, json.dumps(status))
                on_tick(status["relayed_out"] + status["relayed_in"])
                if not all(thread.is_alive() for thread in threads):
                    self.log("cluster link: a relay loop died (see the traceback above); exiting to be restarted")
                    return exitcodes.FAILURE
                if self.stop.wait(TICK):
                    break
                self.check()
        finally:
            self.stop.set()
            self.wake_loops(threads, deadline=time.monotonic() + 10.0)  # a loop may be inside one Redis call
            if self.connected.is_set():
                try:
                    self.client.zrem(self.machines_key, self.origin)  # a clean stop leaves at once
                except self.errors:
                    pass
            self.lists.close()
            self.client.close()
            if status_file is not None:
                try:
                    status_file.unlink()
                except FileNotFoundError:
                    pass
        return exitcodes.OK

    def wake_loops(self, threads: list[threading.Thread], deadline: float) -> None:
        """Wake the loops of a stopping link where they wait, and join them (until ``deadline``).

        The subscription gets one message on this link's wake topic (skipped while Redis is
        away: the loop then waits for the connection, not in the subscription); the pop of
        ``shared in`` is cancelled on its loop. The shared-memory receives are woken again every
        20 ms while a loop is still alive, because ``layer.wake()`` ends the receives blocked
        *now*: a loop between its check of ``stop`` and its next receive would miss a single
        wake and sleep for the layer's receive timeout."""
        if self.connected.is_set():
            try:
                self.client.publish(self.wake_topic, b"")
            except self.errors:
                pass  # that loop then ends at its own timeout (one tick)
        loop = self.shared_in_loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._cancel_pop)
            except RuntimeError:  # its loop already closed: the loop has returned
                pass
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                self.layer.wake()
                thread.join(min(0.02, max(0.0, deadline - time.monotonic())))

    def _guarded(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except Exception:  # noqa: BLE001 - reported by the main thread's liveness check
                import traceback

                traceback.print_exc()
        return run


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m procman.cluster_link",
                                     description="the cluster link of one machine (started by procman run --cluster)")
    parser.add_argument("--settings", required=True, help="Django settings module")
    parser.add_argument("--alias", default="default", help="CHANNEL_LAYERS alias")
    parser.add_argument("--asgi", help="the ASGI 3 application of a Channels 4 site (module:attribute)")
    parser.add_argument("--url", required=True, help="Redis URL")
    parser.add_argument("--name", required=True, help="Redis key namespace of the site")
    parser.add_argument("--shared", action="append", default=[], metavar="GLOB", help="shared channel glob")
    parser.add_argument("--credit", type=int, default=8, help="shared messages held locally per channel")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m procman.cluster_link ...``: run the link under the boot-error protocol."""
    from .boot import supervised_main

    args = build_parser().parse_args(argv)

    def entry(beats: Any) -> int:
        from .project import load_project

        project = load_project(args.settings, Path.cwd(), args.alias, asgi=args.asgi)
        layer, close = relay_layer(project)
        from asgi_ipc.stop_signals import StopSignals

        say = functools.partial(print, flush=True)
        link = ClusterLink(layer, args.url, args.name, args.shared, args.credit, log=say)
        # Graceful: ``stop`` set; run() then wakes every loop. Fast: exit at once.
        StopSignals(link.stop.set, announce=say, fast_exit_code=exitcodes.FAST).install()
        beats.ready()
        try:
            return link.run(lambda relayed: beats.beat(relayed), status_path(project.prefix))
        finally:
            close()

    return supervised_main(entry)


def relay_layer(project: Any) -> tuple[Any, Callable[[], None]]:
    """The ASGI 1 layer the link relays with, on the site's shared memory, and how to close it.

    A Channels 1 site: its own layer class, attached (never created). A Channels 4 site
    (``asgi_ipc.channels.IPCChannelLayer``): that layer's segment seen through the ASGI 1 API
    (``asgi1_layer``), attached as the site's processes are. The link's environment has no
    ``ASGI_IPC_CLUSTER``, so neither is the cluster subclass: a remote broadcast delivered here
    is never sent out again.

    :raises ProjectError: the site's layer is not the shared-memory one.
    """
    from .project import ProjectError

    if project.backend is None:
        raise ProjectError(f"the cluster link relays the shared-memory layer, and this site's layer is "
                           f"{project.backend_path or 'missing'}; use 'asgi_ipc.channels.IPCChannelLayer'")
    if project.asgi_application is None:
        layer = project.backend(**dict(project.layer_config, create=False, receive_timeout=TICK))
        return layer, layer.close
    channels4 = project.backend(**project.layer_config)
    layer = channels4.asgi1_layer(receive_timeout=TICK)

    def close() -> None:
        layer.close()
        channels4.close_now()

    return layer, close


if __name__ == "__main__":
    sys.exit(main())
