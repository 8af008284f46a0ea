"""The ``procman`` command line.

``procman run``            run the Django project in the current directory (or ``--settings``)
``procman demo``           run the bundled chat demo (no arguments needed)
``procman status``         processes and layer queues of a running site (``--json``)
``procman reload``         rolling restart of the workers (same as SIGHUP); ``--wait`` until done
``procman stop``           graceful stop (``--fast``: kill at once); ``--wait`` until stopped
``procman doctor``         check the machine and project; ``--clean`` removes stale segments
``procman export systemd`` write a service + socket unit pair
``procman interface ...``  one interface server process (what ``run`` starts N of)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import control, exitcodes

__all__ = ["main", "build_parser", "run_flag_actions"]

#: ``reload --wait`` / ``stop --wait`` give up after this many seconds unless ``--timeout`` says.
WAIT_TIMEOUT = 120.0


def _version() -> str:
    # importlib.metadata brings email, csv and zipfile (~0.9 MiB): only when a version is asked.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asgi_ipc")
    except PackageNotFoundError:
        from asgi_ipc import __version__

        return __version__


def _add_run_flags(parser: argparse.ArgumentParser, interface: bool = True) -> None:
    """Flags shared by ``run``, ``demo`` and ``export systemd``; all default to None so that
    settings files can fill in what the command line does not say (see procman.config).

    :param interface: also offer the interface server's options (importing the interface server
        costs a few tenths of a second, which ``status``/``stop`` need not pay).
    """
    group = parser.add_argument_group("site")
    group.add_argument("--settings", help="Django settings module (default: DJANGO_SETTINGS_MODULE, or manage.py's)")
    group.add_argument("--bind", "-b", action="append", metavar="ADDRESS",
                       help="listen on HOST:PORT, [V6]:PORT, PORT, unix:/PATH or fd://N; repeatable "
                            "(default 127.0.0.1:8000; systemd socket activation overrides it)")
    group.add_argument("--config", type=Path, metavar="FILE",
                       help="settings file to read instead of ./procman.toml")
    group = parser.add_argument_group("processes")
    group.add_argument("--interfaces", type=int, metavar="N", help="interface server processes (default 1)")
    group.add_argument("--workers", "-w", type=int, metavar="N", help="Django workers (default: number of cores)")
    group.add_argument("--only-channels", action="append", metavar="GLOB",
                       help="main worker pool listens only on matching channels; repeatable")
    group.add_argument("--exclude-channels", action="append", metavar="GLOB",
                       help="main worker pool ignores matching channels; repeatable")
    group.add_argument("--pool", dest="pools", action="append", metavar="NAME=N:GLOB[,GLOB]",
                       help="an extra worker pool of N workers for the matching channels (which the "
                            "main pool then ignores), e.g. thumbnail=1:thumbnail; repeatable")
    group.add_argument("--max-requests", type=int, metavar="N",
                       help="replace a worker after N messages (0: never; default 0)")
    group.add_argument("--max-requests-jitter", type=int, metavar="N",
                       help="add 0..N to --max-requests per worker (default: a tenth of it)")
    group.add_argument("--max-memory", metavar="SIZE", help="replace a worker whose RSS exceeds SIZE (e.g. 512M)")
    group.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="a ready child silent this long is aborted and replaced (default 30)")
    group.add_argument("--boot-timeout", type=float, metavar="SECONDS",
                       help="a child not ready this long after it starts, or a fork server still "
                            "importing the project, is aborted and replaced (default 60)")
    group.add_argument("--graceful-timeout", type=float, metavar="SECONDS",
                       help="how long a graceful stop may take before SIGKILL (default 30)")
    _add_delay_flag(group)
    group.add_argument("--preload", dest="preload", action="store_const", const=True,
                       help="fork the Django workers from one process that imported the project "
                            "(they share its memory; the default; a reload starts a new one)")
    group.add_argument("--no-preload", dest="preload", action="store_const", const=False,
                       help="start every Django worker as its own interpreter (the last of the two wins)")
    _add_cluster_flags(parser)
    _add_asgi3_flags(parser)
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument("--color", "--colour", dest="colour", action="store_const", const=True,
                        help="colour the log prefixes even when not on a terminal")
    colour.add_argument("--no-color", "--no-colour", dest="colour", action="store_const", const=False,
                        help="never colour the log")
    if interface:
        from .config import add_interface_flags

        add_interface_flags(parser)


def run_flag_actions() -> list[argparse.Action]:
    """Every option of ``procman run`` (interface options included), from its own definition."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_run_flags(parser)
    return [action for action in parser._actions if action.option_strings]


