"""``procman run`` for ASGI 3 sites (today's Channels 2-4): the supervisor's side.

A project is in ASGI 3 mode when its settings set ``ASGI_APPLICATION`` (or ``--asgi module:app``
is given). Then ``procman run`` binds the socket(s) once, as in the Channels 1 mode, and starts:

- ``daphne.1..N`` (``--interfaces N``, default one per core): Daphne 4 servers running the
  application in-process on the inherited sockets (:mod:`procman.asgi3_server`);
- ``worker-NAME.1..M`` for each ``--worker CHANNEL...`` / ``--pool NAME=M:CHANNEL,...``: Channels 4
  background workers, what ``manage.py runworker CHANNEL...`` runs (:mod:`procman.asgi3_worker`).

The application lives in the servers, so the servers are the reloadable role: HUP / ``procman
reload`` replaces them new-before-old (the socket never closes and its accept queue is shared, so
no connection is refused). There is no Channels 1 worker role in this mode.

Daphne and Channels are optional dependencies (the ``channels4`` extra); :func:`require_channels4`
turns their absence into one line naming what to install.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgi_ipc.layer_settings import LayerSettingsError, read_layer

from . import cluster_link
from .project import Project, ProjectError


if TYPE_CHECKING:
    from .arbiter import Role
    from .config import Pool, RunConfig
    from .sockets import Listener

__all__ = [
    "INSTALL_HINT",
    "SharedLayer",
    "asgi3_project",
    "build_asgi3_roles",
    "normalise_application",
    "require_channels4",
    "server_count",
    "site_name",
    "uses_shared_memory",
    "worker_pools",
]

INSTALL_HINT = "pip install 'asgi_ipc[channels4]'  (or: pip install 'daphne>=4,<5' 'channels>=4,<5')"
#: Python package (import name) -> distribution to install, for the ASGI 3 mode.
REQUIRED = {"daphne": "daphne", "channels": "channels"}
_APPLICATION = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def require_channels4() -> None:
    """Check that Daphne and Channels can be imported.

    :raises ProjectError: one line naming the missing package(s) and the install command.
    """
    missing = [dist for module, dist in REQUIRED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ProjectError(
            f"this is an ASGI 3 (Channels 4) project and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install with: {INSTALL_HINT}"
        )


def normalise_application(path: str, where: str) -> str:
    """``mysite.asgi.application`` (Django's ``ASGI_APPLICATION`` form) or ``mysite.asgi:application``
    -> ``mysite.asgi:application``.

    :raises ProjectError: ``path`` is not a dotted path to an attribute of a module.
    """
    text = str(path).strip()
    if ":" not in text and "." in text:
        module, _, attribute = text.rpartition(".")
        text = f"{module}:{attribute}"
    if not _APPLICATION.match(text):
        raise ProjectError(
            f"{where} = {path!r} is not an application path; use 'mysite.asgi:application' "
            "(or ASGI_APPLICATION = 'mysite.asgi.application' in the settings)"
        )
    return text


def uses_shared_memory(backend_path: str) -> bool:
    """True when the Channels layer ``BACKEND`` is this project's shared-memory layer."""
    return backend_path.startswith("asgi_ipc.")


def asgi3_project(settings_module: str, directory: Path, alias: str, application: str, layers: Any,
                  *, from_flag: bool) -> Project:
    """The :class:`Project` of an ASGI 3 site (called by :func:`procman.project.load_project`).

    ``CHANNEL_LAYERS`` is optional here (a site without a layer is fine); when the entry exists it
    must be well formed. Only the shared-memory layer is imported (its prefix names the site).

    :raises ProjectError: a malformed application path or ``CHANNEL_LAYERS`` entry.
    """
    where = "--asgi" if from_flag else f"{settings_module}.ASGI_APPLICATION"
    application = normalise_application(application, where)
    if layers is None or (isinstance(layers, dict) and alias not in layers):
        return Project(settings_module, directory, alias, None, {}, application, "")
    try:
        spec = read_layer(layers, alias, where=f"{settings_module}.CHANNEL_LAYERS")
        backend = spec.backend_class() if uses_shared_memory(spec.backend) else None
    except LayerSettingsError as exc:
        raise ProjectError(str(exc)) from None
    return Project(settings_module, directory, alias, backend, dict(spec.config), application, spec.backend)


class SharedLayer:
    """The supervisor's own attachment to an ASGI 3 site's shared-memory segment.

    The Channels 4 layer gives the segment a lifetime of its own: every attached process holds it
    and the last one out removes it. The supervisor attaches first and leaves last, so the segment
    lives exactly as long as the run (a restarted or reloaded server never finds it gone, a clean
    stop leaves nothing in /dev/shm), and ``procman status`` reads its statistics.

    :raises ProjectError: the CONFIG is refused by the layer or the segment cannot be attached.
    """

    def __init__(self, project: Project) -> None:
        assert project.backend is not None
        try:
            self.layer = project.backend(**project.layer_config)
        except TypeError as exc:
            raise ProjectError(f"CHANNEL_LAYERS[{project.alias!r}]['CONFIG'] is not accepted by the layer: {exc}") from None
        except Exception as exc:  # the segment's own errors: mismatched sizes, /dev/shm full...
            raise ProjectError(f"cannot attach the channel layer segment for prefix {project.prefix!r}: "
                               f"{type(exc).__name__}: {exc}; `procman doctor` says more") from None
        self.prefix = project.prefix

    def statistics_source(self) -> Any:
        """The segment-level layer of this process (``global_statistics``, ``channel_list``...)."""
        return self.layer._process_for().segment

    # The supervisor reclaims what a child it reaped left in the segment through these three
    # (``procman.inflight.child_exited``): the segment's ASGI 1 calls, non-blocking.
    def receive(self, channels: list[str]) -> tuple[str | None, Any]:
        """``receive`` of the segment's ASGI 1 view: ``(None, None)`` when nothing is queued."""
        return self.statistics_source().receive(channels)

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """``send`` of the segment's ASGI 1 view."""
        self.statistics_source().send(channel, message)

    def forget_process(self, pid: int) -> dict[str, int]:
        """Reclaim what the dead process ``pid`` left in the segment (its process-local channels
        leave their groups, its waiter slots are freed); see ``IPCChannelLayer.forget_process``."""
        return self.statistics_source().forget_process(pid)

    def close(self) -> None:
        """Detach; the segment is removed if no other process holds it."""
        self.layer.close_now()


def site_name(project: Project) -> str:
    """A name for a site whose layer has no prefix: its settings package (``mysite.settings`` ->
    ``mysite``), reduced to the characters a prefix may hold."""
    top = project.settings_module.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_]", "_", top) or "site"


