"""Where the demo keeps its data: ``$XDG_DATA_HOME/procman-demo`` (``~/.local/share/procman-demo``)."""

import os
from pathlib import Path

__all__ = ["data_dir"]


def data_dir() -> Path:
    """The per-user data directory of the demo (not created here)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "procman-demo"
