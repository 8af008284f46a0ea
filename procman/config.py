"""``procman run`` settings: command-line flags, a TOML file, and built-in defaults.

Precedence (first wins): a flag given on the command line, then ``procman.toml`` (or the file named
by ``--config``), then the ``[tool.procman]`` table of ``pyproject.toml``, then the defaults below.
Files are looked up in the current directory. Keys are the long flag names, with ``-`` or ``_``::

    [tool.procman]
    bind = ["127.0.0.1:8000", "unix:/run/mysite.sock"]
    workers = 4
    pools = ["thumbnail=1:thumbnail"]
    max-requests = 5000
    max-memory = "512M"
    # interface-server options, same names as `procman interface --help` (and `run --help`):
    proxy-headers = true
    forwarded-allow-ips = ["127.0.0.1"]
    http-timeout = 60

Interface-server options are not listed here a second time: :func:`interface_actions` reads them
from ``procman interface``'s own argument parser (which takes its defaults from
:class:`procman.interface.options.ServerOptions`), ``run``/``demo`` offer the same flags, and
:func:`interface_argv` hands what was set to every interface process. Unset options keep the
interface server's defaults.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["ConfigError", "RunConfig", "Pool", "load_file_config", "resolve", "parse_pool",
           "interface_actions", "add_interface_flags", "interface_argv", "render_flags", "proxy_headers_warning"]


class ConfigError(Exception):
    """A setting is invalid; the message names the setting, where it came from and what is expected."""


@dataclass
class Pool:
    """An extra worker pool: ``count`` workers listening only on channels matching ``channels``."""

    name: str
    count: int
    channels: list[str]


@dataclass
class RunConfig:
    """Everything ``procman run`` needs, after merging flags, files and defaults."""

    settings: str | None = None
    bind: list[str] = field(default_factory=lambda: ["127.0.0.1:8000"])
    interfaces: int = 1
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    only_channels: list[str] = field(default_factory=list)
    exclude_channels: list[str] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)
    max_requests: int = 0
    max_requests_jitter: int | None = None
    max_memory: int | None = None
    timeout: float = 30.0
    boot_timeout: float = 60.0
    graceful_timeout: float = 30.0
    colour: bool | None = None
    delay: bool = False  # also run the delay server (manage.py rundelay) as the "delay" role
    preload: bool = True  # fork workers from a zygote that imported the project (procman.forkserver)
    interface: dict[str, Any] = field(default_factory=dict)  # interface option dest -> value
    cluster: str | None = None  # Redis URL of the cluster link (procman.cluster_link), None: one machine
    cluster_shared: list[str] = field(default_factory=list)  # channel globs shared across machines
    cluster_name: str = "asgi_ipc"  # Redis key namespace, the same on every machine of the site
    cluster_credit: int = 8  # shared messages a machine's link holds locally per channel
    #: ASGI 3 mode (procman.asgi3): the application (``--asgi``) and ``--worker CHANNEL...`` pools.
    asgi: str | None = None
    worker: list[list[str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from

    @property
    def jitter(self) -> int:
        """``--max-requests-jitter``, defaulting to a tenth of ``--max-requests``."""
        if self.max_requests_jitter is not None:
            return self.max_requests_jitter
        return self.max_requests // 10


def parse_pool(text: str) -> Pool:
    """``NAME=COUNT:GLOB[,GLOB...]`` -> :class:`Pool` (e.g. ``thumbnail=1:thumbnail``).

    :raises ValueError: malformed.
    """
    name, sep, rest = text.partition("=")
    count, sep2, globs = rest.partition(":")
    channels = [g.strip() for g in globs.split(",") if g.strip()]
    if not sep or not sep2 or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not count.isdigit() or not channels:
        raise ValueError(f"pool {text!r} must look like NAME=COUNT:CHANNEL_GLOB[,GLOB...], e.g. thumbnail=1:thumbnail")
    if int(count) < 1:
        raise ValueError(f"pool {text!r}: COUNT must be at least 1")
    return Pool(name, int(count), channels)


def _as_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{key} must be a string or a list of strings")


def _as_int(minimum: int):
    def convert(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
            raise ValueError(f"{key} must be a whole number >= {minimum}, got {value!r}")
        if int(value) < minimum:
            raise ValueError(f"{key} must be at least {minimum}, got {value!r}")
        return int(value)

    return convert


def _as_seconds(value: Any, key: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"{key} must be greater than 0, got {value!r}")
    return seconds


def _as_str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _as_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


_CONVERTERS = {
    "settings": _as_str,
    "bind": _as_list,
    "interfaces": _as_int(1),
    "workers": _as_int(1),
    "only_channels": _as_list,
    "exclude_channels": _as_list,
    "pools": lambda v, k: [parse_pool(p) for p in _as_list(v, k)],
    "max_requests": _as_int(0),
    "max_requests_jitter": _as_int(0),
    "max_memory": lambda v, k: _as_size(v),
    "timeout": _as_seconds,
    "boot_timeout": _as_seconds,
    "graceful_timeout": _as_seconds,
    "colour": _as_bool,
    "delay": _as_bool,
    "preload": _as_bool,
    "cluster": lambda v, k: _as_redis_url(v, k),
    "cluster_shared": lambda v, k: _as_shared_globs(v, k),
    "cluster_name": lambda v, k: _as_cluster_name(v, k),
    "cluster_credit": _as_int(1),
    "asgi": _as_str,
    "worker": lambda v, k: [_as_list(names, k) for names in (v if isinstance(v, list) else [v])],
}


#: ``procman interface`` options that ``run`` decides itself: where to listen (``run`` binds once and
#: passes the sockets down), which settings, and argparse's own.
_SYSTEMD_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_NOT_PASSED = {"help", "version", "layer", "settings", "host", "bind", "port", "unix_socket", "fd", "endpoint"}


@contextmanager
def _systemd_env_kept() -> Iterator[None]:
    """Around an import of the interface server, which imports twisted.internet.endpoints, which
    takes systemd's LISTEN_PID/LISTEN_FDS out of os.environ at import time: keep them for
    procman's own socket activation (procman.sockets.adopt_systemd), which runs later."""
    saved = {key: os.environ[key] for key in _SYSTEMD_ENV if key in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _as_size(value: Any) -> int:
    """A size setting (``max-memory``) in the one grammar of :func:`procman.interface.options.parse_size`."""
    with _systemd_env_kept():
        from procman.interface.options import parse_size
    return parse_size(value, minimum=1)


def interface_actions() -> list[argparse.Action]:
    """The options of ``procman interface`` that ``run``/``demo``/``procman.toml`` pass through.

    Read from the interface server's own parser, so a new interface option is offered here
    without a second definition.
    """
    with _systemd_env_kept():
        from procman.interface.cli import build_parser
    return [action for action in build_parser()._actions
            if action.option_strings and action.dest not in _NOT_PASSED]


def add_interface_flags(parser: argparse.ArgumentParser) -> None:
    """Offer every pass-through interface option on ``parser`` (long forms, default None = unset)."""
    group = parser.add_argument_group("interface server (passed to every interface process; see "
                                      "`procman interface --help`)")
    for action in interface_actions():
        long = [name for name in action.option_strings if name.startswith("--")]
        names = [name for name in long if "_" not in name] or long  # not the --snake_case aliases
        kwargs: dict[str, Any] = {"dest": action.dest, "default": None, "help": action.help}
        if isinstance(action, argparse._StoreTrueAction):
            kwargs["action"] = "store_true"
        elif isinstance(action, argparse._StoreFalseAction):
            kwargs["action"] = "store_false"
        else:
            kwargs.update(type=action.type, metavar=action.metavar or "VALUE", choices=action.choices)
            if isinstance(action, (argparse._AppendAction, argparse._ExtendAction)) or action.nargs in ("*", "+"):
                kwargs["action"] = "extend"
                kwargs["nargs"] = "+"
        group.add_argument(*names, **kwargs)


def _interface_converter(action: argparse.Action):
    def convert(value: Any, key: str) -> Any:
        many = isinstance(action, (argparse._AppendAction, argparse._ExtendAction)) or action.nargs in ("*", "+")
        if isinstance(action, argparse._StoreConstAction):
            return _as_bool(value, key)
        values = value if isinstance(value, list) and many else [value]
        if isinstance(value, list) and not many:
            raise ValueError(f"{key} takes one value, got a list")
        converted = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise ValueError(f"{key}: {item!r} is not a valid value")
            try:
                item = action.type(str(item)) if action.type else str(item)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise ValueError(f"{key}: {exc}") from None
            if action.choices is not None and item not in action.choices:
                raise ValueError(f"{key} must be one of {sorted(action.choices)}, got {item!r}")
            converted.append(item)
        return converted if many else converted[0]

    return convert


def render_flags(actions: list[argparse.Action], values: dict[str, Any]) -> list[str]:
    """Turn ``{dest: value}`` back into command-line arguments for ``actions`` (None = not given).

    The inverse of parsing, used to hand options to children and into systemd's ``ExecStart``:
    ``--flag=value`` (safe for negative numbers), repeated for lists, bare for switches.
    """
    argv: list[str] = []
    for action in actions:
        value = values.get(action.dest)
        if value is None or not action.option_strings:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreConstAction):
            # Switches, and pairs sharing a dest (--color/--no-color): the one whose constant it is.
            if value == action.const:
                argv.append(flag)
        elif isinstance(value, list):
            for item in value:  # a repeatable flag; with nargs, each item is one use's values
                argv += [flag, *map(str, item)] if isinstance(item, list) else [f"{flag}={item}"]
        else:
            argv.append(f"{flag}={value}")
    return argv


