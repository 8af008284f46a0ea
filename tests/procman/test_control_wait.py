"""``procman reload --wait`` and ``procman stop --wait``: a deploy script learns when the new code
serves, whether the reload failed, and when the site has stopped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from procman import exitcodes

from .procs import Site, http_get, unique_prefix

DEPLOYSITE = Path(__file__).with_name("sites") / "deploysite"


@pytest.fixture
def site(tmp_path):
    directory = tmp_path / "deploysite"
    shutil.copytree(DEPLOYSITE, directory, ignore=shutil.ignore_patterns("__pycache__"))
    prefix = unique_prefix("cw")
    s = Site(["run", "--bind", "127.0.0.1:0", "--workers", "1"], directory, prefix, tmp_path / "ctl",
             env={"DEPLOYSITE_PREFIX": prefix})
    s.directory = directory
    yield s
    s.close()


def worker_pid(url: str) -> str:
    status, body = http_get(url)
    assert status == 200, body
    return body.decode().split(" pid ")[1].strip()


def test_reload_wait_returns_once_new_workers_serve_and_stop_wait_once_stopped(site):
    url = site.wait_ready()
    before = worker_pid(url)
    reload = site.cli("reload", "--name", site.prefix, "--wait", "--timeout", "90", timeout=120)
    assert reload.returncode == exitcodes.OK, reload.stderr
    assert "reload started" in reload.stdout and "reload done: generation 2 serves" in reload.stdout
    # When it returns, the old worker is gone and a new one answers (no waiting needed).
    assert worker_pid(url) != before
    stop = site.cli("stop", "--name", site.prefix, "--wait", "--timeout", "90", timeout=120)
    assert stop.returncode == exitcodes.OK, stop.stderr
    assert stop.stdout.splitlines()[-1] == "stopped"
    assert site.process.poll() is not None or site.wait(5) == exitcodes.OK  # already gone when it returned
    assert not site.segment_exists()


def test_reload_wait_fails_when_the_new_code_cannot_boot(site):
    url = site.wait_ready()
    before = worker_pid(url)
    settings = site.directory / "deploysite" / "settings.py"
    settings.write_text(settings.read_text() + "\nraise RuntimeError('broken deploy')\n")
    reload = site.cli("reload", "--name", site.prefix, "--wait", "--timeout", "90", timeout=120)
    assert reload.returncode == exitcodes.FAILURE
    assert "reload failed: new worker.1 could not boot" in reload.stderr and "broken deploy" in reload.stderr
    assert worker_pid(url) == before  # the old code still serves


def test_stop_wait_times_out_with_a_clear_error(site):
    site.wait_ready()
    # A stop the supervisor cannot finish in 0 s: --wait says so and exits non-zero.
    stop = site.cli("stop", "--name", site.prefix, "--wait", "--timeout", "0", timeout=60)
    assert stop.returncode == exitcodes.FAILURE and "still running after 0 s" in stop.stderr
    assert site.wait(60) == exitcodes.OK
