"""A minimal Chrome DevTools Protocol driver for headless Chromium (tests only)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import websockets

from tests.children import end_with_parent

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "about:blank",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process and a DevTools connection to it."""

    def __init__(self, profile: Path, extra_flags: list[str] | None = None) -> None:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed")
        self.process = subprocess.Popen(
            [binary, f"--user-data-dir={profile}", *(extra_flags or []), *FLAGS],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=end_with_parent(),
        )
        self._ids = itertools.count(1)
        self.ws: Any = None
        self._pending: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    def endpoint(self, timeout: float = 60.0) -> str:
        """The DevTools WebSocket URL Chromium prints to stderr once it listens.

        Reads the pipe's descriptor directly: ``select`` on a buffered reader misses the lines the
        reader already took from the pipe (Chromium started well before this call wrote several
        lines at once), and would wait out the timeout with the URL in its buffer."""
        assert self.process.stderr is not None
        import select
        import time

        fd = self.process.stderr.fileno()
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                if self.process.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            match = re.search(rb"DevTools listening on (ws://\S+)\s", seen)  # the whole line
            if match:
                return match.group(1).decode()
        tail = seen.decode("utf-8", "replace").splitlines()[-20:]
        raise RuntimeError("chromium did not start its DevTools endpoint:\n" + "\n".join(tail))

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.endpoint(), max_size=2**24)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        payload: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            payload["sessionId"] = session
        await self.ws.send(json.dumps(payload))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def open_tab(self, url: str) -> str:
        target = await self.call("Target.createTarget", url=url)
        attached = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        return attached["sessionId"]

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", session, expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_js(self, session: str, expression: str, timeout: float = 20.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                value = await self.evaluate(session, expression)
            except RuntimeError:
                value = None  # page still loading
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression!r} in the page")

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.call("Browser.close"), 5)
            except Exception:
                pass
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(10)