def _add_delay_flag(group: Any) -> None:
    group.add_argument("--delay", action="store_const", const=True, default=None,
                       help="also run the delay server (manage.py rundelay; needs django_glue.delay "
                            "in INSTALLED_APPS)")


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several machines (docs/cluster.md)")
    group.add_argument("--cluster", metavar="URL",
                       help="relay group broadcasts and shared channels to the other machines of the site "
                            "through this Redis (redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS)")
    group.add_argument("--cluster-shared", action="append", metavar="GLOB",
                       help="channels any machine's worker may take (e.g. thumbnail, mail.*); repeatable")
    group.add_argument("--cluster-name", metavar="NAME",
                       help="Redis key namespace, the same on every machine of the site (default asgi_ipc)")
    group.add_argument("--cluster-credit", type=int, metavar="N",
                       help="shared messages a machine holds locally per channel (default 8)")


def _add_asgi3_flags(parser: argparse.ArgumentParser) -> None:
    """ASGI 3 (Channels 4) mode flags; see procman.asgi3."""
    group = parser.add_argument_group("ASGI 3 / Channels 4 sites")
    group.add_argument("--asgi", metavar="MODULE:APP",
                       help="run this ASGI 3 application under Daphne servers (default: the settings' "
                            "ASGI_APPLICATION; either one selects the ASGI 3 mode, where --interfaces is "
                            "the number of Daphne processes, default one per core)")
    group.add_argument("--worker", action="append", nargs="+", metavar="CHANNEL",
                       help="ASGI 3 mode: one Channels background worker process for these channels "
                            "(what `manage.py runworker CHANNEL...` runs); repeatable")


def _add_target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", metavar="PREFIX",
                        help="which site (its layer prefix); needed only when several run")


def _prefix(text: str) -> str:
    """A ``--name`` that can name a layer (the one rule: :func:`asgi_ipc.segment.validate_prefix`)."""
    from asgi_ipc.segment import validate_prefix

    try:
        return validate_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _VersionAction(argparse.Action):
    """``--version``: print ``procman VERSION`` and exit (the version is looked up only then)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str = "show the version and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"procman {_version()}")
        parser.exit()


def build_parser(interface: bool = True) -> argparse.ArgumentParser:
    """The ``procman`` parser; ``interface=False`` leaves the interface options out of ``run``."""
    parser = argparse.ArgumentParser(prog="procman", description="Run a Django site on one machine: "
                                     "shared-memory channel layer, interface servers and workers.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser("run", help="run the Django project in the current directory")
    _add_run_flags(run, interface)
    demo = sub.add_parser("demo", help="run the bundled chat demo site")
    _add_run_flags(demo, interface)
    demo.add_argument("--channels4", action="store_true",
                      help="the chat of today's Channels tutorial instead (Channels 4 + Daphne, ASGI 3 mode)")
    status = sub.add_parser("status", help="show the processes and queues of a running site")
    _add_target_flags(status)
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    reload = sub.add_parser("reload", help="rolling restart of the workers (like SIGHUP)")
    _add_target_flags(reload)
    stop = sub.add_parser("stop", help="stop a running site")
    _add_target_flags(stop)
    stop.add_argument("--fast", action="store_true", help="kill the processes at once instead of draining")
    for command, until in ((reload, "every worker runs the new code (exit 1 if the reload failed)"),
                           (stop, "the supervisor has exited (exit 1 if it is still running)")):
        command.add_argument("--wait", action="store_true", help=f"block until {until}")
        command.add_argument("--timeout", type=float, default=WAIT_TIMEOUT, metavar="SECONDS",
                             help=f"with --wait: give up (exit 1) after this long (default {WAIT_TIMEOUT:g})")
    doctor = sub.add_parser("doctor", help="check /dev/shm, stale segments, ports, settings, systemd")
    doctor.add_argument("--settings", help="Django settings module to try importing")
    doctor.add_argument("--bind", "-b", action="append", metavar="ADDRESS", help="address to check (repeatable)")
    doctor.add_argument("--clean", action="store_true", help="remove stale segments left by dead sites")
    doctor.add_argument("--name", action="append", metavar="PREFIX", type=_prefix,
                        help="only this site (its layer prefix): its segment and control socket; repeatable")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    export = sub.add_parser("export", help="write deployment files")
    export_sub = export.add_subparsers(dest="format", metavar="FORMAT")
    export_sub.required = True
    units = export_sub.add_parser("systemd", help="a Type=notify service and a .socket unit")
    units.add_argument("--unit", metavar="NAME", help="unit name (default: the layer prefix)")
    units.add_argument("--output", "-o", type=Path, metavar="DIR",
                       help="write NAME.service and NAME.socket into DIR (default: print them)")
    units.add_argument("--user", help="User= for the service (a system user; see RemoveIPC in docs)")
    units.add_argument("--socket-user", metavar="USER", help="SocketUser= of UNIX sockets (default: --user)")
    units.add_argument("--socket-group", metavar="GROUP",
                       help="SocketGroup= of UNIX sockets: the web server's group, e.g. www-data")
    units.add_argument("--socket-mode", default="0660", metavar="MODE", help="SocketMode= of UNIX sockets (default 0660)")
    _add_run_flags(units, interface)
    interface = sub.add_parser("interface", help="run one interface server process", add_help=False)
    interface.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave (None = not given), keyed as procman.config expects."""
    return {action.dest: getattr(args, action.dest, None) for action in run_flag_actions()
            if action.dest != "config"}


