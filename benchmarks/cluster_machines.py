"""Simulated machines for the cluster benchmark: several copies of one site on this box, each on
its own port, with its own layer prefix and control directory, all sharing one ``redis-server``.

Kinds of machine (every machine of one :func:`start_machines` call is the same kind):

- ``local``: ``procman run`` of the test site ``hellosite`` (Channels 1 API, shared-memory layer),
  without ``--cluster``: each machine is a separate site;
- ``cluster``: the same with ``--cluster redis://...`` (one cluster name for all machines): one site;
  ready once its link logged ``cluster link: connected to Redis``;
- ``redis``: the same site with every message on ``asgi_ipc.redis.RedisChannelLayer`` (one Redis
  key prefix for all machines), run as one interface process and ``--workers`` ``runworker``
  processes per machine (``procman run`` serves the shared-memory layer only);
- ``c4-redis``: the Channels 4 test site ``c4site`` on ``channels_redis`` under ``procman run`` in
  ASGI 3 mode, one Daphne server per machine (the application runs in it: no separate worker).

The Channels 1 machines route WebSockets with ``hellosite.cluster_routing`` (every socket joins the
group ``room``; a frame ``say:X`` broadcasts ``X``); ``c4site``'s ``/ws/<room>/`` consumer
broadcasts every frame to its room as JSON. Every process is the leader of its own session, writes
to a log file in the run's directory, and is stopped with SIGTERM, then SIGKILL after a bounded
wait (its whole session).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.site_bench import free_port, wait_first_200

REPO = Path(__file__).resolve().parents[1]
SITES = REPO / "tests" / "procman" / "sites"
HELLOSITE = SITES / "hellosite"
C4SITE = SITES / "c4site"
KINDS = ("local", "cluster", "redis", "c4-redis")
#: Channels 1 machines: every WebSocket joins "room"; "say:X" broadcasts X to it.
HELLO_ROUTING = "hellosite.cluster_routing.channel_routing"
READY_TIMEOUT = 90.0


class MachineError(RuntimeError):
    """A simulated machine did not start or did not get ready in time (the message has its log)."""


@dataclass
class Machine:
    """One simulated machine: its processes (session leaders), HTTP port and log file."""

    kind: str
    port: int
    log_path: Path
    prefix: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        """Where a WebSocket joins the broadcast group."""
        path = "/ws/bench/" if self.kind == "c4-redis" else "/"
        return f"ws://127.0.0.1:{self.port}{path}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_log(self, text: str, deadline: float, times: int = 1) -> None:
        """Wait (until the monotonic ``deadline``) for ``times`` lines with ``text`` in the log;
        MachineError if a process exits or the deadline passes first."""
        while self.log_path.read_bytes().count(text.encode()) < times:
            if any(proc.poll() is not None for proc in self.procs):
                raise MachineError(f"{self.kind} machine on :{self.port} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise MachineError(f"{self.kind} machine on :{self.port} did not log {text!r}:\n{self.log_tail()}")
            time.sleep(0.05)

    def terminate(self) -> None:
        """SIGTERM every process that still runs (returns at once; :meth:`reap` waits)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> None:
        """Wait for every process until the monotonic ``deadline``, then SIGKILL each one's session
        (whatever it left behind in it, too)."""
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"  warning: {self.kind} machine pid {proc.pid} ignored SIGTERM; killing its session",
                      file=sys.stderr)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its session
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(10)

    def shm_left(self) -> list[str]:
        """What this machine's layer prefix still has in /dev/shm (must be nothing after stop)."""
        return [name for name in os.listdir("/dev/shm") if self.prefix in name]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
               PYTHONUNBUFFERED="1", NO_COLOR="1", HELLOSITE_ROUTING=HELLO_ROUTING)
    env.update(extra)
    return env


