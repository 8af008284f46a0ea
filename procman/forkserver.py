"""The fork server: Django workers forked from a process that has already imported the project.

Why: each worker started with ``python -m procman.boot worker`` imports Python, Django and the
project on its own and keeps a private copy of all of it. Forked from one process that did those
imports once (the *zygote*), the workers share those pages copy-on-write, so the site's memory
grows by what a worker dirties, not by a whole Django each (``procman run --preload``, the default;
``--no-preload`` starts every worker with its own interpreter, as before).

Theory of operation:

- The supervisor (:class:`ForkServer`, used by :meth:`procman.arbiter.Arbiter._spawn`) makes
  itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), then starts the zygote
  (``python -m procman.forkserver --fd N --settings S --alias A``) with one end of a
  ``SOCK_SEQPACKET`` socket pair. The zygote runs ``django.setup()``, imports the channel routing,
  the URLconf and the worker's own modules, closes Django's database connections, freezes the
  garbage collector's generations (so collections in a worker do not write to the shared pages),
  and answers ``{"ready": true}`` - or ``{"ready": false, "error": ...}`` if any of it fails.
- To start a worker the supervisor sends the worker's argument list and environment, and the write
  ends of the worker's output pipe and heartbeat pipe as ``SCM_RIGHTS``. The zygote forks twice:
  the intermediate child forks the worker, reports its pid and exits at once, so the worker is
  re-parented to the nearest subreaper - the supervisor - and the zygote answers ``{"pid": N}``
  only after it reaped the intermediate child. From then on the worker is the supervisor's child
  like any other: it reaps it, signals it, reads its output and its heartbeats
  (:class:`ForkedProcess` gives it the ``Popen`` interface the arbiter uses).
- In the worker: its own process group (as ``Popen(process_group=0)``), stdin from /dev/null,
  stdout and stderr on the output pipe, the environment the supervisor sent (with the heartbeat
  fd's number as received), the zygote's socket closed, ``random`` re-seeded (Python does it at
  every fork) and no database connection inherited; the layer is attached by the worker itself
  after the fork (:mod:`asgi_ipc` re-attaches in a process whose pid changed). Then it runs
  :func:`procman.worker.worker_entry` under :func:`procman.boot.supervised_main`, exactly as a
  worker started by ``Popen`` does, and leaves with ``os._exit`` (the zygote's ``atexit`` and
  ``finally`` blocks are not the worker's to run).
- New code: a reload (HUP) starts a new generation, and the first worker spawned for it gets a new
  zygote (the old one is told to exit), so new workers import the new code. A zygote that died
  (or stopped answering within the timeout) is replaced the next time a worker is needed; its
  workers are not its children and live on.
- The supervisor waits for a new zygote's preload (bounded by ``--boot-timeout``) inside the spawn of
  the generation's first worker; the children already running are unaffected (their pipes
  buffer), and a zygote that does not answer in time is killed and that generation's workers
  are started with ``Popen``.
- Failure to preload is not an error of its own: the supervisor logs it once and starts that
  generation's workers with ``Popen``, which fail to boot with the usual message and exit code
  (:data:`~procman.exitcodes.BOOT_ERROR`) if the project really cannot load. Where ``prctl`` or
  ``SCM_RIGHTS`` is unavailable, every worker is started with ``Popen``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from asgi_ipc.stop_signals import leave

from . import exitcodes

__all__ = ["ForkServer", "ForkedProcess", "set_child_subreaper", "main"]

#: ``prctl`` option that makes orphaned descendants this process's children.
PR_SET_CHILD_SUBREAPER = 36
#: Largest request or answer on the zygote's socket (argument lists and environments fit easily).
MESSAGE_MAX = 1 << 20
#: The roles the zygote can start (``python -m procman.boot ROLE ...``).
FORKABLE_ROLES = ("worker",)


def set_child_subreaper(on: bool = True) -> bool:
    """Make this process adopt its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    :returns: False where it is not available (the caller then does not fork through a zygote).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def forkable(argv: list[str]) -> str | None:
    """The role of ``argv`` if a zygote of this interpreter can start it, else None."""
    if len(argv) >= 4 and argv[0] == sys.executable and argv[1:3] == ["-m", "procman.boot"]:
        return argv[3] if argv[3] in FORKABLE_ROLES else None
    return None


# ------------------------------------------------------------------ supervisor side -------------


