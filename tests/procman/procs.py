"""Helpers for tests that run real supervisor processes: output capture and bounded waits."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

from tests.children import end_with_parent

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    """Poll ``predicate`` every 50 ms until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def is_dead(proc: psutil.Process) -> bool:
    """Whether ``proc`` has ended: gone, or a zombie (it holds no memory, socket or file any more;
    only its exit status waits for its parent to collect it)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_dead(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for every process of ``procs`` to end; return those still running.

    Unlike ``psutil.wait_procs`` this does not wait for a zombie to be reaped: the children of a
    SIGKILLed supervisor are orphans whose new parent is PID 1, and an init that reaps lazily (some
    container inits reap every 2 s) would otherwise add seconds to every teardown.
    """
    deadline = time.monotonic() + timeout
    alive = [proc for proc in procs if not is_dead(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [proc for proc in alive if not is_dead(proc)]
    return alive


class Supervised:
    """A supervisor subprocess whose merged output is collected line by line."""

    def __init__(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
        full_env.update(env or {})
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=end_with_parent(),
        )
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, needle: str, timeout: float = 30.0, after: int = 0) -> str:
        """Wait for an output line containing ``needle`` (searching from line number ``after``)."""
        def found() -> str | None:
            return next((line for line in self.lines[after:] if needle in line), None)

        try:
            return wait_for(found, timeout, f"output line {needle!r}")  # type: ignore[return-value]
        except AssertionError:
            raise AssertionError(f"no line containing {needle!r} within {timeout} s; output:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill_everything(self) -> None:
        """Finalizer: kill the supervisor's whole session (children run in their own groups)."""
        procs = self.descendants()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        wait_dead(procs, timeout=5)


def python() -> str:
    return sys.executable


HELLOSITE = Path(__file__).with_name("sites") / "hellosite"


def unique_prefix(tag: str = "pm") -> str:
    import uuid

    return f"{tag}{os.getpid()}_{uuid.uuid4().hex[:8]}"


def remove_segment(prefix: str) -> None:
    """Finalizer: remove a test site's segment if a killed supervisor left it."""
    from asgi_ipc.segment import remove

    try:
        remove(prefix)
    except Exception:
        pass


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Site(Supervised):
    """``procman run``/``demo`` in a subprocess, with its own layer prefix and control directory."""

    def __init__(self, args: list[str], cwd: Path, prefix: str, control_dir: Path, env: dict[str, str] | None = None):
        self.prefix = prefix
        self.control_dir = control_dir
        full_env = {"PROCMAN_CONTROL_DIR": str(control_dir), "HELLOSITE_PREFIX": prefix}
        full_env.update(env or {})
        super().__init__([python(), "-m", "procman", *args], cwd=cwd, env=full_env)

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait for the ready line; return the first URL it names."""
        line = self.wait_line("ready at http", timeout)
        return line.split("ready at ", 1)[1].split()[0].rstrip(",")

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        env = dict(os.environ, PROCMAN_CONTROL_DIR=str(self.control_dir), NO_COLOR="1")
        return subprocess.run([python(), "-m", "procman", *args], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)

    def status(self) -> dict:
        """The supervisor's answer to ``status`` over its control socket, asked from this process
        (no ``procman status`` interpreter to start); empty if it does not answer."""
        from procman import control

        try:
            return control.request(self.control_dir / f"{self.prefix}.sock", "status", timeout=10)
        except control.ControlError:
            return {}

    def roles_from_status(self) -> dict[int, str]:
        """``{pid: role}`` of the children the supervisor lists in ``status`` (empty if it does not answer)."""
        return {entry["pid"]: entry["role"] for entry in self.status().get("processes", [])}

    def segment_exists(self) -> bool:
        return os.path.exists(f"/dev/shm/asgi_ipc.{self.prefix}")

    def close(self) -> None:
        self.kill_everything()
        remove_segment(self.prefix)


def processes_by_role(s: Supervised) -> dict[str, list[psutil.Process]]:
    """The supervisor's live children grouped by their ``PROCMAN_ROLE`` (``worker``, ``daphne``...).

    A worker forked by the fork server (``--preload``) started with the zygote's environment, so its
    role comes from the supervisor's ``status``; the zygote itself, which has no role, is left out.
    """
    found: dict[str, list[psutil.Process]] = {}
    by_pid: dict[int, str] | None = None
    for proc in s.descendants():
        try:
            role = proc.environ().get("PROCMAN_ROLE")
        except psutil.Error:
            continue
        if role is None and isinstance(s, Site):
            if by_pid is None:
                by_pid = s.roles_from_status()
            role = by_pid.get(proc.pid)
            if role is None:
                continue
        found.setdefault(role, []).append(proc)
    return found


class SteadyLoad:
    """``threads`` clients GETting ``url`` back to back until stopped, each on a new connection
    per request, or with ``keep_alive`` on one persistent HTTP/1.1 connection (reopened when the
    server answered ``Connection: close``); every status code and every error is recorded. Use as
    a context manager."""

    def __init__(self, url: str, threads: int = 4, timeout: float = 15.0, keep_alive: bool = False) -> None:
        self.url, self.timeout = url, timeout
        self.results: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        target = self._load_keep_alive if keep_alive else self._load
        self._threads = [threading.Thread(target=target, daemon=True) for _ in range(threads)]

    def _load(self) -> None:
        while not self._stop.is_set():
            try:
                self.results.append(http_get(self.url, timeout=self.timeout)[0])
            except OSError as exc:
                self.errors.append(repr(exc))

    def _load_keep_alive(self) -> None:
        import http.client
        import urllib.parse

        parts = urllib.parse.urlsplit(self.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        try:
            while not self._stop.is_set():
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    self.results.append(response.status)
                except (OSError, http.client.HTTPException) as exc:
                    self.errors.append(repr(exc))
                    conn.close()  # and reconnect on the next request
        finally:
            conn.close()

    def wait_more(self, count: int, timeout: float = 20.0) -> None:
        """Wait until ``count`` more answers than now arrived."""
        before = len(self.results)
        wait_for(lambda: len(self.results) >= before + count, timeout, f"{count} more answers under load")

    def __enter__(self) -> "SteadyLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


class Paused:
    """SIGSTOP the given processes for the duration of a ``with`` block (SIGCONT on exit, also on
    errors): new connections to a socket they share can only be accepted by the others, which is
    how a test reaches a chosen server process. Keep it short: paused processes send no heartbeat."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def pause(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.pids.append(pid)

    def __enter__(self) -> "Paused":
        return self

    def __exit__(self, *exc_info: object) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


async def connect_one_per_server(url: str, servers: int, pid_key: str, **connect_kwargs: object) -> dict[int, object]:
    """Open one WebSocket per server process of a site (returns pid -> open socket, in the order
    they connected): each server that answered is paused while the next socket connects, so the
    next one is accepted by another server. Each socket's first message must be a JSON object naming
    its server's pid under ``pid_key``; that message is consumed. On failure the opened sockets are
    closed before the error propagates."""
    import asyncio
    import json

    import websockets

    by_pid: dict[int, object] = {}
    try:
        with Paused() as paused:
            while len(by_pid) < servers:
                sock = await websockets.connect(url, **connect_kwargs)
                pid = json.loads(await asyncio.wait_for(sock.recv(), 10))[pid_key]
                assert pid not in by_pid, f"the paused server {pid} accepted a socket"
                by_pid[pid] = sock
                if len(by_pid) < servers:
                    paused.pause(pid)
    except BaseException:
        for opened in by_pid.values():
            await opened.close()
        raise
    return by_pid