def _argv_and_env(kind: str, index: int, run: str, redis_url: str, workers: int, port: int,
                  tmp: Path) -> tuple[Path, list[list[str]], dict[str, str], str]:
    """(cwd, argv of each process, environment, layer prefix) of machine ``index``."""
    python = sys.executable
    control = {"PROCMAN_CONTROL_DIR": str(tmp / f"ctl-{index}")}  # machines may share a site name
    bind = f"127.0.0.1:{port}"
    if kind in ("local", "cluster"):
        prefix = f"{run}m{index}"
        argv = [python, "-m", "procman", "run", "--bind", bind, "--workers", str(workers), "--no-color"]
        if kind == "cluster":
            argv += ["--cluster", redis_url, "--cluster-name", run, "--cluster-shared", "thumbnail"]
        return HELLOSITE, [argv], _env({**control, "HELLOSITE_PREFIX": prefix}), prefix
    if kind == "redis":
        env = _env({**control, "HELLOSITE_PREFIX": run, "CLUSTER_BENCH_SITE": "hello-redis",
                    "CLUSTER_BENCH_REDIS": redis_url, "DJANGO_SETTINGS_MODULE": "benchmarks.cluster_settings"})
        interface = [python, "-m", "procman.interface", "benchmarks.cluster_redis_layer:channel_layer", "--bind", bind]
        return HELLOSITE, [interface] + [[python, "manage.py", "runworker"]] * workers, env, run
    if kind == "c4-redis":
        env = _env({**control, "CLUSTER_BENCH_SITE": "c4-redis", "CLUSTER_BENCH_REDIS": redis_url,
                    "CLUSTER_BENCH_KEYS": run})
        argv = [python, "-m", "procman", "run", "--settings", "benchmarks.cluster_settings", "--bind", bind,
                "--interfaces", "1", "--no-color"]
        return C4SITE, [argv], env, run
    raise ValueError(f"unknown machine kind {kind!r}; choose from {', '.join(KINDS)}")


def start_machines(kind: str, count: int, redis_url: str, tmp: Path, workers: int = 1) -> list[Machine]:
    """Start ``count`` machines of ``kind`` (all at once) and return them once every one answers
    ``GET /`` with 200 (and, for ``cluster``, its link is connected to Redis). On failure every
    started process is stopped and :class:`MachineError` (or ``SystemExit`` from
    ``wait_first_200``) is raised."""
    if count < 1:
        raise ValueError(f"--machines must be at least 1, got {count}")
    run = f"cb{os.getpid()}{uuid.uuid4().hex[:6]}"
    machines: list[Machine] = []
    try:
        for index in range(count):
            port = free_port()
            cwd, argvs, env, prefix = _argv_and_env(kind, index, run, redis_url, workers, port, tmp)
            machine = Machine(kind, port, tmp / f"{run}-{kind}-{index}.log", prefix)
            machines.append(machine)
            with open(machine.log_path, "ab") as log:
                for argv in argvs:
                    machine.procs.append(subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                                          stdout=log, stderr=subprocess.STDOUT,
                                                          start_new_session=True))
        deadline = time.monotonic() + READY_TIMEOUT
        for machine in machines:
            wait_first_200(machine.port, max(1.0, deadline - time.monotonic()))
            if kind == "redis":  # every worker listening, not only the first one to answer
                machine.wait_log("Listening on channels", deadline, times=workers)
            else:
                machine.wait_log("ready at http", deadline)
            if kind == "cluster":
                machine.wait_log("cluster link: connected to Redis", deadline)
        return machines
    except BaseException:
        stop_machines(machines)
        raise


def stop_machines(machines: list[Machine], timeout: float = 30.0) -> list[str]:
    """Stop every machine (all signalled at once, so they stop side by side, each given
    ``timeout`` s before its SIGKILL); return what any of them left in /dev/shm (also printed as a
    warning)."""
    for machine in machines:
        machine.terminate()
    deadline = time.monotonic() + timeout
    for machine in machines:
        machine.reap(deadline)
    left = [name for machine in machines for name in machine.shm_left()]
    if left:
        print(f"  warning: left in /dev/shm: {left}", file=sys.stderr)
    return left
