"""Channel and group name rules of ASGI 1, and per-channel capacity patterns.

Rules (reference section 1.2/1.8): names are ``str`` shorter than 100 characters made of ASCII
letters, digits, ``-``, ``_`` and ``.``; a channel name may contain one ``?`` (single-reader,
not last) or one ``!`` (process-specific). Every failure raises ``TypeError`` naming the value.
"""

from __future__ import annotations

import fnmatch
import random
import re
import string
from typing import Iterable, Iterator, Mapping, Pattern, Union

__all__ = [
    "MAX_NAME_LENGTH",
    "validate_channel",
    "validate_receive_channels",
    "validate_group",
    "non_local_name",
    "CapacityRules",
    "new_channel_names",
]

MAX_NAME_LENGTH = 100  # names must be shorter than this

_RANDOM = random.SystemRandom()
_LETTERS = string.ascii_letters

_CHANNEL_RE = re.compile(r"^[A-Za-z0-9._-]+([?!][A-Za-z0-9._-]*)?\Z")
_GROUP_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")


def new_channel_names(pattern: object, tries: int = 100) -> "Iterator[str]":
    """Candidate names for ``new_channel(pattern)``: ``pattern`` (ending in ``?``) + 12 random
    letters, ``tries`` of them; the layer returns the first one not in use.

    :raises TypeError: ``pattern`` does not end in ``?`` or is not a valid channel prefix.
    """
    if not isinstance(pattern, str) or not pattern.endswith("?"):
        raise TypeError(
            f"new_channel needs a pattern ending in '?', not {pattern!r} (process-specific "
            "'!' channels are named by the process that reads them)")
    validate_channel(pattern + "x")
    return (pattern + "".join(_RANDOM.choice(_LETTERS) for _ in range(12)) for _ in range(tries))


def _check_text(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a str, not {type(name).__name__}: {name!r}")
    if len(name) >= MAX_NAME_LENGTH:
        raise TypeError(
            f"{kind} name {name[:40]!r}... is {len(name)} characters; the limit is "
            f"{MAX_NAME_LENGTH - 1}"
        )
    return name


def validate_channel(name: object, receive: bool = False) -> str:
    """Return ``name`` if it is a valid channel name, else raise ``TypeError``.

    With ``receive=True`` a process-specific name must be given as its prefix ending in ``!``.
    """
    _check_text("Channel", name)
    assert isinstance(name, str)
    if not _CHANNEL_RE.match(name):
        raise TypeError(
            f"Invalid channel name {name!r}: use ASCII letters, digits, '-', '_', '.', "
            "and at most one '?' or '!'"
        )
    if "?" in name and name.endswith("?"):
        raise TypeError(f"Invalid channel name {name!r}: a '?' name must not end with '?'")
    if receive and "!" in name and not name.endswith("!"):
        raise TypeError(
            f"Cannot receive on {name!r}: receive on the process-specific prefix "
            f"{non_local_name(name)!r} and read the full name from the result"
        )
    return name


def validate_receive_channels(channels: object) -> list[str]:
    """Validate the ``channels`` argument of ``receive``: a non-empty list of names."""
    if isinstance(channels, (str, bytes)) or not isinstance(channels, (list, tuple)):
        raise TypeError(f"channels must be a list of channel names, not {channels!r}")
    if not channels:
        raise TypeError("channels must not be empty")
    return [validate_channel(name, receive=True) for name in channels]


def validate_group(name: object) -> str:
    """Return ``name`` if it is a valid group name, else raise ``TypeError``."""
    _check_text("Group", name)
    assert isinstance(name, str)
    if not _GROUP_RE.match(name):
        raise TypeError(
            f"Invalid group name {name!r}: use only ASCII letters, digits, '-', '_' and '.'"
        )
    return name


def non_local_name(name: str) -> str:
    """The part of a channel name up to and including its ``!``; other names unchanged."""
    bang = name.find("!")
    return name if bang < 0 else name[: bang + 1]


PatternKey = Union[str, Pattern[str]]


class CapacityRules:
    """Resolve a channel's capacity from ``channel_capacity`` patterns (first match wins).

    String keys are globs (``fnmatch``); keys with a ``match`` method are used as compiled
    regular expressions. Results are cached per name.
    """

    def __init__(self, default: int, patterns: Mapping[PatternKey, int] | None = None) -> None:
        if not isinstance(default, int) or default < 1:
            raise ValueError(f"capacity must be a positive int, not {default!r}")
        self.default = default
        self._rules: list[tuple[Pattern[str], int]] = []
        for key, value in (patterns or {}).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"channel_capacity[{key!r}] must be a positive int, not {value!r}")
            if hasattr(key, "match"):
                self._rules.append((key, value))  # type: ignore[arg-type]
            elif isinstance(key, str):
                self._rules.append((re.compile(fnmatch.translate(key)), value))
            else:
                raise ValueError(f"channel_capacity key {key!r} is neither a glob nor a regex")
        self._cache: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        try:
            return self._cache[name]
        except KeyError:
            pass
        value = self.default
        for regex, capacity in self._rules:
            if regex.match(name):
                value = capacity
                break
        if len(self._cache) < 10000:
            self._cache[name] = value
        return value

    def patterns(self) -> Iterable[tuple[str, int]]:
        """The rules as ``(regex source, capacity)`` pairs, for diagnostics."""
        return [(regex.pattern, capacity) for regex, capacity in self._rules]
