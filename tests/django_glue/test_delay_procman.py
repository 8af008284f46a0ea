"""``procman run --delay``: the delay server as a supervised role of the site."""
from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from procman.config import ConfigError, RunConfig, resolve
from procman.project import load_project
from procman.site import SiteError, build_roles
from tests.django_glue.bindingsite.run import SETTINGS, site_db_template, site_env  # noqa: F401 (fixture)
from tests.django_glue.conftest import REPO
from tests.procman.procs import Site, unique_prefix


def test_delay_role_is_added_only_when_asked() -> None:
    project = load_project(SETTINGS, REPO, "default")
    plain = build_roles(RunConfig(workers=1), project, [])
    assert [role.name for role in plain] == ["interface", "worker"]
    roles = build_roles(RunConfig(workers=1, delay=True), project, [])
    (delay,) = [role for role in roles if role.name == "delay"]
    assert delay.count == 1 and not delay.scalable and not delay.heartbeat
    assert delay.argv[-5:] == ["rundelay", "--settings", SETTINGS, "--layer", "default"]
    assert delay.env["DJANGO_SETTINGS_MODULE"] == SETTINGS


def test_delay_role_needs_the_app() -> None:
    project = load_project("tests.django_glue.project.settings", REPO, "default")
    with pytest.raises(SiteError, match='--delay needs "django_glue.delay"'):
        build_roles(RunConfig(workers=1, delay=True), project, [])


def test_delay_setting_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "procman.toml").write_text("delay = true\n")
    assert resolve({}, tmp_path).delay is True
    (tmp_path / "procman.toml").write_text('delay = "yes"\n')
    with pytest.raises(ConfigError, match="delay must be true or false"):
        resolve({}, tmp_path)


def test_procman_run_delay_delivers_and_stops_clean(site_db_template: Path, tmp_path: Path) -> None:
    from asgi_ipc import IPCChannelLayer

    prefix = unique_prefix("dl")
    db = tmp_path / "db.sqlite3"
    shutil.copyfile(site_db_template, db)
    env = {**site_env(prefix, db), "DG_TEST_DEFAULT_CREATE": "1"}
    site = Site(["run", "--bind", "127.0.0.1:0", "--settings", SETTINGS, "--workers", "1", "--delay"],
                REPO, prefix, tmp_path / "ctl", env)
    layer: Any = None
    try:
        site.wait_ready()
        site.wait_line("listening on asgi.delay", 60)
        layer = IPCChannelLayer(prefix=prefix, create=False, receive_timeout=0.5)
        sent = time.monotonic()
        layer.send("asgi.delay", {"channel": "delayed.site", "delay": 500, "content": {"via": "procman"}})
        deadline = time.monotonic() + 20
        got = None
        while got is None and time.monotonic() < deadline:
            got, message = layer.receive(["delayed.site"], block=True)
        assert got == "delayed.site" and message == {"via": "procman"}
        assert time.monotonic() - sent >= 0.45
        layer.close()
        layer = None
        site.signal(signal.SIGTERM)
        assert site.wait(60) == 0, site.output
        assert not site.segment_exists()
    finally:
        if layer is not None:
            layer.close()
        site.close()


def test_exported_unit_runs_the_delay_server() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "procman", "export", "systemd", "--settings", SETTINGS, "--delay"],
        cwd=REPO, env=site_env("dlexport", None), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    exec_start = next(line for line in result.stdout.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith("--delay") or " --delay" in exec_start
