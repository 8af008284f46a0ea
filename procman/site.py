"""``procman run``: put a whole site together - layer, sockets, children, control socket - and
take it apart again.

Order on the way up: read settings (a broken settings module stops here, once, before anything is
created), bind the sockets (a port in use stops here), create the layer segment, open the control
socket, start the arbiter. On the way down everything is undone in reverse, whatever happened:
the segment is removed (nothing is left in /dev/shm), UNIX socket files and the control socket too.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from asgi_ipc.segment import segment_path

from . import cluster_link, control, exitcodes, inflight, systemd
from .arbiter import Arbiter, Role
from .asgi3 import SharedLayer, build_asgi3_roles, require_channels4, uses_shared_memory, worker_pools
from .config import ConfigError, RunConfig
from .config import interface_argv as interface_options_argv
from .logstream import LogStream
from .project import Project, ProjectError, find_settings_module, load_project, uses_database
from .sockets import BindError, Listener, adopt_systemd, bind, close_all

__all__ = ["SiteError", "run_site", "build_roles", "child_env", "delay_role", "STANDARD_CHANNELS"]

#: Channels every site has, shown in ``status`` even before traffic.
STANDARD_CHANNELS = ("http.request", "websocket.connect", "websocket.receive", "websocket.disconnect")
#: Seconds between checks of the UNIX socket files' mode.
SOCKET_CHECK_EVERY = 2.0


class SiteError(Exception):
    """The site cannot start; ``exit_code`` says why (see :mod:`procman.exitcodes`)."""

    def __init__(self, message: str, exit_code: int = exitcodes.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def child_env(config: RunConfig, project: Project) -> dict[str, str]:
    """The environment every child of the site gets on top of the supervisor's (settings, path, cluster)."""
    env = project.child_env()
    try:
        env.update(cluster_link.site_env(config))
    except ValueError as exc:
        raise SiteError(str(exc)) from None
    return env


def build_roles(config: RunConfig, project: Project, listeners: list[Listener]) -> list[Role]:
    """The interface and worker roles for ``config`` (pure: no process is started)."""
    env = child_env(config, project)
    python = sys.executable
    fds = tuple(listener.fileno() for listener in listeners)
    interface_argv = [python, "-m", "procman.boot", "interface", "--settings", project.settings_module]
    for fd in fds:
        interface_argv += ["--fd", str(fd)]
    interface_argv += interface_options_argv(config)
    roles = [
        Role("interface", interface_argv, count=config.interfaces, pass_fds=fds, env=env, stop_order=0,
             hup_on_reload=True)
    ]
    worker_base = [python, "-m", "procman.boot", "worker", "--settings", project.settings_module, "--alias", project.alias]
    if config.max_requests:
        worker_base += ["--max-requests", str(config.max_requests), "--max-requests-jitter", str(config.jitter)]
    main_pool = list(worker_base)
    for glob in config.only_channels:
        main_pool += ["--only-channels", glob]
    for glob in config.exclude_channels + [g for pool in config.pools for g in pool.channels]:
        main_pool += ["--exclude-channels", glob]
    common = dict(env=env, reload=True, recyclable=True, stop_order=1)
    roles.append(Role("worker", main_pool, count=config.workers, scalable=True, **common))
    for pool in config.pools:
        argv = list(worker_base)
        for glob in pool.channels:
            argv += ["--only-channels", glob]
        roles.append(Role(f"worker-{pool.name}", argv, count=pool.count, **common))
    if config.delay:
        roles.append(delay_role(project, env))
    if config.cluster:
        roles.append(cluster_link.link_role(config, project))
    return roles


def delay_role(project: Project, env: dict[str, str]) -> Role:
    """``--delay``: one ``manage.py rundelay`` for the site (two would send every message twice).

    :raises SiteError: ``django_glue.delay`` is not in the settings' ``INSTALLED_APPS``.
    """
    import importlib

    apps = getattr(importlib.import_module(project.settings_module), "INSTALLED_APPS", ())
    if not any(app == "django_glue.delay" or app.startswith("django_glue.delay.") for app in apps):
        raise SiteError(f'--delay needs "django_glue.delay" in {project.settings_module}.INSTALLED_APPS '
                        "(then run manage.py migrate)")
    argv = [sys.executable, "-m", "django", "rundelay", "--settings", project.settings_module,
            "--layer", project.alias]
    # No heartbeat: the server sleeps in the layer's receive, and a delay server that dies is
    # simply restarted (its pending messages are in the database).
    return Role("delay", argv, count=1, env=env, heartbeat=False, stop_order=1)


def _warn_about_migrations(project: Project, log: LogStream) -> None:
    """Like ``runserver``: say so if migrations are not applied. Checked in a child process (the
    supervisor never sets Django up) from a thread, so start-up does not wait for it; a project
    without a database has no migrations to apply and starts no child (half a second of CPU)."""
    import importlib
    import threading

    from .doctor import check_project, migration_warning

    if not uses_database(getattr(importlib.import_module(project.settings_module), "DATABASES", {})):
        return

    def check() -> None:
        report = check_project(project.settings_module, project.directory, project.alias,
                               asgi=project.asgi_application)
        warning = migration_warning(report)
        if warning:
            log.info(f"warning: {warning}")

    threading.Thread(target=check, name="migration-check", daemon=True).start()