def interface_argv(config: RunConfig) -> list[str]:
    """The interface-server flags ``config`` sets, for every interface process's command line."""
    return render_flags(interface_actions(), config.interface)


def proxy_headers_warning(config: RunConfig) -> str | None:
    """A warning when proxy headers are trusted on an address clients can reach directly.

    With ``proxy_headers`` the client's address comes from ``X-Forwarded-For``; on a port open to
    the network anyone can send that header and choose the address Django sees. Loopback and
    UNIX sockets are reachable only through a proxy on this machine.
    """
    from .sockets import BindError, parse_bind

    if not config.interface.get("proxy_headers"):
        return None
    exposed = []
    for spec in config.bind:
        try:
            kind, address = parse_bind(spec)
        except BindError:
            continue  # reported when the site binds it
        if kind == "tcp" and not _loopback(address[0]):  # type: ignore[index]
            exposed.append(spec)
    if not exposed:
        return None
    return (f"proxy-headers trusts X-Forwarded-For, but {', '.join(exposed)} is reachable without the proxy: "
            "any client there can choose the REMOTE_ADDR Django sees. Bind to 127.0.0.1 or a UNIX socket "
            "behind the proxy")


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
def _as_redis_url(value: Any, key: str) -> str:
    url = _as_str(value, key)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{key} must be a Redis URL such as redis://127.0.0.1:6379/0 (rediss:// for "
                         f"TLS, redis://:PASSWORD@HOST:PORT/DB), got {value!r}")
    return url


