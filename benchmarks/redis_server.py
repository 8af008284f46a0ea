"""A throwaway ``redis-server`` for the channel-layer benchmark.

The benchmark compares ``asgi_ipc`` with ``channels_redis`` against a real Redis. This module starts
one ``redis-server`` on a free loopback port, with persistence off (no RDB snapshots, no AOF) and its
working directory in a fresh temporary directory, waits until it answers ``PING``, and always stops
it and removes the directory again::

    with RedisServer() as server:
        hosts = [("127.0.0.1", server.port)]

Nothing here imports ``redis``; readiness is checked with a raw RESP ``PING`` over a socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Sequence

__all__ = ["RedisServer", "RedisServerError", "free_loopback_port", "redis_server_version"]


class RedisServerError(RuntimeError):
    """``redis-server`` could not be found, did not start, or did not answer in time."""


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_version(executable: str = "redis-server") -> str:
    """Return the version string of ``redis-server`` (e.g. ``"7.0.15"``), or raise RedisServerError."""
    path = shutil.which(executable)
    if path is None:
        raise RedisServerError(
            f"{executable!r} is not on PATH; install it (Debian: apt-get install redis-server) "
            "or pass --no-redis to benchmark without the channels_redis baseline"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip()


def _answers_ping(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # NOAUTH: up, with a password
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` child process on 127.0.0.1, no persistence, stopped by :meth:`stop`.

    Use it as a context manager. ``start()`` raises :class:`RedisServerError` (with the tail of the
    server's log) if the binary is missing or the server does not answer ``PING`` within
    ``start_timeout`` seconds; in that case the process and directory are already cleaned up.
    """

    def __init__(self, executable: str = "redis-server", start_timeout: float = 10.0,
                 extra_args: Sequence[str] = ()) -> None:
        self.executable = executable
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)  # e.g. TLS flags; the plain port stays for PING
        self.port: int = 0
        self.version: str = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        return self._process.pid if self._process is not None else None

    def start(self) -> "RedisServer":
        """Start the server on a free port and wait until it answers PING."""
        if self._process is not None:
            raise RedisServerError("this RedisServer is already running; stop() it first")
        self.version = redis_server_version(self.executable)
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        try:
            for _attempt in range(3):  # a port picked as free may be taken before we bind it
                self.port = free_loopback_port()
                if self._launch():
                    return self
            raise RedisServerError(
                f"redis-server did not answer PING within {self.start_timeout}s (3 attempts); "
                f"log tail:\n{self._log_tail()}"
            )
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> bool:
        assert self._dir is not None
        log = os.path.join(self._dir, "redis.log")
        argv = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", log,
            "--daemonize", "no",
            *self.extra_args,
        ]
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:  # exited: port clash or bad flags
                self._process = None
                return False
            if _answers_ping(self.port, timeout=0.5):
                return True
            time.sleep(0.02)
        self._terminate()
        return False

    def _log_tail(self, lines: int = 10) -> str:
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir, "redis.log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def halt(self) -> None:
        """Stop the server process but keep its port and directory, so :meth:`resume` can bring
        it back on the same address (with no data: persistence is off). For reconnect tests."""
        if self._dir is None:
            raise RedisServerError("this RedisServer is not running; start() it first")
        self._terminate()

    def resume(self) -> None:
        """Start a halted server again on the same port; raises RedisServerError if it fails."""
        if self._dir is None or self._process is not None:
            raise RedisServerError("only a halted RedisServer can be resumed")
        if not self._launch():
            log = self._log_tail()
            self.stop()
            raise RedisServerError(f"redis-server did not come back on port {self.port}; "
                                   f"log tail:\n{log}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory. Idempotent."""
        try:
            self._terminate()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