class ForkedProcess:
    """A worker forked by the zygote and adopted by the supervisor: the part of ``Popen``'s
    interface the arbiter uses (``pid``, ``stdout``, ``returncode``, ``poll``, ``wait``,
    ``send_signal``, ``kill``). Signals are never sent once the process has been reaped."""

    def __init__(self, pid: int, stdout_fd: int) -> None:
        self.pid = pid
        self.stdout = os.fdopen(stdout_fd, "rb", buffering=0)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Reap the process if it exited; its exit code (negative: killed by that signal) or None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: as Popen, report a clean exit
                self.returncode = 0
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait (at most ``timeout`` seconds) for the exit; raises ``subprocess.TimeoutExpired``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The supervisor's handle on the zygote of the current generation.

    :param settings_module: the project's settings (preloaded by the zygote).
    :param alias: the ``CHANNEL_LAYERS`` alias the workers use.
    :param env: the zygote's extra environment (the one every child gets: settings, PYTHONPATH).
    :param log: where to say what happens to zygotes (one line per event).
    :param timeout: seconds a zygote may take to preload, or to answer a fork request.
    """

    def __init__(self, settings_module: str, alias: str, env: dict[str, str], log: Callable[[str], None],
                 timeout: float = 30.0) -> None:
        self.settings_module = settings_module
        self.alias = alias
        self.env = env
        self.log = log
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.generation = 0
        self._failed_generation = -1
        self._subreaper: bool | None = None

    def spawn(self, argv: list[str], env: dict[str, str], heartbeat_fd: int,
              generation: int) -> ForkedProcess | None:
        """Start ``argv`` (a ``python -m procman.boot ROLE ...`` command line) by forking the zygote.

        :param env: the child's whole environment (``PROCMAN_HEARTBEAT_FD`` is rewritten to the
            number the child receives ``heartbeat_fd`` as).
        :param generation: the arbiter's generation; a newer one than the zygote's replaces it.
        :returns: the child, or None if it cannot be forked here (not a forkable role, no zygote
            for this generation): the caller then starts it with ``Popen``.
        """
        role = forkable(argv)
        if role is None or not self._ensure_zygote(generation):
            return None
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            request = json.dumps({"role": role, "argv": argv[4:], "env": env}).encode()
            assert self.sock is not None
            socket.send_fds(self.sock, [request], [out_w, heartbeat_fd])
            answer = self._receive()
        except (OSError, ValueError) as exc:
            os.close(out_r)
            self._lost(f"did not answer a fork request ({type(exc).__name__}: {exc})")
            return None
        finally:
            os.close(out_w)
        if "pid" not in answer:
            os.close(out_r)
            self._lost(f"could not fork: {answer.get('error', answer)}")
            return None
        return ForkedProcess(int(answer["pid"]), out_r)

    def describe(self) -> dict[str, Any]:
        """What ``procman status`` shows of the fork server: its pid (None when none runs) and generation."""
        alive = self.process is not None and self.process.poll() is None
        return {"pid": self.process.pid if alive else None, "generation": self.generation if alive else None,
                "preload_failed_generation": self._failed_generation if self._failed_generation >= 0 else None}

    def close(self) -> None:
        """Tell the zygote to exit (its socket closes) and reap it (SIGKILL after the timeout)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None:
            try:
                self.process.wait(timeout=min(self.timeout, 5.0))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    # ---------------------------------------------------------------- internals -----------------

    def _ensure_zygote(self, generation: int) -> bool:
        if self.process is not None and (self.generation < generation or self.process.poll() is not None):
            if self.process.poll() is not None:
                self.log(f"fork server (pid {self.process.pid}) exited "
                         f"({exitcodes.describe(self.process.returncode)}); starting a new one")
            self.close()
        if self.process is not None:
            return True
        if generation == self._failed_generation:
            return False  # this generation's code did not preload: its workers use Popen
        if self._subreaper is None:
            self._subreaper = set_child_subreaper(True)
            if not self._subreaper:
                self.log("fork server unavailable (no PR_SET_CHILD_SUBREAPER): starting workers without preload")
        if not self._subreaper:
            return False
        return self._start(generation)

    def _start(self, generation: int) -> bool:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env.update(self.env)
        from .heartbeat import ENV_SUPERVISOR_PID

        env.update({"PYTHONUNBUFFERED": "1", ENV_SUPERVISOR_PID: str(os.getpid())})
        argv = [sys.executable, "-m", "procman.forkserver", "--fd", str(theirs.fileno()),
                "--settings", self.settings_module, "--alias", self.alias]
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                                            env=env, process_group=0)
        except OSError as exc:
            mine.close()
            self.log(f"cannot start the fork server ({exc}): starting workers without preload")
            self._failed_generation = generation
            return False
        finally:
            theirs.close()
        self.sock, self.generation = mine, generation
        try:
            hello = self._receive()
        except (OSError, ValueError) as exc:
            hello = {"ready": False, "error": f"{type(exc).__name__}: no answer within {self.timeout:g} s ({exc})"}
        if not hello.get("ready"):
            # Only the kind of error: a worker that cannot boot either shows the whole of it next.
            kind = str(hello.get("error", "")).partition(":")[0]
            self.log(f"fork server could not preload {self.settings_module} ({kind}): "
                     "starting this generation's workers without preload")
            self._failed_generation = generation
            self._stop()
            return False
        return True

    def _receive(self) -> dict[str, Any]:
        assert self.sock is not None
        self.sock.settimeout(self.timeout)
        data = self.sock.recv(MESSAGE_MAX)
        if not data:
            raise ConnectionError("the fork server closed its socket")
        answer = json.loads(data)
        if not isinstance(answer, dict):
            raise ValueError(f"unexpected answer {answer!r}")
        return answer

    def _lost(self, why: str) -> None:
        pid = self.process.pid if self.process is not None else "?"
        self.log(f"fork server (pid {pid}) {why}: stopping it; the next worker gets a new one")
        self._stop()

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.close()


