"""One log stream for the whole site: every line prefixed ``HH:MM:SS role.N |``.

Children write to a pipe (stdout and stderr merged); the supervisor reads the pipes in its main loop
and writes complete lines here. Colour (one per process, honcho style) is used only when the output
is a terminal and ``NO_COLOR`` is not set.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

__all__ = ["LogStream", "LineSplitter"]

_COLOURS = ["36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94"]
_MAX_LINE = 16 * 1024


class LogStream:
    """Writes prefixed lines to ``out``.

    :param out: where lines go (default ``sys.stdout``).
    :param colour: ``True``/``False`` to force, ``None`` to colour only on a TTY without ``NO_COLOR``.
    :param clock: returns the local time as ``time.struct_time`` (replaceable in tests).
    """

    def __init__(self, out: TextIO | None = None, colour: bool | None = None, clock=time.localtime):
        self.out = out if out is not None else sys.stdout
        if colour is None:
            isatty = getattr(self.out, "isatty", lambda: False)
            colour = bool(isatty()) and "NO_COLOR" not in os.environ
        self.colour = colour
        self.clock = clock
        self._colour_of: dict[str, str] = {"procman": "1"}
        self._width = len("procman")

    def reserve(self, name: str) -> None:
        """Make the prefix column wide enough for ``name`` from the start (aligned output)."""
        self._width = max(self._width, len(name))

    def _prefix(self, name: str, when: time.struct_time | None = None) -> str:
        self._width = max(self._width, len(name))
        stamp = time.strftime("%H:%M:%S", when or self.clock())
        label = f"{stamp} {name.ljust(self._width)} |"
        if not self.colour:
            return label
        code = self._colour_of.get(name)
        if code is None:
            code = _COLOURS[(len(self._colour_of) - 1) % len(_COLOURS)]
            self._colour_of[name] = code
        return f"\x1b[{code}m{label}\x1b[0m"

    def line(self, name: str, text: str, when: time.struct_time | None = None) -> None:
        """Write one line from process ``name`` (``worker.2``, ``procman``...).

        :param when: the time the line was produced, if it was held back (default: now).
        """
        try:
            self.out.write(f"{self._prefix(name, when)} {text.rstrip()}\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass  # our own stdout went away (e.g. piped into a closed `head`); keep supervising

    def info(self, text: str) -> None:
        """A line from the supervisor itself."""
        self.line("procman", text)


class LineSplitter:
    """Turns a child's byte stream into complete text lines (over-long lines are cut at 16 KiB)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        """Add bytes, return the complete lines they finish."""
        self._buffer += data
        lines = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                if len(self._buffer) >= _MAX_LINE:
                    cut = _MAX_LINE
                    piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
                    lines.append(piece.decode("utf-8", "replace"))
                    continue
                break
            piece, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            lines.append(piece.decode("utf-8", "replace").rstrip("\r"))
        return lines

    def flush(self) -> list[str]:
        """Return the unterminated tail, if any (call at end of stream)."""
        tail, self._buffer = self._buffer, b""
        return [tail.decode("utf-8", "replace")] if tail else []
