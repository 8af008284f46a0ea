"""``procman doctor`` against real projects: a healthy running site, settings workers would refuse,
unapplied migrations; and ``procman run``'s own migration warning and final line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from procman import exitcodes

from .procs import REPO, Site, python, unique_prefix

DEPLOYSITE = Path(__file__).with_name("sites") / "deploysite"


def doctor(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = dict(os.environ, NO_COLOR="1", **env)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
    full.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([python(), "-m", "procman", "doctor", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def site_dir(tmp_path):
    """A copy of the deploy test site with its own SQLite file (so tests may break or migrate it)."""
    directory = tmp_path / "deploysite"
    shutil.copytree(DEPLOYSITE, directory, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def findings(result: subprocess.CompletedProcess) -> list[dict]:
    return json.loads(result.stdout)


def test_doctor_on_a_healthy_running_site_is_all_ok_and_exits_0(site_dir, tmp_path):
    prefix = unique_prefix("dsh")
    db = tmp_path / "db.sqlite3"
    env = {"DEPLOYSITE_PREFIX": prefix, "DEPLOYSITE_DB": str(db), "PROCMAN_CONTROL_DIR": str(tmp_path / "ctl")}
    migrate = subprocess.run([python(), "manage.py", "migrate", "--noinput"], cwd=site_dir, capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, **env))
    assert migrate.returncode == 0, migrate.stderr
    (site_dir / "procman.toml").write_text('bind = ["127.0.0.1:0", "unix:%s"]\nworkers = 1\n' % (tmp_path / "s.sock"))
    site = Site(["run"], site_dir, prefix, tmp_path / "ctl", env=env)
    try:
        site.wait_line("ready at", 60)
        assert "unapplied migration" not in site.output
        # The port of `procman.toml` is its own site's: that is no failure. (Port 0 is always free,
        # so check the concrete address the site reports too.)
        url = site.wait_line("ready at").split("ready at ", 1)[1].split()[0].rstrip(",")
        port = url.rsplit(":", 1)[1].strip("/")
        result = doctor(site_dir, "--json", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        levels = {(f["check"], f["level"]) for f in findings(result)}
        assert ("fail", ) not in {(level,) for _, level in levels}, result.stdout
        # Found by its segment's creator, not its control socket (under systemd that is elsewhere).
        elsewhere = {**env, "PROCMAN_CONTROL_DIR": str(tmp_path / "elsewhere")}
        named = doctor(site_dir, "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{tmp_path / 's.sock'}",
                       env=elsewhere)
        assert named.returncode == 0, named.stdout
        assert f"127.0.0.1:{port}: served by this site (supervisor pid {site.process.pid})" in named.stdout
        assert f"s.sock: served by this site" in named.stdout
        assert f"asgi_ipc.{prefix}" in named.stdout and "ok   migrations all migrations applied" in named.stdout
        assert "ok   fastpath" in named.stdout or "WARN fastpath" in named.stdout
        # `procman status` says whether the fast path is on, too.
        status = site.cli("status", "--name", prefix)
        assert status.returncode == 0 and "fast path: " in status.stdout
    finally:
        site.signal(signal.SIGTERM)
        code = site.wait(60)
        site.close()
    assert code == exitcodes.OK
    assert site.output.splitlines()[-1].endswith("procman     | stopped (exit code 0)")


def test_doctor_fails_on_settings_the_workers_would_refuse(site_dir):
    settings = site_dir / "deploysite" / "settings.py"
    settings.write_text(settings.read_text().replace('"ROUTING": "deploysite.routing.channel_routing",', ""))
    result = doctor(site_dir, "--bind", "127.0.0.1:0", env={"DEPLOYSITE_PREFIX": unique_prefix("dsr")})
    assert result.returncode == 1
    assert "ok   settings   deploysite.settings imports" in result.stdout
    assert "FAIL settings   workers cannot boot: InvalidChannelLayerError: CHANNEL_LAYERS['default']['ROUTING'] " \
           "is required" in result.stdout, result.stdout


def test_doctor_and_run_warn_about_unapplied_migrations(site_dir, tmp_path):
    prefix = unique_prefix("dsm")
    env = {"DEPLOYSITE_PREFIX": prefix, "DEPLOYSITE_DB": str(tmp_path / "fresh.sqlite3")}
    result = doctor(site_dir, "--bind", "127.0.0.1:0", env=env)
    assert result.returncode == 0, result.stdout  # a warning, not a failure
    assert "WARN migrations you have" in result.stdout and "(contenttypes)" in result.stdout
    assert "python manage.py migrate" in result.stdout
    site = Site(["run", "--bind", "127.0.0.1:0", "--workers", "1"], site_dir, prefix, tmp_path / "ctl", env=env)
    try:
        site.wait_line("ready at", 60)
        site.wait_line("warning: you have", 60)
    finally:
        site.close()
