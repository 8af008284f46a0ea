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
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "RunConfig", "Pool", "load_file_config", "resolve", "parse_size", "parse_pool"]


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
    graceful_timeout: float = 30.0
    colour: bool | None = None
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


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"512M"``, ``"1.5G"``, ``"300MiB"`` or a plain byte count -> bytes.

    :raises ValueError: not a size.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"size must be positive, got {text}")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size; use e.g. 512M, 1G or a number of bytes")
    number, unit = float(match.group(1)), match.group(2).lower()
    value = int(number * 1024 ** " kmgt".index(unit or " "))
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


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
    "max_memory": lambda v, k: parse_size(v),
    "timeout": _as_seconds,
    "graceful_timeout": _as_seconds,
    "colour": _as_bool,
    "asgi": _as_str,
    "worker": lambda v, k: [_as_list(names, k) for names in (v if isinstance(v, list) else [v])],
}


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
    known = {f.name for f in fields(RunConfig)} - {"sources"}
    layers = load_file_config(directory, explicit)
    layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    for source, table in layers:
        for raw_key, value in table.items():
            key = raw_key.replace("-", "_")
            if key == "color":
                key = "colour"
            if key not in known:
                allowed = ", ".join(sorted(k.replace("_", "-") for k in known))
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
