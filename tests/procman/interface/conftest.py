"""Fixtures: a real channel layer, a real interface process on a real socket, and helpers that let
the test itself play the application by reading and writing the layer directly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

#: Sizes small enough for many parallel tests, large enough for 4 MB uploads.
LAYER_SIZES = {"message_memory": 16 * 2**20, "channels": 256, "groups": 16, "group_members": 64}


def _layer_kwargs(prefix: str, capacity: int, channel_capacity: dict[str, int] | None) -> dict:
    return {"prefix": prefix, "capacity": capacity, "channel_capacity": channel_capacity, **LAYER_SIZES}


class Application:
    """The test's side of the layer: receive what the interface sends, send replies."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    def receive(self, *channels: str, timeout: float = 10.0) -> tuple[str, dict]:
        """Block (bounded) until a message arrives on one of ``channels``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            channel, message = self.layer.receive(list(channels), block=True)
            if channel is not None:
                return channel, message
        raise AssertionError(f"nothing arrived on {channels} within {timeout}s")

    def receive_from(self, channel: str, reply_channel: str, timeout: float = 10.0) -> dict:
        """The next message on ``channel`` about the connection ``reply_channel``, skipping any
        about other connections (on a shared interface, an earlier test's late disconnect)."""
        deadline = time.monotonic() + timeout
        while True:
            _, message = self.receive(channel, timeout=max(0.0, deadline - time.monotonic()))
            if message.get("reply_channel") == reply_channel:
                return message

    def receive_nothing(self, *channels: str) -> None:
        """Assert no message is waiting on ``channels`` right now."""
        channel, message = self.layer.receive(list(channels), block=False)
        assert channel is None, f"unexpected {channel}: {message!r}"

    def request(self, timeout: float = 10.0) -> dict:
        return self.receive("http.request", timeout=timeout)[1]

    def send(self, channel: str, message: dict) -> None:
        self.layer.send(channel, message)

    def respond(self, request: dict, status: int = 200, content: bytes = b"ok", **extra: Any) -> None:
        self.send(request["reply_channel"], {"status": status, "headers": [], "content": content, **extra})


class InterfaceProcess:
    """A running ``python -m procman.interface`` serving the test's layer."""

    def __init__(self, proc: subprocess.Popen, port: int | None, stderr_path: Path, access_path: Path):
        self.proc = proc
        self.port = port
        self.stderr_path = stderr_path
        self.access_path = access_path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def access_log(self) -> str:
        return self.access_path.read_text(errors="replace") if self.access_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0, source: str = "stderr") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = self.stderr if source == "stderr" else self.access_log
            if text in content:
                return content
            if self.proc.poll() is not None and source == "stderr":
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not in the interface's {source}:\n{self.stderr[-3000:]}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock


@pytest.fixture
def prefix() -> str:
    return f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_layer(prefix: str) -> Iterator[Any]:
    """``make_layer(capacity=..., channel_capacity=...)`` creates the test's layer (once)."""
    from asgi_ipc import IPCChannelLayer

    made: list[Any] = []

    def factory(capacity: int = 100, channel_capacity: dict[str, int] | None = None) -> Any:
        layer = IPCChannelLayer(create=True, **_layer_kwargs(prefix, capacity, channel_capacity))
        layer.test_config = (capacity, channel_capacity)
        made.append(layer)
        return layer

    yield factory
    for layer in made:
        layer.close()


@pytest.fixture
def layer(make_layer: Any) -> Any:
    return make_layer()


@pytest.fixture
def app(layer: Any) -> Application:
    return Application(layer)


def write_layer_module(directory: Path, prefix: str, layer: Any, options: dict | None = None) -> str:
    """Write a module whose ``channel_layer`` attaches to ``layer``; return the module's name."""
    capacity, channel_capacity = layer.test_config
    module = f"ifclayer_{uuid.uuid4().hex[:8]}"
    kwargs = {**_layer_kwargs(prefix, capacity, channel_capacity), **(options or {})}
    (directory / f"{module}.py").write_text(
        "from asgi_ipc import IPCChannelLayer\n"
        f"channel_layer = IPCChannelLayer(create=False, **{kwargs!r})\n"
    )
    return module


def launch_interface(
    directory: Path,
    prefix: str,
    layer: Any,
    *args: str,
    listen: str | None = "fd",
    wait_ready: bool = True,
    layer_options: dict | None = None,
) -> tuple[InterfaceProcess, socket.socket | None]:
    """Run ``python -m procman.interface`` for ``layer`` with its files in ``directory``.

    ``listen="fd"`` binds 127.0.0.1:0 here and passes the socket with ``--fd`` (the supervisor's
    way); ``listen=None`` leaves listening to ``args``. Returns the process and the listener the
    caller closes once the process is stopped (None without ``listen="fd"``).
    """
    module = write_layer_module(directory, prefix, layer, layer_options)
    stderr_path = directory / f"{module}.stderr"
    access_path = directory / f"{module}.access"
    command = [sys.executable, "-m", "procman.interface", f"{module}:channel_layer"]
    command += ["--access-log", str(access_path), *args]
    listener = None
    port = None
    pass_fds: tuple[int, ...] = ()
    if listen == "fd":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        command += ["--fd", str(listener.fileno())]
        pass_fds = (listener.fileno(),)
    process_env = dict(os.environ)
    process_env["PYTHONPATH"] = os.pathsep.join(
        [str(directory), *filter(None, [process_env.get("PYTHONPATH")])]
    )
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            command,
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=pass_fds,
            env=process_env,
        )
    interface = InterfaceProcess(proc, port, stderr_path, access_path)
    if wait_ready:
        try:
            content = interface.wait_for_log("listening on")
        except BaseException:
            stop_process(proc, signal.SIGKILL)
            if listener is not None:
                listener.close()
            raise
        if interface.port is None:
            for line in content.splitlines():
                if "listening on 127.0.0.1:" in line:
                    interface.port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
                    break
    return interface, listener


