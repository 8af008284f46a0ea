"""Starting the binding site's processes (rundelay, runworker, the interface server) for tests."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator
import shutil

import pytest

from tests.django_glue.conftest import (
    REPO, Processes, made_once_per_run, process_env,
    processes_for_a_module, wait_for,
)
from tests.children import end_with_parent

SETTINGS = "tests.django_glue.bindingsite.settings"
ROUTING = "tests.django_glue.bindingsite.routing.channel_routing"


def site_env(prefix: str, db: Path | None, debug: bool = False) -> dict[str, str]:
    """The environment of a process of this site (its own settings module)."""
    return {**process_env(prefix, ROUTING, db, debug), "DJANGO_SETTINGS_MODULE": SETTINGS}


def migrate(db: Path) -> None:
    subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
                   cwd=REPO, env=site_env("unused", db), check=True, timeout=120)


def manage(prefix: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a management command of this site to completion (bounded)."""
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=REPO, env=site_env(prefix, db),
                          capture_output=True, text=True, timeout=120)


class SiteProcesses(Processes):
    """``Processes`` for the binding site: workers with its settings, rundelay, and interface
    servers on a socket the test keeps (so a restarted site serves the same port)."""

    def runworker(self, *args: str, debug: bool = False, env: dict[str, str] | None = None,
                  routing: str = ROUTING) -> subprocess.Popen[Any]:  # type: ignore[override]
        return super().runworker(routing, *args, debug=debug,
                                 env={"DJANGO_SETTINGS_MODULE": SETTINGS, **(env or {})})

    def rundelay(self, *args: str) -> subprocess.Popen[Any]:
        log_path = self.tmp_path / f"rundelay{len(self.started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "django", "rundelay", *args], cwd=REPO,
                                    env=site_env(self.prefix, self.db), stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=end_with_parent())
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.started.append(proc)
        wait_for(lambda: proc.poll() is not None or "listening on asgi.delay" in log_path.read_text(errors="replace"),
                 timeout=60)
        assert proc.poll() is None, log_path.read_text(errors="replace")
        return proc

    def listen(self, port: int = 0) -> socket.socket:
        """A listening loopback socket (``port`` 0: any free one) kept open by the test."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        self.sockets.append(sock)
        return sock

    def interface_on(self, sock: socket.socket) -> subprocess.Popen[Any]:
        """An interface server accepting on ``sock``."""
        log_path = self.tmp_path / f"interface{len(self.started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "procman.interface", "--settings", SETTINGS, "--fd", str(sock.fileno())],
                cwd=REPO, env=site_env(self.prefix, self.db), pass_fds=[sock.fileno()],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=end_with_parent(),
            )
        self.started.append(proc)
        wait_for(lambda: proc.poll() is not None or "listening on" in log_path.read_text(errors="replace"),
                 timeout=60)
        assert proc.poll() is None, log_path.read_text(errors="replace")
        return proc


@pytest.fixture(scope="session")
def site_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated sqlite file of this site, made once per test run (shared by xdist workers)."""
    return made_once_per_run(tmp_path_factory, "django_glue-bindingsite.sqlite3", migrate)


@pytest.fixture
def site(ipc_layer: Any, site_db_template: Path, tmp_path: Path) -> Iterator[SiteProcesses]:
    """This site's processes on the test's layer and a private copy of the database."""
    db = tmp_path / "db.sqlite3"
    shutil.copyfile(site_db_template, db)
    procs = SiteProcesses(ipc_layer.prefix, db, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()
        print(procs.logs())  # shown by pytest only when the test failed


@pytest.fixture(scope="module")
def module_site(site_db_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteProcesses]:
    """``site`` shared by one module's tests, with its own layer (``module_site.layer``), database
    copy and log directory, stopped (and the segment removed) after the module's last test.

    Only for tests that never kill, restart or stop its processes and use channel names of their
    own (see ``module_processes``).
    """
    with processes_for_a_module(SiteProcesses, site_db_template, tmp_path_factory) as procs:
        yield procs
