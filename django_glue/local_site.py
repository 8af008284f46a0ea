"""One site on this machine in one process tree: a layer, an interface-server process, worker threads.

What ``manage.py runserver`` and ``ChannelLiveServerTestCase`` run. :class:`LocalSite` listens on
a TCP socket it binds itself and hands to an interface server (``procman.interface``, started as
a subprocess through its command line with ``--fd``), and runs :class:`~.worker.Worker` loops in
threads of this process. The layer is the caller's: the creator of the segment owns it.
:meth:`LocalSite.stop` stops the interface server (SIGTERM, bounded wait, then SIGKILL) and the
workers (each finishes its message; bounded by the layer's ``receive_timeout``);
:meth:`LocalSite.stop_and_close_layer` also removes the segment.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import IO, Any, Callable

from django.conf import settings
from django.db import connections

from asgi_ipc.stop_signals import PARENT_PID_ENV

from .interface_layer import ALIAS_ENV, PREFIX_ENV
from .worker import Worker, wake_layer

__all__ = ["LocalSite"]

logger = logging.getLogger("django_glue.local_site")

#: Seconds the interface server gets to stop gracefully before it is killed.
INTERFACE_STOP_TIMEOUT = 15.0


class LocalSite:
    """Interface server + worker threads on ``wrapper`` (a :class:`~.asgi.ChannelLayerWrapper`).

    :param host: / :param port: where to listen (``port=0`` picks a free port; see :attr:`port`).
    :param worker_threads: worker threads to run here (0: leave the workers to ``runworker``).
    :param test_prefix: the prefix of a test layer (built from ``TEST_CONFIG``) for the
        interface server to attach to; None for the alias's ``CONFIG``.
    :param interface_args: extra ``procman interface`` flags (e.g. ``["--http-timeout", "60"]``).
    :param output: where the interface server's log and access log go (default: ours).
    :param thread_setup: called at the start of every worker thread (e.g. DB connection sharing).
    """

    def __init__(
        self,
        wrapper: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        worker_threads: int = 1,
        test_prefix: str | None = None,
        interface_args: list[str] | None = None,
        output: IO[Any] | None = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        if worker_threads < 0:
            raise ValueError(f"worker_threads must be 0 or more, got {worker_threads}")
        self.wrapper = wrapper
        self.host = host
        self.requested_port = port
        self.worker_threads = worker_threads
        self.test_prefix = test_prefix
        self.interface_args = list(interface_args or [])
        self.output = output
        self.thread_setup = thread_setup
        self.socket: socket.socket | None = None
        self.interface: subprocess.Popen[bytes] | None = None
        self.workers: list[Worker] = []
        self.threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The TCP port listened on (after :meth:`start`)."""
        if self.socket is None:
            raise RuntimeError("LocalSite.port is only known after start()")
        return self.socket.getsockname()[1]

    def start(self) -> None:
        """Bind, start the interface server and the worker threads. Raises ``OSError`` if the
        address cannot be bound (say, in use), naming it."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host.strip("[]"), self.requested_port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror}") from exc
        self.socket = sock
        try:
            self.interface = self._start_interface(sock)
            for index in range(self.worker_threads):
                self._start_worker(index)
        except BaseException:
            self.stop()
            raise

    def _start_interface(self, sock: socket.socket) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
        env[ALIAS_ENV] = self.wrapper.alias
        if self.test_prefix:
            env[PREFIX_ENV] = self.test_prefix
        else:
            env.pop(PREFIX_ENV, None)
        # The interface server stops (SIGTERM) when this process dies, however it dies.
        env[PARENT_PID_ENV] = str(os.getpid())
        # The project's modules must import in the child exactly as here.
        env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
        command = [
            sys.executable, "-m", "procman.interface", "django_glue.interface_layer:channel_layer",
            "--fd", str(sock.fileno()), *self.interface_args,
        ]
        return subprocess.Popen(
            command, env=env, pass_fds=[sock.fileno()],
            stdout=self.output, stderr=subprocess.STDOUT if self.output is not None else None,
        )

    def _start_worker(self, index: int) -> None:
        worker = Worker(self.wrapper)
        worker.ready()
        thread = threading.Thread(target=self._run_worker, args=(worker,), name=f"worker-{index}", daemon=True)
        self.workers.append(worker)
        self.threads.append(thread)
        thread.start()

    def _run_worker(self, worker: Worker) -> None:
        if self.thread_setup is not None:
            self.thread_setup()
        try:
            worker.run()
        except BaseException:
            if not worker.termed:
                logger.exception("Worker thread died")
        finally:
            connections.close_all()  # this thread's own; a shared in-memory SQLite one stays open

    def interface_exited(self) -> int | None:
        """The interface server's exit status if it has exited, else None."""
        return None if self.interface is None else self.interface.poll()

    def stop(self) -> bool:
        """Stop the interface server and the workers; True if every worker thread has returned.

        Safe to call twice. The layer is left alone (its owner closes it - only once this
        returned True, since a thread still inside a layer must not see it closed).
        """
        if self.interface is not None and self.interface.poll() is None:
            self.interface.send_signal(signal.SIGTERM)
            try:
                self.interface.wait(INTERFACE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("interface server did not stop within %ss; killing it", INTERFACE_STOP_TIMEOUT)
                self.interface.kill()
                self.interface.wait()
        if self.socket is not None:
            self.socket.close()
        for worker in self.workers:
            worker.request_stop(wake=False)
        if self.workers:
            wake_layer(self.workers[0].channel_layer)  # one wake ends every thread's blocked receive
        timeout = float(getattr(self.wrapper.channel_layer, "receive_timeout", 5.0) or 5.0) + 5.0
        for thread in self.threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self.threads)

    def stop_and_close_layer(self) -> None:
        """:meth:`stop`, then close the layer (removing the segment its owner created).

        If a worker thread is still inside the layer, only its name is removed (``unlink``):
        closing under a running thread is not allowed.
        """
        all_stopped = self.stop()
        layer = self.wrapper.channel_layer
        if all_stopped:
            layer.close()
        elif hasattr(layer, "unlink"):
            layer.unlink()

