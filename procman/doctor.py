"""``procman doctor``: check the machine and the project before (or while) running a site.

Each check yields a :class:`Finding` (``ok``, ``warn`` or ``fail``) with advice. The exit code is 1
when any check failed, else 0, so it can be used for monitoring: a healthy running site is all
``ok`` (the ports its own supervisor holds are reported as such, not as "in use").

Where the rules live:

- the machine and the segments: :mod:`asgi_ipc.diagnostics` (the same survey ``asgi-ipc doctor``
  presents): ``/dev/shm`` space, systemd's ``RemoveIPC`` where systemd runs, each segment's state,
  the C fast path; ``--clean`` removes segments nothing maps and control sockets nobody answers on;
- the project: what ``procman run`` checks, by the same functions - the supervisor's
  :func:`procman.project.load_project`, then, in a child like a worker, Django's set-up, the
  workers' ``CHANNEL_LAYERS`` validation and routing, and the unapplied migrations
  (:func:`check_project`, which ``run`` also uses for its start-up warning).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from . import control

__all__ = ["Finding", "ProjectReport", "check_machine", "check_segments", "check_ports", "check_settings",
           "check_control_sockets", "check_project", "run_doctor"]

#: Upper bound for the project check child (Django set-up, routing import, migration graph).
PROJECT_CHECK_TIMEOUT = 60.0


@dataclass
class Finding:
    """One check's result: ``level`` is ok / warn / fail."""

    check: str
    level: str
    message: str


def check_machine(survey: dict[str, Any]) -> list[Finding]:
    """``/dev/shm`` space, the C fast path and the machine warnings of an :func:`asgi_ipc.diagnostics.survey`."""
    from asgi_ipc.diagnostics import human_size

    findings = []
    shm = survey["shm"]
    if shm is not None:
        findings.append(Finding("shm", "ok", f"{survey['shm_dir']}: {human_size(shm['total_bytes'])} total, "
                                f"{human_size(shm['free_bytes'])} free"))
    findings += [Finding("machine", "warn", warning) for warning in survey["warnings"]]
    fast = survey["fastpath"]
    findings.append(Finding("fastpath", "ok" if fast["active"] else "warn", fast["reason"]))
    return findings


def check_segments(survey: dict[str, Any]) -> list[Finding]:
    """One finding per ``asgi_ipc.*`` segment of a survey: in use, orphaned, stale, removed."""
    from asgi_ipc.diagnostics import human_size

    findings = []
    for record in survey["segments"]:
        label = f"{record['name']} ({human_size(record['size'])})"
        if record["removed"]:
            findings.append(Finding("segments", "ok", f"{label}: removed ({record['verdict']})"))
        elif record["problems"]:
            findings.append(Finding("segments", "fail", f"{label}: inconsistent: {'; '.join(record['problems'])}"))
        elif record["state"] == "gone":
            findings.append(Finding("segments", "ok", f"{label}: {'; '.join(record['notes'])}"))
        elif record["state"] == "in use":
            findings.append(Finding("segments", "ok", f"{label}: {record['verdict']}"))
        elif record["removable"]:
            findings.append(Finding("segments", "warn", f"{label}: {record['verdict']}; "
                                    "`procman doctor --clean` removes it"))
        else:
            notes = "".join(f"; {note}" for note in record["notes"])
            findings.append(Finding("segments", "warn", f"{label}: {record['verdict']}{notes}"))
    findings += [Finding("segments", "fail", error) for error in survey["errors"]]
    if not survey["segments"]:
        findings.append(Finding("segments", "ok", f"no asgi_ipc segments in {survey['shm_dir']}"))
    return findings


def _site_supervisor(prefix: str | None, survey: dict[str, Any]) -> int | None:
    """The pid of the running supervisor of site ``prefix``: the live creator of its segment (the
    supervisor creates the layer), found without the control socket (which may live elsewhere,
    e.g. in the systemd unit's ``/run/NAME/control``)."""
    for record in survey["segments"]:
        if prefix is not None and record["prefix"] == prefix and record["creator_alive"]:
            return record["creator_pid"]
    return None


