"""Start, check and stop each contender of the whole-site comparison.

Every contender serves ``cmpsite`` (this directory) on a free loopback port, writes its output
(access logs included where the server logs by default; ours cannot turn it off through
``procman run``) to a file in the run's temporary directory, and is stopped with SIGTERM, then
SIGKILL after a bounded wait; any process it left behind is killed too. Its CPU and PSS are those
of its whole process tree (``benchmarks.cpu_time``).

- ``ours``: ``procman run`` with 1 interface process and 2 workers on the asgi_ipc layer;
- ``c4ipc``: ours in ASGI 3 mode: the Channels 4 application (``cmpsite.asgi_channels``) under
  ``procman run --asgi`` (2 in-process Daphne servers on one socket) with
  ``asgi_ipc.channels.IPCChannelLayer``;
- ``gunicorn-w2``, ``gunicorn-w4``: ``gunicorn -w 2`` / ``-w 4`` (sync workers) running Django's
  ``get_wsgi_application()``;
- ``granian-w2``: ``granian --interface wsgi --workers 2`` (Rust front end), same WSGI application;
- ``uvicorn``: ``uvicorn --workers 2`` running ``django.core.asgi.get_asgi_application()``;
- ``daphne``: 2 ``daphne --fd N`` processes accepting on one socket this module binds (Daphne has no
  ``--workers``; sharing an inherited socket is how it runs several processes on one port);
- ``channels``: the same 2 Daphne processes running the Channels 4 application with channels_redis
  against a given Redis port;
- ``uvicorn-channels``: that same application under ``uvicorn --workers 2`` with channels_redis.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks.http_load import free_port, http_ok
from benchmarks.servers import Running, spawn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# contender -> the Python packages it needs (module names)
NEEDS = {"ours": ["procman", "django_glue", "asgi_ipc"],
         "gunicorn-w2": ["gunicorn"], "gunicorn-w4": ["gunicorn"], "granian-w2": ["granian"],
         "uvicorn": ["uvicorn"], "daphne": ["daphne"],
         "channels": ["daphne", "channels", "channels_redis"],
         "c4ipc": ["procman", "asgi_ipc", "daphne", "channels"],
         "uvicorn-channels": ["uvicorn", "channels", "channels_redis"]}
#: contenders that talk to Redis (they need ``redis_port``)
NEEDS_REDIS = ("channels", "uvicorn-channels")
INSTALL_HINT = "pip install -e '.[bench]'"
#: what each contender runs (the legend under the tables)
SHAPES = {
    "ours": "procman run: 1 interface + 2 workers, asgi_ipc layer (Channels 1 app, django_glue)",
    "c4ipc": "ours in ASGI 3 mode: Channels 4 app under procman run --asgi (2 in-process Daphne servers), "
             "asgi_ipc.channels.IPCChannelLayer",
    "gunicorn-w2": "gunicorn -w 2 (sync workers), Django WSGI",
    "gunicorn-w4": "gunicorn -w 4 (sync workers), Django WSGI",
    "granian-w2": "granian --interface wsgi --workers 2, Django WSGI",
    "uvicorn": "uvicorn --workers 2, Django ASGI",
    "daphne": "2 x daphne --fd (one socket), Django ASGI",
    "channels": "Channels 4 app under 2 x daphne --fd, channels_redis (RedisChannelLayer)",
    "uvicorn-channels": "the same Channels 4 app under uvicorn --workers 2, channels_redis",
}


class ContenderError(RuntimeError):
    """A contender did not start, did not answer, or could not be stopped."""


def missing_packages(name: str) -> list[str]:
    """The packages ``name`` needs that are not importable here (empty when it can run)."""
    return [module for module in NEEDS[name] if importlib.util.find_spec(module) is None]


def _env(stack: str, tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               DJANGO_SETTINGS_MODULE="cmpsite.settings", CMPSITE_STACK=stack, PYTHONUNBUFFERED="1",
               NO_COLOR="1", PROCMAN_CONTROL_DIR=str(tmp / "procman-control"))
    env.update(extra)
    return env


def _popen(argv: list[str], env: dict[str, str], log, **kwargs) -> subprocess.Popen:
    return spawn(argv, env, HERE, log, **kwargs)


def start(name: str, tmp: Path, *, workers: int = 2, interfaces: int = 1, redis_port: int | None = None,
          ready_timeout: float = 90.0) -> Running:
    """Start contender ``name`` and return once it answers ``GET /`` with ``hello`` (and, for
    ours, once procman reported every child ready). ``workers`` is the number of server processes
    (ours: Django workers; ``interfaces`` is ours' interface process count, ignored by the others). Raises ``ContenderError`` (after stopping
    whatever started) if it does not within ``ready_timeout``."""
    if name not in NEEDS:
        raise ValueError(f"unknown contender {name!r}; choose from {sorted(NEEDS)}")
    port = free_port()
    log_path = tmp / f"{name}-{port}.log"
    log = open(log_path, "ab")
    running = Running(name, port, log_path)
    try:
        if name == "ours":
            running.prefix = f"cmp{os.getpid()}_{uuid.uuid4().hex[:6]}"
            env = _env("ipc", tmp, {"CMPSITE_PREFIX": running.prefix})
            running.procs.append(_popen(
                [sys.executable, "-m", "procman", "run", "--settings", "cmpsite.settings",
                 "--bind", f"127.0.0.1:{port}", "--interfaces", str(interfaces), "--workers", str(workers),
                 "--no-color"], env, log))
        elif name == "c4ipc":
            running.prefix = f"cmp{os.getpid()}_{uuid.uuid4().hex[:6]}"
            env = _env("c4ipc", tmp, {"CMPSITE_PREFIX": running.prefix})
            running.procs.append(_popen(
                [sys.executable, "-m", "procman", "run", "--settings", "cmpsite.settings",
                 "--asgi", "cmpsite.asgi_channels:application", "--bind", f"127.0.0.1:{port}",
                 "--interfaces", str(workers), "--no-color"], env, log))
        elif name in ("gunicorn-w2", "gunicorn-w4"):
            running.procs.append(_popen(
                [sys.executable, "-m", "gunicorn", "cmpsite.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", name.rsplit("-w", 1)[1], "--worker-class", "sync"], _env("plain", tmp, {}), log))
        elif name == "granian-w2":
            running.procs.append(_popen(
                [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "2", "cmpsite.wsgi:application"], _env("plain", tmp, {}), log))
        elif name in ("uvicorn", "uvicorn-channels"):
            if name == "uvicorn-channels" and redis_port is None:
                raise ValueError("the uvicorn-channels contender needs redis_port")
            stack, app = ("plain", "cmpsite.asgi:application") if name == "uvicorn" else \
                ("channels", "cmpsite.asgi_channels:application")
            env = _env(stack, tmp, {} if redis_port is None else {"CMPSITE_REDIS_PORT": str(redis_port)})
            running.procs.append(_popen(
                [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(workers), "--lifespan", "off"], env, log))
        else:  # daphne, channels: N daphne processes on one socket bound here
            stack, app = ("plain", "cmpsite.asgi:application") if name == "daphne" else \
                ("channels", "cmpsite.asgi_channels:application")
            extra = {} if redis_port is None else {"CMPSITE_REDIS_PORT": str(redis_port)}
            if name == "channels" and redis_port is None:
                raise ValueError("the channels contender needs redis_port")
            env = _env(stack, tmp, extra)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", port))
                listener.listen(2048)
                fd = listener.fileno()
                for _ in range(workers):
                    running.procs.append(_popen(
                        [sys.executable, "-m", "daphne", "--fd", str(fd), app], env, log, pass_fds=(fd,)))
            finally:
                listener.close()  # the daphne processes hold their own copies
        deadline = time.monotonic() + ready_timeout
        while not http_ok(port, body=b"hello"):
            if not running.alive():
                raise ContenderError(f"{name} exited before answering:\n{running.log_tail()}")
            if time.monotonic() > deadline:
                raise ContenderError(f"{name} did not answer GET / within {ready_timeout} s:\n{running.log_tail()}")
            time.sleep(0.1)
        if name in ("ours", "c4ipc"):
            while b"| ready at http" not in log_path.read_bytes():
                if time.monotonic() > deadline or not running.alive():
                    raise ContenderError(f"procman did not report ready:\n{running.log_tail()}")
                time.sleep(0.1)
        return running
    except BaseException:
        running.stop(timeout=10)
        raise
    finally:
        log.close()