def _error(message: str, code: int) -> int:
    print(f"procman: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``procman`` command; returns the exit code (see procman.exitcodes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["interface"]:
        if argv[1:] == ["--version"]:
            print(f"procman interface {_version()}")
            return exitcodes.OK
        from procman.interface.cli import main as interface_main

        return interface_main(argv[1:])
    args = build_parser(interface=argv[:1] in (["run"], ["demo"], ["export"])).parse_args(argv)
    try:
        if args.command in ("run", "demo"):
            return _cmd_run(args)
        if args.command == "status":
            return _cmd_status(args)
        if args.command in ("reload", "stop"):
            return _cmd_signal(args)
        if args.command == "doctor":
            from .doctor import run_doctor

            return run_doctor(args.settings, args.bind or [], clean=args.clean, as_json=args.json,
                              prefixes=args.name)
        if args.command == "export":
            return _cmd_export(args)
    except control.ControlError as exc:
        return _error(str(exc), exitcodes.FAILURE)
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import ConfigError, proxy_headers_warning, resolve
    from .logstream import LogStream
    from .site import SiteError, run_site

    directory = Path.cwd()
    banner = ""
    flags = _run_flags(args)
    try:
        if args.command == "demo":
            from .demo.setup import DemoError, prepare_demo

            if args.channels4:
                from .demo_channels4.setup import prepare_channels4_demo as prepare_demo
            try:
                directory, flags, banner = prepare_demo(flags)
            except DemoError as exc:
                return _error(str(exc), exc.exit_code)
        config = resolve(flags, directory, args.config)
    except (ConfigError, SiteError) as exc:
        return _error(str(exc), getattr(exc, "exit_code", exitcodes.USAGE))
    log = LogStream(colour=config.colour)
    warning = proxy_headers_warning(config)
    if warning:
        log.info(f"warning: {warning}")
    try:
        code = run_site(config, directory, log, banner=banner)
    except SiteError as exc:
        return _error(str(exc), exc.exit_code)
    log.info(f"stopped ({exitcodes.describe(code)})")
    return code


def _target(args: argparse.Namespace) -> Path:
    """The control socket of the site the user means."""
    if args.name:
        return control.socket_path(args.name)
    live = [path for path in control.list_sockets() if control.is_live(path)]
    if len(live) == 1:
        return live[0]
    if not live:
        raise control.ControlError(
            f"no running procman site found for this user (looked in {control.runtime_dir()}); "
            "start one with `procman run` or `procman demo`"
        )
    names = ", ".join(path.stem for path in live)
    raise control.ControlError(f"several sites are running ({names}); choose one with --name")


def _cmd_signal(args: argparse.Namespace) -> int:
    fields = {"fast": args.fast} if args.command == "stop" else {}
    target = _target(args)
    response = control.request(target, args.command, **fields)
    if not response.get("ok"):
        return _error(response.get("error", "the supervisor refused"), exitcodes.FAILURE)
    print(response.get("message", "ok"), flush=True)
    if not args.wait:
        return exitcodes.OK
    deadline = time.monotonic() + args.timeout
    if args.command == "stop":
        return _wait_stopped(int(response["pid"]), deadline, args.timeout)
    return _wait_reloaded(target, int(response["generation"]), deadline, args.timeout)


def _wait_stopped(pid: int, deadline: float, timeout: float) -> int:
    """Poll until supervisor ``pid`` has exited (its control socket is gone with it)."""
    import psutil

    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        return _error(f"the site (supervisor pid {pid}) is still running after {timeout:g} s; "
                      "`procman stop --fast` kills it", exitcodes.FAILURE)
    print("stopped")
    return exitcodes.OK


def _wait_reloaded(target: Path, generation: int, deadline: float, timeout: float) -> int:
    """Poll the supervisor's status until reload ``generation`` (or a later one) is done or failed."""
    while time.monotonic() < deadline:
        try:
            state = control.request(target, "status", timeout=max(0.5, deadline - time.monotonic()))
        except control.ControlError as exc:
            return _error(f"reload not confirmed: {exc}", exitcodes.FAILURE)
        reload = (state.get("supervisor") or {}).get("reload") or {}
        if reload.get("generation", 0) >= generation and reload.get("state") != "in progress":
            if reload.get("state") == "done":
                print(f"reload done: {reload.get('message')}")
                return exitcodes.OK
            return _error(f"reload failed: {reload.get('message')}", exitcodes.FAILURE)
        time.sleep(0.2)
    return _error(f"reload not finished after {timeout:g} s (see the site's log)", exitcodes.FAILURE)


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import format_status

    response = control.request(_target(args), "status")
    if not response.get("ok"):
        return _error(response.get("error", "the supervisor refused"), exitcodes.FAILURE)
    if args.json:
        print(json.dumps(response, indent=2, sort_keys=True, default=str))
    else:
        print(format_status(response))
    return exitcodes.OK


def _cmd_export(args: argparse.Namespace) -> int:
    from .config import ConfigError, render_flags, resolve
    from .project import ProjectError, find_settings_module, load_project
    from .systemd import render_units

    directory = Path.cwd()
    flags = _run_flags(args)
    config_file = args.config.resolve() if args.config else None
    try:
        config = resolve(flags, directory, config_file)
        settings_module = find_settings_module(config.settings, directory)
        prefix = args.unit or load_project(settings_module, directory, asgi=config.asgi).prefix
    except (ConfigError, ProjectError) as exc:
        return _error(str(exc), exitcodes.USAGE)
    program = Path(sys.executable).with_name("procman")
    base = [str(program)] if program.exists() else [sys.executable, "-m", "procman"]
    command = list(base)
    # Every flag given here, rendered from run's own definition. --bind becomes the .socket unit
    # (socket activation overrides it); the settings file is read from WorkingDirectory, or named.
    given = {**flags, "settings": settings_module, "colour": False, "bind": None,
             "config": str(config_file) if config_file else None}
    command += ["run", *render_flags(run_flag_actions(), given)]
    try:
        service, sock = render_units(prefix, command, config.bind, str(directory), user=args.user,
                                     environment={"PYTHONUNBUFFERED": "1"}, socket_user=args.socket_user,
                                     socket_group=args.socket_group, socket_mode=args.socket_mode,
                                     reload_command=[*base, "reload", "--wait", "--timeout", "80"])
    except ValueError as exc:
        return _error(str(exc), exitcodes.USAGE)
    if args.output is None:
        print(f"# {prefix}.service\n{service}\n# {prefix}.socket\n{sock}", end="")
        return exitcodes.OK
    args.output.mkdir(parents=True, exist_ok=True)
    for suffix, text in (("service", service), ("socket", sock)):
        path = args.output / f"{prefix}.{suffix}"
        path.write_text(text)
        print(f"wrote {path}")
    print(f"install: cp {args.output}/{prefix}.* /etc/systemd/system/ && systemctl daemon-reload && "
          f"systemctl enable --now {prefix}.socket {prefix}.service")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