def _held_by(pid: int, kind: str, address: object) -> bool:
    """Does process ``pid`` hold a listening socket on ``address`` (``(host, port)`` or a path)?"""
    import psutil

    try:
        if kind == "unix":  # procman binds a private name and hard-links the public one: same inode
            return any(conn.laddr and _same_file(conn.laddr, str(address))
                       for conn in psutil.Process(pid).net_connections(kind="unix"))
        _host, port = address  # type: ignore[misc]
        return any(conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
                   for conn in psutil.Process(pid).net_connections(kind="inet"))
    except psutil.Error:
        return False


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_ports(specs: list[str], site_pid: int | None = None) -> list[Finding]:
    """Can each bind address be listened on? An address the running site itself holds is fine."""
    from .sockets import BindError, bind, close_all, parse_bind

    findings = []
    for spec in specs:
        try:
            kind, address = parse_bind(spec)
        except BindError as exc:
            findings.append(Finding("ports", "fail", str(exc)))
            continue
        if site_pid is not None and kind in ("tcp", "unix") and _held_by(site_pid, kind, address):
            findings.append(Finding("ports", "ok", f"{spec}: served by this site (supervisor pid {site_pid})"))
            continue
        try:
            listener = bind(spec)
        except BindError as exc:
            findings.append(Finding("ports", "fail", str(exc)))
            continue
        close_all([listener])
        findings.append(Finding("ports", "ok", f"{spec}: free"))
    return findings


@dataclass
class ProjectReport:
    """What a worker-like child found in the project (see :func:`check_project`).

    :ivar error: the first thing that stops workers from booting (settings, ``CHANNEL_LAYERS``,
        routing), or None.
    :ivar unapplied: ``app_label.migration`` names not applied yet; None when not checked.
    :ivar note: why migrations were not checked (no database, database unreachable).
    """

    error: str | None = None
    unapplied: list[str] | None = None
    note: str | None = None


