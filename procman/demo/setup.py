"""What ``procman demo`` does before ``run``: pick the data directory, migrate, fill in defaults.

The database is migrated on the first start and whenever the demo's migrations (or Django) change;
a stamp file in the data directory remembers what it was migrated with.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from procman.demo.paths import data_dir

__all__ = ["prepare_demo", "DemoError"]

SETTINGS = "procman.demo.settings"


class DemoError(Exception):
    """The demo could not be prepared (data directory or migration failed)."""

    exit_code = 2


def _migrations_fingerprint() -> str:
    """Changes whenever the demo's migrations or the Django version change."""
    from importlib.metadata import version

    digest = hashlib.sha256(version("django").encode())
    for path in sorted((Path(__file__).parent / "chat" / "migrations").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _migrate(directory: Path) -> None:
    """Run ``migrate`` unless the database is known to be up to date (saves half a second)."""
    stamp = directory / ".migrated"
    fingerprint = _migrations_fingerprint()
    database = directory / "demo.sqlite3"
    if database.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS)
    result = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env=env, capture_output=True, text=True, timeout=300, cwd=directory,
    )
    if result.returncode != 0:
        raise DemoError(f"migrating the demo database in {directory} failed:\n{result.stdout}{result.stderr}")
    stamp.write_text(fingerprint)


def prepare_demo(flags: dict[str, Any]) -> tuple[Path, dict[str, Any], str]:
    """Create the data directory, migrate the SQLite database, and return ``run``'s inputs.

    :returns: ``(project directory, flags with the demo's settings, banner line)``.
    :raises DemoError: the directory cannot be created or ``migrate`` failed (its output included).
    """
    if flags.get("settings") not in (None, SETTINGS):
        raise DemoError("procman demo runs its own settings; use `procman run --settings ...` for your project")
    directory = Path(os.environ.get("PROCMAN_DEMO_DATA_DIR") or data_dir())
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DemoError(f"cannot create the demo's data directory {directory}: {exc.strerror}; "
                        "set PROCMAN_DEMO_DATA_DIR to a writable directory") from None
    os.environ["PROCMAN_DEMO_DATA_DIR"] = str(directory)
    _migrate(directory)
    merged = dict(flags, settings=SETTINGS)
    banner = f"demo chat: open the URL above in two browser tabs (data in {directory})"
    return directory, merged, banner