def _as_shared_globs(value: Any, key: str) -> list[str]:
    from asgi_ipc.cluster import SharedChannels

    globs = _as_list(value, key)
    SharedChannels(globs)  # the one home of the rule; raises ValueError naming the bad glob
    return globs


def _as_cluster_name(value: Any, key: str) -> str:
    from asgi_ipc.segment import validate_prefix

    try:
        return validate_prefix(_as_str(value, key))
    except ValueError:
        raise ValueError(f"{key} must be 1-64 letters, digits, '_', '.' or '-', got {value!r}") from None


def load_file_config(directory: Path, explicit: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Read the TOML settings that apply in ``directory``, lowest precedence first.

    :returns: ``[(source label, {key: value})]`` - pyproject's table, then procman.toml (or
        ``explicit``).
    :raises ConfigError: unreadable TOML, or an explicit file that does not exist.
    """
    found: list[tuple[str, dict[str, Any]]] = []
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("procman")
        if table is not None:
            if not isinstance(table, dict):
                raise ConfigError(f"{pyproject}: [tool.procman] must be a table")
            found.append((f"{pyproject} [tool.procman]", table))
    own = explicit or directory / "procman.toml"
    if explicit is not None and not explicit.is_file():
        raise ConfigError(f"--config {explicit}: no such file")
    if own.is_file():
        data = _read_toml(own)
        found.append((str(own), data.get("procman", data) if isinstance(data.get("procman"), dict) else data))
    return found


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def resolve(flags: dict[str, Any], directory: Path, explicit: Path | None = None) -> RunConfig:
    """Merge command-line ``flags`` (None = not given) over the files over the defaults.

    :raises ConfigError: an unknown key in a file, or a bad value anywhere (naming its source).
    """
    config = RunConfig()
    known = {f.name for f in fields(RunConfig)} - {"sources", "interface"}
    passed = {action.dest: _interface_converter(action) for action in interface_actions()}
    layers = load_file_config(directory, explicit)
    layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    for source, table in layers:
        for raw_key, value in table.items():
            key = raw_key.replace("-", "_")
            if key == "color":
                key = "colour"
            if key in passed and key not in known:
                try:
                    config.interface[key] = passed[key](value, raw_key)
                except ValueError as exc:
                    raise ConfigError(f"{source}: {exc}") from None
                config.sources[key] = source
                continue
            if key not in known:
                allowed = ", ".join(sorted(k.replace("_", "-") for k in known | set(passed)))
                raise ConfigError(f"{source}: unknown setting {raw_key!r}; known settings: {allowed}")
            try:
                converted = _CONVERTERS[key](value, raw_key)
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            setattr(config, key, converted)
            config.sources[key] = source
    names = [pool.name for pool in config.pools]
    if len(set(names)) != len(names):
        raise ConfigError(f"pool names must be unique, got {names}")
    return config
