"""What ``procman demo --channels4`` does before ``run``: choose the demo's settings and enough
Daphne processes to show messages crossing between them. Nothing to migrate: it has no database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from procman.demo.setup import DemoError

__all__ = ["SETTINGS", "prepare_channels4_demo"]

SETTINGS = "procman.demo_channels4.settings"
#: At least this many Daphne processes, so that two tabs can be served by different ones.
MIN_SERVERS = 2


def prepare_channels4_demo(flags: dict[str, Any]) -> tuple[Path, dict[str, Any], str]:
    """Return ``run``'s inputs for the Channels 4 demo.

    :returns: ``(project directory, flags with the demo's settings and server count, banner)``.
    :raises DemoError: other settings were asked for.
    """
    if flags.get("settings") not in (None, SETTINGS):
        raise DemoError("procman demo runs its own settings; use `procman run --settings ...` for your project")
    if flags.get("asgi"):
        raise DemoError("procman demo --channels4 runs its own application; use `procman run --asgi ...` "
                        "for your project")
    servers = flags.get("interfaces") or max(MIN_SERVERS, os.cpu_count() or 1)
    merged = dict(flags, settings=SETTINGS, interfaces=servers)
    banner = ("Channels 4 demo chat: open the URL above followed by chat/lobby/ in two browser tabs; each tab "
              f"shows which of the {servers} Daphne processes serves it")
    return Path(__file__).resolve().parent, merged, banner