def check_project(settings_module: str, directory: Path, alias: str = "default",
                  timeout: float = PROJECT_CHECK_TIMEOUT, asgi: str | None = None) -> ProjectReport:
    """Set Django up in a child process, as a worker does, and report what would fail or is pending.

    The child runs the workers' own checks (``django.setup()``, ``django_glue``'s
    ``CHANNEL_LAYERS`` validation, the routing) and lists unapplied migrations like ``runserver``;
    the calling process never imports the project's apps. Bounded by ``timeout``.

    :param asgi: an ASGI 3 project's application (``module:attribute``): the child imports it, as a
        Daphne server process does, instead of checking Channels 1 routing.
    """
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=settings_module)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH")]))
    try:
        done = subprocess.run([sys.executable, "-m", "procman.doctor", "project-check", settings_module, alias,
                               *([asgi] if asgi else [])],
                              cwd=directory, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ProjectReport(error=f"setting the project up took more than {timeout:g} s")
    lines = done.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return ProjectReport(error=f"the project check failed (exit code {done.returncode}): {tail}")
    return ProjectReport(data.get("error"), data.get("unapplied"), data.get("note"))


def _project_check_child(settings_module: str, alias: str, asgi: str | None = None) -> dict[str, Any]:
    """Runs inside the child of :func:`check_project`; returns its JSON answer."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        import django

        django.setup(set_prefix=False)
        if asgi:  # an ASGI 3 project: its application must import, as in a server process
            import importlib

            module, _, attribute = asgi.partition(":")
            getattr(importlib.import_module(module), attribute)
        else:
            from django_glue.asgi import layer_settings
            from django_glue.routing import Router

            Router(layer_settings(alias)["ROUTING"])
    except Exception as exc:  # noqa: BLE001 - reported, that is the point
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS, connections

    from .project import uses_database

    if not uses_database(settings.DATABASES):
        return {"note": "no database configured"}
    try:
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - an unreachable database is a finding, not a crash
        return {"note": f"cannot read the migrations ({type(exc).__name__}: {exc})".splitlines()[0]}
    return {"unapplied": [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]}


def migration_warning(report: ProjectReport) -> str | None:
    """The start-up warning for unapplied migrations (like ``runserver``'s), or None."""
    if not report.unapplied:
        return None
    apps = sorted({name.split(".", 1)[0] for name in report.unapplied})
    return (f"you have {len(report.unapplied)} unapplied migration(s) ({', '.join(apps)}); the site may not work "
            "until you apply them: python manage.py migrate")


def check_settings(settings: str | None, directory: Path) -> tuple[list[Finding], str | None]:
    """What ``procman run`` checks in the project; returns the findings and the site's prefix."""
    from .project import ProjectError, find_settings_module, load_project

    try:
        module = find_settings_module(settings, directory)
    except ProjectError as exc:
        return [Finding("settings", "warn", f"no project checked: {exc}")], None
    try:
        project = load_project(module, directory)
    except ProjectError as exc:
        return [Finding("settings", "fail", str(exc).strip().splitlines()[0])], None
    findings = [Finding("settings", "ok", f"{module} imports; layer prefix {project.prefix!r}")]
    report = check_project(module, project.directory, project.alias, asgi=project.asgi_application)
    if report.error:
        findings.append(Finding("settings", "fail", f"workers cannot boot: {report.error}"))
        return findings, project.prefix
    findings.append(Finding("settings", "ok", "Django sets up; the ASGI application imports" if project.asgi_application
                            else "Django sets up; CHANNEL_LAYERS and routing are valid for workers"))
    warning = migration_warning(report)
    if warning:
        findings.append(Finding("migrations", "warn", warning))
    elif report.unapplied is not None:
        findings.append(Finding("migrations", "ok", "all migrations applied"))
    else:
        findings.append(Finding("migrations", "ok", f"not checked: {report.note}"))
    return findings, project.prefix


def check_control_sockets(clean: bool = False, prefixes: Sequence[str] | None = None) -> list[Finding]:
    """Control sockets of running sites; dead ones are removed by ``clean``. ``prefixes`` limits
    it to those sites' sockets."""
    findings = []
    try:
        sockets = control.list_sockets()
    except control.ControlError as exc:
        return [Finding("control", "fail", str(exc))]
    for path in sockets:
        if prefixes and path.stem not in prefixes:
            continue
        if control.is_live(path):
            findings.append(Finding("control", "ok", f"site {path.stem!r} is running ({path})"))
        elif clean:
            path.unlink(missing_ok=True)
            findings.append(Finding("control", "ok", f"removed dead control socket {path}"))
        else:
            findings.append(Finding("control", "warn", f"dead control socket {path}; `--clean` removes it"))
    return findings


def run_doctor(settings: str | None, binds: list[str], clean: bool = False, as_json: bool = False,
               directory: Path | None = None, prefixes: Sequence[str] | None = None) -> int:
    """Run every check, print the findings, return 1 if any failed else 0. ``prefixes`` limits the
    segment and control-socket checks (and ``clean``) to those sites; default: every one."""
    from asgi_ipc.diagnostics import survey

    directory = directory or Path.cwd()
    data = survey(prefixes, clean=clean)
    findings = check_machine(data)
    findings += check_segments(data)
    findings += check_control_sockets(clean, prefixes)
    settings_findings, prefix = check_settings(settings, directory)
    findings += settings_findings
    if not binds:
        from .config import ConfigError, resolve

        try:
            binds = resolve({}, directory).bind  # what `procman run` here would bind
        except ConfigError as exc:
            findings.append(Finding("config", "fail", str(exc)))
            binds = ["127.0.0.1:8000"]
    findings += check_ports(binds, _site_supervisor(prefix, data))
    if as_json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for finding in findings:
            print(f"{marks[finding.level]} {finding.check:<10} {finding.message}")
    return 1 if any(f.level == "fail" for f in findings) else 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["project-check"] or len(sys.argv) not in (4, 5):
        sys.exit("usage: python -m procman.doctor project-check SETTINGS_MODULE ALIAS [MODULE:APP] (used by procman doctor)")
    print(json.dumps(_project_check_child(*sys.argv[2:])))