def _check_mode(config: RunConfig, project: Project) -> None:
    """Flags of one mode refused in the other, and the ASGI 3 mode's optional dependencies.

    :raises ProjectError, ConfigError: with what to do instead.
    """
    if project.asgi_application is None:
        if config.worker:
            raise ConfigError("--worker runs Channels 4 background workers and needs an ASGI 3 project "
                              "(ASGI_APPLICATION in the settings, or --asgi); Channels 1 projects use --pool")
        return
    require_channels4()
    given = [f"--{key.replace('_', '-')}" for key in ("only_channels", "exclude_channels", "max_requests")
             if getattr(config, key)]
    if "workers" in config.sources:
        given.append(f"--workers (from {config.sources['workers']})")
    if given:
        raise ConfigError(f"{', '.join(given)}: Channels 1 worker options, not used in the ASGI 3 mode "
                          "(its application runs in the Daphne servers, --interfaces N of them; use "
                          "--worker / --pool for Channels background workers)")
    worker_pools(config)


def _listeners(config: RunConfig, log: LogStream) -> list[Listener]:
    adopted = adopt_systemd()
    if adopted:
        log.info(f"using {len(adopted)} socket(s) from systemd socket activation (--bind ignored)")
        return adopted
    listeners: list[Listener] = []
    try:
        for spec in config.bind:
            listeners.append(bind(spec))
    except BindError:
        close_all(listeners)
        raise
    return listeners


def _create_layer(project: Project, log: LogStream) -> Any:
    from asgi_ipc import SegmentExists
    from asgi_ipc.segment import inspect, remove, segment_name

    try:
        return project.backend(**project.layer_config, create=True)
    except SegmentExists:
        info = inspect(segment_name(project.prefix).lstrip("/"))
        if not info.stale:
            raise SiteError(
                f"a site with layer prefix {project.prefix!r} is already running here "
                f"({info.verdict()}); stop it (`procman stop --name {project.prefix}`) or give this "
                "site another 'prefix' in CHANNEL_LAYERS CONFIG"
            ) from None
        log.info(f"removing the segment a crashed run left behind ({info.verdict()})")
        remove(project.prefix)
    try:
        return project.backend(**project.layer_config, create=True)
    except TypeError as exc:
        raise SiteError(f"CHANNEL_LAYERS[{project.alias!r}]['CONFIG'] is not accepted by the layer: {exc}") from None
    except Exception as exc:  # the layer's own errors: segment exists, /dev/shm full...
        raise SiteError(
            f"cannot create the channel layer segment for prefix {project.prefix!r}: "
            f"{type(exc).__name__}: {exc}\n"
            f"If another site runs with this prefix, give this one another 'prefix' in CONFIG; if a "
            f"crashed run left it behind, `procman doctor --clean` removes it."
        ) from None


def _layer_statistics(layer: Any, channels: list[str]) -> dict[str, Any]:
    """Global statistics plus every named channel's (``channels`` always, whatever else exists);
    process-specific reply channels (``ifc.xxx!``) are summed into one ``<reply channels>`` row."""
    try:
        stats: dict[str, Any] = {"global": layer.global_statistics(), "channels": {}}
        for name in channels:
            stats["channels"][name] = layer.channel_statistics(name)
        replies: dict[str, float] = {}
        for name, values in layer.channel_list():
            if "!" not in name:
                stats["channels"][name] = values
                continue
            for key in ("messages_count", "messages_pending", "channel_full_count"):
                replies[key] = replies.get(key, 0) + values.get(key, 0)
            replies["messages_max_age"] = max(replies.get("messages_max_age", 0.0), values.get("messages_max_age", 0.0))
        if replies:
            stats["channels"]["<reply channels>"] = replies
    except Exception as exc:  # status must answer even if the layer misbehaves
        return {"layer": {"error": f"{type(exc).__name__}: {exc}"}}
    return {"layer": stats}


def _statistics_of(layer: Any, channels: list[str]) -> dict[str, Any]:
    """The layer section of ``status`` for either mode (nothing when the site has no segment)."""
    if layer is None:
        return {}
    if isinstance(layer, SharedLayer):
        return _layer_statistics(layer.statistics_source(), channels)
    return _layer_statistics(layer, channels)