# ------------------------------------------------------------------ zygote side -----------------


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def preload(settings_module: str, alias: str) -> None:
    """Import what every worker of the project imports, once: Django's apps, the channel routing,
    the URLconf and the worker's modules; then drop database connections and freeze the GC."""
    import gc

    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup(set_prefix=False)
    from django.db import connections
    from django.urls import get_resolver
    from django.utils.module_loading import import_string

    import django_glue.default_consumers  # noqa: F401 - what every worker imports after the fork
    import django_glue.handler  # noqa: F401
    import django_glue.worker  # noqa: F401
    from django_glue.asgi import layer_settings

    from . import boot, worker  # noqa: F401

    entry = layer_settings(alias)
    import_string(entry["BACKEND"])
    try:  # the layer's C fast path, loaded at attach time when it is built
        import asgi_ipc._fastpath  # noqa: F401
    except ImportError:
        pass
    if isinstance(entry.get("ROUTING"), str):
        import_string(entry["ROUTING"])
    get_resolver().url_patterns  # noqa: B018 - imports ROOT_URLCONF and the views it names
    connections.close_all()
    gc.collect()
    gc.freeze()


def _fork_worker(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    """Double-fork the worker of ``request``; returns its pid (its parent has exited)."""
    out_w, beat_w = fds
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    middle = os.fork()
    if middle == 0:  # the intermediate child: fork the worker, say its pid, go
        code = 1
        try:
            os.close(pid_r)
            me = os.getpid()
            worker = os.fork()
            if worker == 0:
                os.close(pid_w)
                _become_worker(sock, request, out_w, beat_w, me)  # never returns
            os.write(pid_w, str(worker).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(pid_w)
    try:
        data = b""
        while True:
            chunk = os.read(pid_r, 32)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(pid_r)
        os.waitpid(middle, 0)  # once reaped, the worker's parent is the supervisor
    if not data:
        raise OSError("the intermediate child exited without forking the worker")
    return int(data)


def _wait_for_adoption(middle: int, timeout: float = 5.0) -> None:
    """Wait until the intermediate child has exited and this worker is the supervisor's child (its
    parent-death signal and the supervisor-pid check in :func:`procman.heartbeat.exit_with_parent`
    must be about the supervisor)."""
    deadline = time.monotonic() + timeout
    while os.getppid() == middle:
        if time.monotonic() >= deadline:
            raise OSError(f"still a child of the intermediate process {middle} after {timeout:g} s")
        time.sleep(0.0005)


def _become_worker(sock: socket.socket, request: dict[str, Any], out_w: int, beat_w: int, middle: int) -> None:
    code = exitcodes.FAILURE
    try:
        _wait_for_adoption(middle)
        os.setpgid(0, 0)
        sock.close()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_w)
        os.set_inheritable(beat_w, False)
        from .heartbeat import ENV_FD

        env = dict(request["env"])
        env[ENV_FD] = str(beat_w)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [sys.argv[0], request["role"], *request["argv"]]
        from .boot import _entry, supervised_main

        code = supervised_main(_entry(request["role"], list(request["argv"])))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else exitcodes.FAILURE
    except BaseException:  # noqa: BLE001 - printed, then the worker exits like a crashed one
        import traceback

        traceback.print_exc()
    finally:
        leave(code, run_atexit=False)  # the atexit handlers are the zygote's


def serve(sock: socket.socket) -> int:
    """Answer fork requests until the supervisor closes its end; returns the exit code."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MESSAGE_MAX, 2)
        except ConnectionResetError:
            return exitcodes.OK
        if not data:
            for fd in fds:
                os.close(fd)
            return exitcodes.OK
        try:
            request = json.loads(data)
            if len(fds) != 2 or request.get("role") not in FORKABLE_ROLES:
                raise ValueError(f"a fork request carries a forkable role and 2 fds, got "
                                 f"{request.get('role')!r} and {len(fds)}")
            answer: dict[str, Any] = {"pid": _fork_worker(sock, request, fds)}
        except (OSError, ValueError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        _send(sock, answer)


def main(argv: list[str] | None = None) -> int:
    """``python -m procman.forkserver --fd N --settings S [--alias A]`` (started by :class:`ForkServer`)."""
    parser = argparse.ArgumentParser(prog="python -m procman.forkserver")
    parser.add_argument("--fd", type=int, required=True, help="the supervisor's SOCK_SEQPACKET socket")
    parser.add_argument("--settings", required=True)
    parser.add_argument("--alias", default="default")
    args = parser.parse_args(argv)
    from .heartbeat import exit_with_parent

    exit_with_parent()
    sock = socket.socket(fileno=args.fd)
    try:
        preload(args.settings, args.alias)
    except BaseException as exc:  # noqa: BLE001 - reported; the supervisor falls back to Popen
        summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        _send(sock, {"ready": False, "error": summary})
        return exitcodes.BOOT_ERROR
    _send(sock, {"ready": True})
    return serve(sock)


if __name__ == "__main__":
    sys.exit(main())