@pytest.fixture
def start_interface(tmp_path: Path, prefix: str) -> Iterator[Any]:
    """``start_interface(layer, *args, listen="fd")`` runs an interface process for ``layer``
    (see :func:`launch_interface`). Processes are stopped at teardown."""
    started: list[tuple[InterfaceProcess, socket.socket | None]] = []

    def start(layer: Any, *args: str, **options: Any) -> InterfaceProcess:
        interface, listener = launch_interface(tmp_path, prefix, layer, *args, **options)
        started.append((interface, listener))
        return interface

    yield start
    for interface, listener in started:
        stop_process(interface.proc, signal.SIGQUIT)
        if listener is not None:
            listener.close()


class SharedInterface:
    """One interface process and its own layer, shared by the tests of a module (see
    :func:`shared_interface`)."""

    def __init__(self, interface: InterfaceProcess, app: Application) -> None:
        self.interface = interface
        self.app = app

    @contextlib.contextmanager
    def for_test(self) -> Iterator[tuple[InterfaceProcess, Application]]:
        """``(interface, app)`` for one test, with the layer drained before and after it."""
        self.drain()
        yield self.interface, self.app
        self.drain()

    def drain(self, channels: tuple[str, ...] = ("http.request", "http.disconnect", "websocket.connect",
                                                 "websocket.receive", "websocket.disconnect")) -> None:
        """Drop whatever a test left on the shared layer's channels, so the next test starts clean."""
        for _ in range(10_000):
            channel, _ = self.app.layer.receive(list(channels), block=False)
            if channel is None:
                return


@contextlib.contextmanager
def shared_interface(tmp_path_factory: Any, *args: str, listen: str | None = "fd") -> Iterator[SharedInterface]:
    """An interface process (``args`` and ``listen`` as for :func:`launch_interface`) with a layer
    of its own.

    For a module-scoped fixture: share it only between tests that do not stop, reload or signal
    it, that each make their own connections, and that read only the messages their own requests
    cause (each test receives what it sent before the next test runs; call :meth:`drain` between
    tests so a failing test does not leave messages for the next one).
    """
    from asgi_ipc import IPCChannelLayer

    prefix = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    layer = IPCChannelLayer(create=True, **_layer_kwargs(prefix, 100, None))
    layer.test_config = (100, None)
    directory = tmp_path_factory.mktemp("shared_interface")
    try:
        interface, listener = launch_interface(directory, prefix, layer, *args, listen=listen)
        try:
            yield SharedInterface(interface, Application(layer))
        finally:
            stop_process(interface.proc, signal.SIGQUIT)
            if listener is not None:
                listener.close()
    finally:
        layer.close()


def stop_process(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to a still running ``proc``; SIGKILL it if it has not exited in 5 s."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class HTTPReader:
    """Reads successive HTTP/1.x responses from one socket (keeps bytes between responses)."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.buffer = b""
        sock.settimeout(timeout)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        self.buffer += data
        return data

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._more():
                raise AssertionError(f"connection closed mid-body ({len(self.buffer)}/{count})")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._more():
                raise AssertionError(f"connection closed mid-line: {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """(status, {lower-case name: value}, body) of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise AssertionError(f"connection closed before a response head: {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            return status, headers, self._take(int(headers[b"content-length"]))
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size = int(self._line(), 16)
                body += self._take(size)
                self._take(2)
                if size == 0:
                    return status, headers, body
        while self._more():
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body


def read_http_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
    """Read one response from ``sock`` (use :class:`HTTPReader` for several on one socket)."""
    return HTTPReader(sock, timeout).response()


def assert_closed(sock: socket.socket, timeout: float = 10.0) -> None:
    """Assert the server closes ``sock`` (reads EOF or a reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


@pytest.fixture(scope="module")
def _module_interface(tmp_path_factory: Any) -> Iterator[SharedInterface]:
    with shared_interface(tmp_path_factory) as shared:
        yield shared


@pytest.fixture
def served(_module_interface: SharedInterface) -> Iterator[tuple[InterfaceProcess, Application]]:
    """``(interface, app)``: one interface process with default options per test module, for the
    tests that only make requests on connections of their own. Sharing is safe for them: none
    signals or stops the process or fills a channel, each receives and answers what it sent
    before it ends (``Application.receive_from`` skips an earlier test's late disconnect), and the
    layer's channels are drained around each test, so a failing test leaves nothing behind."""
    with _module_interface.for_test() as pair:
        yield pair
