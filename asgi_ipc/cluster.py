"""The site processes' half of the cluster link: hand group sends and shared sends to the link.

``procman run --cluster URL`` starts one *cluster link* process per machine (``procman.cluster_link``)
and gives every other child the environment variable :data:`ENV` (JSON: ``{"shared": [globs]}``).
When it is set, :func:`backend_for` turns the site's ``IPCChannelLayer`` class into a subclass
(:class:`ClusterMixin` first in the MRO) that changes exactly two calls, each by one more
shared-memory write and nothing else - no process but the link ever talks to Redis:

- ``send_group(g, m)``: the local ``send_group`` (local members now), then one entry
  ``{"g": g, "m": m, "t": time}`` on the outbox channel :data:`BROADCAST_OUTBOX`. If the outbox is
  full (the link is behind or gone) the cross-machine copy is dropped - counted as the outbox's
  ``channel_full_count`` - and the local delivery stands, as a group send skips a full member.
- ``send(c, m)`` where ``c`` matches a shared glob: one entry ``{"c": c, "m": m, "t": time}`` on
  :data:`SHARED_OUTBOX` instead of ``c``; a full outbox raises ``ChannelFull`` in the sender, as
  any full channel does.

Every other call - requests, replies, a connection's own messages, ``group_add`` - is the
unchanged shared-memory layer. The link reads both outboxes (see ``procman.cluster_link``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from typing import Any, Iterable

from .names import validate_channel

__all__ = ["ENV", "BROADCAST_OUTBOX", "SHARED_OUTBOX", "OUTBOX_CAPACITY", "SharedChannels",
           "ClusterMixin", "backend_for", "cluster_env"]

#: Environment variable that switches a site process to cluster mode (set by ``procman run --cluster``).
ENV = "ASGI_IPC_CLUSTER"
#: Outbox of group broadcasts to publish on the other machines.
BROADCAST_OUTBOX = "cluster.broadcast"
#: Outbox of messages for shared channels, to push to their Redis lists.
SHARED_OUTBOX = "cluster.shared"
#: Entries each outbox holds at most (per sending process's capacity rule).
OUTBOX_CAPACITY = 1000


class SharedChannels:
    """Which channel names are shared across machines: any of ``globs`` (``fnmatch``) matches.

    :raises ValueError: a glob that could never match a sendable channel (a ``!`` or ``?``
        channel belongs to one process and never crosses machines).
    """

    def __init__(self, globs: Iterable[str]) -> None:
        self.globs = list(globs)
        for glob in self.globs:
            if not isinstance(glob, str) or not glob or "!" in glob:
                raise ValueError(
                    f"shared channel pattern {glob!r} is not allowed: give a glob of normal channel "
                    "names such as 'thumbnail' or 'mail.*' ('!' and '?' channels belong to one process "
                    "and never cross machines)")
        source = "|".join(f"(?:{fnmatch.translate(glob)})" for glob in self.globs)
        self._regex = re.compile(source) if source else None
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        """True if ``name`` is a shared channel (cached; O(1) after the first call per name)."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        shared = bool(self._regex and "!" not in name and "?" not in name and self._regex.match(name))
        if len(self._cache) < 10000:
            self._cache[name] = shared
        return shared

    def literal_names(self) -> list[str]:
        """The globs that name exactly one channel (no wildcard): channels known before any send."""
        return [glob for glob in self.globs if not any(ch in glob for ch in "*?[")]


def cluster_env(shared: Iterable[str]) -> dict[str, str]:
    """The environment that puts a site process in cluster mode (what ``procman`` gives children)."""
    return {ENV: json.dumps({"shared": list(shared)})}


def _settings_from_env() -> dict[str, Any] | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    try:
        settings = json.loads(raw)
        if not isinstance(settings, dict) or not isinstance(settings.get("shared", []), list):
            raise ValueError("not an object with a 'shared' list")
    except ValueError as exc:
        raise ValueError(f"environment variable {ENV}={raw!r} is malformed ({exc}); it is set by "
                         "`procman run --cluster`, unset it to run without the cluster link") from None
    return settings


class ClusterMixin:
    """Put before the shared-memory layer class: copies group sends and diverts shared sends to
    the link's outboxes (see the module docstring). Configured from :data:`ENV`."""

    def __init__(self, *args: Any, channel_capacity: Any = None, **kwargs: Any) -> None:
        settings = _settings_from_env() or {"shared": []}
        self.cluster_shared = SharedChannels(settings.get("shared", []))
        # The outboxes' own capacity comes first (first match wins), whatever the site configured.
        rules = {BROADCAST_OUTBOX: OUTBOX_CAPACITY, SHARED_OUTBOX: OUTBOX_CAPACITY}
        rules.update(dict(channel_capacity or {}))
        super().__init__(*args, channel_capacity=rules, **kwargs)  # type: ignore[call-arg]

    def send(self, channel: str, message: dict) -> None:
        """As the layer's ``send``; a shared channel's message goes to the link's outbox instead
        (``ChannelFull`` when the outbox is full)."""
        if self.cluster_shared(channel) if isinstance(channel, str) else False:
            validate_channel(channel)
            super().send(SHARED_OUTBOX, {"c": channel, "m": message, "t": time.time()})  # type: ignore[misc]
            return
        super().send(channel, message)  # type: ignore[misc]

    def send_group(self, group: str, message: dict) -> None:
        """As the layer's ``send_group`` (local members), plus one outbox entry for the other
        machines; dropped (and counted by the outbox) if the outbox is full."""
        super().send_group(group, message)  # type: ignore[misc]
        try:
            super().send(BROADCAST_OUTBOX, {"g": group, "m": message, "t": time.time()})  # type: ignore[misc]
        except self.ChannelFull:  # type: ignore[attr-defined]
            pass  # counted in the outbox's channel_full_count, shown by `procman status`


_CLASSES: dict[type, type] = {}


def backend_for(backend: type) -> type:
    """The layer class a site process should instantiate for ``backend``.

    Without :data:`ENV` in the environment, ``backend`` itself. With it, and ``backend`` a
    shared-memory layer, a cached subclass with :class:`ClusterMixin` in front.

    :raises ValueError: :data:`ENV` is malformed, or names bad shared patterns.
    """
    settings = _settings_from_env()
    if settings is None:
        return backend
    from .layer import IPCChannelLayer

    if not (isinstance(backend, type) and issubclass(backend, IPCChannelLayer)) or issubclass(backend, ClusterMixin):
        return backend
    SharedChannels(settings.get("shared", []))  # validate once, with a clear error
    if backend not in _CLASSES:
        _CLASSES[backend] = type(f"Cluster{backend.__name__}", (ClusterMixin, backend), {
            "__doc__": f"{backend.__name__} with the cluster link's outboxes (asgi_ipc.cluster)."})
    return _CLASSES[backend]