def run_site(config: RunConfig, directory: Path, log: LogStream, banner: str = "") -> int:
    """Run the Django project in ``directory`` (or ``config.settings``) until stopped.

    :param banner: an extra line printed after the ready line (``procman demo`` uses it).
    :returns: the exit code; errors before start-up are raised as :class:`SiteError`.
    """
    try:
        settings_module = find_settings_module(config.settings, directory)
        project = load_project(settings_module, directory, asgi=config.asgi)
        _check_mode(config, project)
    except (ProjectError, ConfigError) as exc:
        raise SiteError(str(exc)) from None
    _warn_about_migrations(project, log)
    try:
        listeners = _listeners(config, log)
    except BindError as exc:
        raise SiteError(str(exc)) from None
    layer = None
    control_server = None
    forkserver = None
    try:
        if project.asgi_application is None:
            layer = _create_layer(project, log)
            roles = build_roles(config, project, listeners)
            channels = list(STANDARD_CHANNELS) + [g for pool in config.pools for g in pool.channels if "*" not in g]
        else:
            roles = build_asgi3_roles(config, project, listeners)
            channels = [name for pool in worker_pools(config) for name in pool.channels]
            if uses_shared_memory(project.backend_path):
                try:
                    layer = SharedLayer(project)
                except ProjectError as exc:
                    raise SiteError(str(exc)) from None
        started = time.monotonic()
        watchdog = systemd.watchdog_interval()
        last_ping = [0.0]

        def on_ready() -> None:
            urls = ", ".join(listener.url for listener in listeners)
            if config.interface.get("certfile"):  # the interface processes serve TLS
                urls = urls.replace("http://", "https://")
            counts = ", ".join(f"{role.count} {role.name}" for role in roles)
            named = f"layer prefix {project.prefix!r}" if layer is not None else f"site {project.prefix!r}, no shared layer"
            log.info(f"ready at {urls} ({counts}; {named}; {time.monotonic() - started:.1f} s)")
            if banner:
                log.info(banner)
            systemd.notify(f"READY=1\nSTATUS=serving {urls}")

        segment_file = segment_path(project.prefix) if layer is not None else ""
        segment_inode = _inode(segment_file) if layer is not None else None
        last_check = [time.monotonic()]

        def on_tick() -> None:
            now = time.monotonic()
            if watchdog and now - last_ping[0] >= watchdog:
                last_ping[0] = now
                systemd.notify("WATCHDOG=1")
            if now - last_check[0] >= SOCKET_CHECK_EVERY:
                last_check[0] = now
                for listener in listeners:
                    if listener.restore_mode():
                        log.info(f"{listener.owned_path}: mode set back to 0660 (a child had changed it)")

        def health_check() -> str | None:
            # One stat() per tick. Gone, or replaced by a segment some restarted child created:
            # either way the processes no longer share one layer.
            if segment_inode is not None and _inode(segment_file) != segment_inode:
                return (
                    f"the layer segment {segment_file} was removed under the running site (by "
                    "systemd-logind's RemoveIPC, or someone removing it by hand); the processes "
                    "no longer share one layer, so the site stops. See `procman doctor`."
                )
            return None

        arbiter = Arbiter(
            roles,
            log,
            graceful_timeout=config.graceful_timeout,
            heartbeat_timeout=config.timeout,
            boot_timeout=config.boot_timeout,
            max_memory=config.max_memory,
            on_ready=on_ready,
            on_tick=on_tick,
            health_check=health_check,
            # No shared-memory layer (an ASGI 3 site on channels_redis, or none): nothing to reclaim.
            on_child_exit=None if layer is None else (
                lambda name, pid, why: inflight.child_exited(layer, log.info, name, pid, why)),
            status_extra=lambda: {
                "site": {"prefix": project.prefix, "settings": project.settings_module,
                         "listen": [listener.url for listener in listeners], "fastpath": _fastpath()},
                **_statistics_of(layer, channels),
                **(cluster_link.read_status(project.prefix) if config.cluster else {}),
                **({"fork_server": forkserver.describe()} if forkserver is not None else {}),
            },
        )
        try:
            control_server = control.ControlServer(control.socket_path(project.prefix), arbiter.answer)
        except control.ControlError as exc:
            raise SiteError(str(exc)) from None
        arbiter.watch_fd(control_server, control_server.serve_one)
        if config.preload and project.asgi_application is None:
            from .forkserver import ForkServer

            forkserver = arbiter.forkserver = ForkServer(project.settings_module, project.alias,
                                                         child_env(config, project), log.info, timeout=config.boot_timeout)
        log.info(f"site {project.prefix!r} ({project.settings_module}); control socket {control_server.path}")
        code = arbiter.run()
        systemd.notify("STOPPING=1")
        return code
    finally:
        if forkserver is not None:
            forkserver.close()
        if control_server is not None:
            control_server.close()
        close_all(listeners)
        if layer is not None:
            layer.close()
            _ensure_unlinked(layer, log)


def _fastpath() -> dict[str, Any]:
    """Whether this site's processes use the C fast path (they share the supervisor's environment)."""
    from dataclasses import asdict

    from asgi_ipc.diagnostics import fastpath_status

    return asdict(fastpath_status())


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _ensure_unlinked(layer: Any, log: LogStream) -> None:
    """The creator's close() removes the segment; say so loudly if it is still there."""
    path = segment_path(layer.prefix)
    if os.path.exists(path):
        log.info(f"warning: {path} is still there after the stop; `procman doctor --clean` removes it")
