"""Django set-up for the django_glue tests, and fixtures that start real processes.

In-process tests use an in-memory sqlite test database and an isolated layer per test
(``ChannelTestCase``). Process tests (``runworker``, the interface server) get their own layer
segment, their own sqlite file copied from a migrated template (made once per run), and are
stopped by finalizers; a module whose tests only talk to its processes shares one set
(``module_processes``), started once.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from tests.children import end_with_parent

import django  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SETTINGS = "tests.django_glue.project.settings"

# Configure Django in this process, then put the environment back: the other test packages start
# processes (procman, demo sites) that must not inherit our settings module.
_previous_settings = os.environ.get("DJANGO_SETTINGS_MODULE")
os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
try:
    django.setup()
finally:
    if _previous_settings is None:
        del os.environ["DJANGO_SETTINGS_MODULE"]
    else:
        os.environ["DJANGO_SETTINGS_MODULE"] = _previous_settings

from django.conf import settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def django_test_db() -> Iterator[None]:
    """An in-memory test database with every migration applied, for in-process tests."""
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    yield
    connection.creation.destroy_test_db(old_name, verbosity=0)
    teardown_test_environment()


def unique_prefix() -> str:
    return f"t{os.getpid()}_{uuid.uuid4().hex[:10]}"


def new_test_layer() -> Any:
    """A new real IPCChannelLayer segment with the test settings' sizes; the caller closes it."""
    from asgi_ipc import IPCChannelLayer

    config = dict(settings.CHANNEL_LAYERS["default"]["TEST_CONFIG"])
    return IPCChannelLayer(prefix=unique_prefix(), create=True, **config)


@pytest.fixture
def ipc_layer() -> Iterator[Any]:
    """A fresh real IPCChannelLayer segment (created here, removed at the end)."""
    layer = new_test_layer()
    try:
        yield layer
    finally:
        layer.close()


def process_env(prefix: str, routing: str, db: Path | None, debug: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        DG_TEST_PREFIX=prefix,
        DG_TEST_ROUTING=routing,
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    if db is not None:
        env["DG_TEST_DB"] = str(db)
    if debug:
        env["DG_TEST_DEBUG"] = "1"
    else:
        env.pop("DG_TEST_DEBUG", None)
    return env


def made_once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The file ``name``, made by ``make(path)`` once per test run and shared by every xdist worker.

    xdist gives each worker its own base temporary directory inside one per-run directory; the
    file lives in that shared parent, and an exclusive ``flock`` makes the first worker build it
    while the others wait (bounded: ``make`` must bound its own work, as a ``subprocess.run``
    timeout does; a holder that dies releases the lock). ``make`` writes a scratch name that is
    renamed into place, so a file found under ``name`` is always complete. A run without xdist
    makes it in its own base temporary directory.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / name
    with open(root / f"{name}.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            scratch = root / f"{name}.{os.getpid()}.partial"
            make(scratch)
            scratch.rename(path)
    return path


@pytest.fixture(scope="session")
def migrated_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sqlite file with all migrations applied, made once per test run (see made_once_per_run)."""

    def migrate(path: Path) -> None:
        env = process_env("unused", "tests.django_glue.project.routing.channel_routing", path)
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=REPO, env=env, check=True, timeout=120,
        )

    return made_once_per_run(tmp_path_factory, "django_glue-project.sqlite3", migrate)


@pytest.fixture
def db_file(migrated_db_template: Path, tmp_path: Path) -> Path:
    """A private, migrated sqlite file for processes started by this test."""
    path = tmp_path / "db.sqlite3"
    shutil.copyfile(migrated_db_template, path)
    return path


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Processes:
    """Starts worker/interface processes for one test and stops them all at the end."""

    #: The layer a module-scoped fixture made for these processes (per test: ``ipc_layer``).
    layer: Any = None

    def __init__(self, prefix: str, db: Path | None, tmp_path: Path) -> None:
        self.prefix = prefix
        self.db = db
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[Any]] = []
        self.sockets: list[socket.socket] = []

    def runworker(
        self, routing: str, *args: str, debug: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        log = open(self.tmp_path / f"worker{len(self.started)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", *args],
            cwd=REPO, env={**process_env(self.prefix, routing, self.db, debug), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=end_with_parent(),
        )
        log.close()
        proc.log_path = self.tmp_path / f"worker{len(self.started)}.log"  # type: ignore[attr-defined]
        self.started.append(proc)
        # Ready = every thread is in its receive loop; waiting keeps a slow boot on a loaded
        # machine from running into the interface server's 5 s WebSocket connect timeout.
        threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
        wait_for(
            lambda: proc.poll() is not None
            or proc.log_path.read_text(errors="replace").count("Listening on channels") >= threads,
            timeout=60,
        )
        return proc

    def interface(self, *args: str) -> int:
        """Start an interface server (extra flags ``args``) on an inherited socket; returns its port."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.sockets.append(sock)
        log = open(self.tmp_path / f"interface{len(self.started)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "procman.interface", "--settings", SETTINGS, "--fd", str(sock.fileno()), *args],
            cwd=REPO, env=process_env(self.prefix, "unused", self.db), pass_fds=[sock.fileno()],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=end_with_parent(),
        )
        log.close()
        self.started.append(proc)
        log_path = self.tmp_path / f"interface{len(self.started) - 1}.log"
        wait_for(lambda: proc.poll() is not None or "listening on" in log_path.read_text(errors="replace"),
                 timeout=60)
        return sock.getsockname()[1]

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            stop_process(proc)
        for sock in self.sockets:
            sock.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in sorted(self.tmp_path.glob("*.log"))
        )


@pytest.fixture
def processes(ipc_layer: Any, db_file: Path, tmp_path: Path) -> Iterator[Processes]:
    """Factory for real runworker / interface processes on this test's layer and database."""
    procs = Processes(ipc_layer.prefix, db_file, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()
        print(procs.logs())  # shown by pytest only when the test failed


ProcessesType = TypeVar("ProcessesType", bound=Processes)


@contextmanager
def processes_for_a_module(kind: type[ProcessesType], db_template: Path,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessesType]:
    """``kind`` (``Processes`` or a subclass) on a layer (``.layer``), database copy and log
    directory of its own, all stopped and removed on leaving; what the module fixtures yield."""
    tmp_path = tmp_path_factory.mktemp("module_processes")
    db = tmp_path / "db.sqlite3"
    shutil.copyfile(db_template, db)
    layer = new_test_layer()
    procs = kind(layer.prefix, db, tmp_path)
    procs.layer = layer
    try:
        yield procs
    finally:
        procs.stop_all()
        layer.close()
        print(procs.logs())  # shown by pytest only when the module's last teardown failed


@pytest.fixture(scope="module")
def module_processes(migrated_db_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """``processes`` shared by one module's tests, with its own layer (``module_processes.layer``),
    database copy and log directory, stopped (and the segment removed) after the module's last test.

    For a module whose tests only talk to the processes - each over its own connections and reply
    channels, none killing, reloading or stopping them - so one start serves all of them. A test
    that does any of that takes ``processes``.
    """
    with processes_for_a_module(Processes, migrated_db_template, tmp_path_factory) as procs:
        yield procs


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