def server_count(config: "RunConfig") -> int:
    """``--interfaces`` when given (flag or file), else one server per core."""
    if "interfaces" in config.sources:
        return config.interfaces
    return os.cpu_count() or 1


def _endpoint(listener: "Listener") -> str:
    """The Twisted endpoint string adopting ``listener``'s fd (same number in the child)."""
    import socket

    family = {socket.AF_INET: "INET", socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}[listener.sock.family]
    return f"fd:fileno={listener.fileno()}:domain={family}"


def build_asgi3_roles(config: "RunConfig", project: Project, listeners: list["Listener"]) -> list["Role"]:
    """The Daphne server role and the Channels worker pools (pure: no process is started)."""
    from .arbiter import Role

    assert project.asgi_application is not None, "not an ASGI 3 project"
    env = project.child_env()
    env.update(_cluster_env(config, project))
    python = sys.executable
    fds = tuple(listener.fileno() for listener in listeners)
    server_argv = [python, "-m", "procman.boot", "daphne", "--application", project.asgi_application,
                   "--graceful-timeout", str(config.graceful_timeout)]
    for listener in listeners:
        server_argv += ["--endpoint", _endpoint(listener)]
    roles = [Role("daphne", server_argv, count=server_count(config), pass_fds=fds, env=env, reload=True,
                  recyclable=True, scalable=True, stop_order=0)]
    for pool in worker_pools(config):
        argv = [python, "-m", "procman.boot", "runworker", "--application", project.asgi_application,
                "--alias", project.alias, "--graceful-timeout", str(config.graceful_timeout), *pool.channels]
        roles.append(Role(f"worker-{pool.name}", argv, count=pool.count, env=env, reload=True, recyclable=True,
                          stop_order=1))
    if config.cluster:
        roles.append(cluster_link.link_role(config, project))
    return roles


def _cluster_env(config: "RunConfig", project: Project) -> dict[str, str]:
    """``procman run --cluster`` in the ASGI 3 mode: the servers' and workers' environment (their
    Channels 4 layer then hands group sends and shared channels to the cluster link).

    :raises SiteError: ``--cluster-shared`` without ``--cluster``, or ``--cluster`` for a site whose
        layer is not the shared-memory one (``channels_redis`` crosses machines by itself).
    """
    from .site import SiteError

    if config.cluster and not uses_shared_memory(project.backend_path):
        layer = project.backend_path or "no channel layer"
        raise SiteError(f"--cluster relays the shared-memory layer between machines, and this site uses {layer}; "
                        "set CHANNEL_LAYERS BACKEND to 'asgi_ipc.channels.IPCChannelLayer' to use --cluster, "
                        "or drop --cluster (channels_redis reaches every machine through Redis by itself)")
    try:
        return cluster_link.site_env(config)
    except ValueError as exc:
        raise SiteError(str(exc)) from None


def worker_pools(config: "RunConfig") -> list["Pool"]:
    """The Channels worker pools: each ``--worker CHANNEL...`` (one process) and each ``--pool``.

    :raises ConfigError: a channel name Channels 4 would refuse (checked with Channels' own rule),
        or two pools with one name.
    """
    from channels.layers import BaseChannelLayer

    from .config import ConfigError, Pool

    pools = [Pool(re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(names))[:40], 1, list(names)) for names in config.worker]
    pools += config.pools
    checker = BaseChannelLayer()
    for pool in pools:
        for name in pool.channels:
            try:
                checker.require_valid_channel_name(name)
            except TypeError as exc:
                raise ConfigError(f"worker pool {pool.name!r}: {exc} (Channels 4 workers listen on channel "
                                  "names, not patterns; e.g. --worker thumbnails email)") from None
    names = [pool.name for pool in pools]
    if len(set(names)) != len(names):
        raise ConfigError(f"worker pool names must be unique, got {names}")
    return pools
