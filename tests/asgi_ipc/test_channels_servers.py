"""The Channels 4 layer under the servers people run it with: ``uvicorn --workers 2`` and
``gunicorn -k uvicorn.workers.UvicornWorker -w 2`` (real processes, real WebSocket clients).

A group message sent through one worker process reaches WebSockets served by both; a clean stop of
the whole server leaves nothing in /dev/shm, whichever worker created the segment.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("channels", reason="the Channels 4 layer needs 'channels>=4'")
websockets = pytest.importorskip("websockets")

from asgi_ipc.segment import SHM_DIR  # noqa: E402
from tests.children import end_with_parent

REPO = Path(__file__).resolve().parents[2]
APP = "tests.asgi_ipc.c4servers.app:app"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        pytest.importorskip("uvicorn", reason="pip install uvicorn")
        return [sys.executable, "-m", "uvicorn", APP, "--workers", "2", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]
    pytest.importorskip("uvicorn", reason="gunicorn's UvicornWorker needs uvicorn")
    pytest.importorskip("gunicorn", reason="pip install gunicorn")
    return [sys.executable, "-m", "gunicorn", APP, "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
            "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "5"]


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/send?text=warmup", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("the server did not answer within 60 s")


async def _sockets_on_two_processes(port: int) -> tuple[list, set[str]]:
    """Open WebSockets until two worker processes serve at least one each (bounded)."""
    opened, pids = [], {}
    for _ in range(40):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)
        pid = await asyncio.wait_for(ws.recv(), 10)
        opened.append(ws)
        pids.setdefault(pid, ws)
        if len(pids) == 2:
            return opened, set(pids)
    pytest.fail(f"all 40 WebSockets were served by {sorted(pids)}: the server ran one worker")


async def _broadcast_reaches_every_socket(port: int) -> set[str]:
    opened, pids = await _sockets_on_two_processes(port)
    try:
        await asyncio.sleep(0.2)  # the last group_add has run
        for round_ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/send?text=hello-{round_}", timeout=10):
                pass
            for ws in opened:
                assert await asyncio.wait_for(ws.recv(), 10) == f"hello-{round_}"
    finally:
        for ws in opened:
            await ws.close()
    return pids


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_group_send_spans_the_worker_processes_and_a_stop_leaves_nothing(server, prefix):
    port = _free_port()
    env = dict(os.environ, C4APP_PREFIX=prefix, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(_server_command(server, port), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=end_with_parent())
    segment = Path(SHM_DIR) / f"asgi_ipc.{prefix}"
    try:
        _wait_http(port, proc)
        pids = asyncio.run(_broadcast_reaches_every_socket(port))
        assert len(pids) == 2
        assert segment.exists()
        proc.send_signal(signal.SIGINT if server == "uvicorn" else signal.SIGTERM)
        proc.wait(60)
        deadline = time.monotonic() + 10
        while segment.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not segment.exists(), "the last worker to stop did not remove the segment"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if segment.exists():
            segment.unlink()
