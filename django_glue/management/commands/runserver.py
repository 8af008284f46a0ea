"""``manage.py runserver``: the development site - HTTP and WebSocket - in one command.

Django's ``runserver`` with the Channels 1 architecture behind it: this process creates the
layer's segment (``CHANNEL_LAYERS[--layer]``, ``CONFIG``), starts an interface server
(``procman.interface``) on the address, and runs workers in threads (4, or 1 with
``--nothreading``; none with ``--noworker``, for separate ``runworker`` processes). Django's
autoreloader restarts all of it when a Python file changes. Static files are served as Django's
own ``runserver`` serves them (``django.contrib.staticfiles`` installed, and ``DEBUG`` or
``--insecure``; never with ``--nostatic``). Ctrl-C stops the interface server and the workers and
removes the segment; so does the autoreloader's child when the reloader's process dies, even by
SIGKILL (the kernel sends it SIGTERM). ``--noasgi``, or no ``CHANNEL_LAYERS`` at all, runs
Django's plain WSGI server instead.
"""
from __future__ import annotations

import atexit
import datetime
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.db import connections
from django.utils import autoreload

from asgi_ipc import SegmentExists, segment
from asgi_ipc.stop_signals import stop_with_parent

from ...asgi import DEFAULT_CHANNEL_LAYER, backend_parameters, build_layer, channel_layers, layer_settings
from ...local_site import LocalSite
from ...log import setup_logger

#: Worker threads run by default (Channels 1 ran 4).
DEFAULT_WORKER_THREADS = 4
_STOP_LOCK = threading.Lock()


class Command(DjangoRunserver):
    help = "Start the development site: an interface server (HTTP + WebSocket) and worker threads, with autoreload."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--layer", default=DEFAULT_CHANNEL_LAYER, help="channel layer alias (default: %(default)s)")
        parser.add_argument("--noworker", action="store_false", dest="run_worker",
                            help="run no workers here; start them with `manage.py runworker`")
        parser.add_argument("--noasgi", action="store_false", dest="use_asgi",
                            help="run Django's plain WSGI development server instead")
        parser.add_argument("--http_timeout", "--http-timeout", type=float, default=60.0, dest="http_timeout",
                            help="seconds without progress before a request is answered 503 (default: %(default)s)")
        parser.add_argument("--websocket_handshake_timeout", "--websocket-handshake-timeout", type=float,
                            default=5.0, dest="websocket_handshake_timeout",
                            help="seconds a WebSocket handshake may wait for a worker's answer (default: %(default)s)")
        parser.add_argument("--nostatic", action="store_false", dest="use_static_handler",
                            help="do not serve static files")
        parser.add_argument("--insecure", action="store_true", dest="insecure_serving",
                            help="serve static files even when DEBUG is False")

    def run(self, **options: Any) -> None:
        """Django's ``run``, except that the reloader's parent lets its child clean up.

        Django's parent process kills the child at once on Ctrl-C (``subprocess.run`` kills on
        any exception), which would leave the child's segment and interface server behind; here
        the parent waits (bounded) for the child, which got the same Ctrl-C and stops cleanly.
        """
        if options["use_reloader"] and os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true":
            sys.exit(restart_with_reloader())
        reloader = os.environ.get(RELOADER_PID_ENV, "")
        if options["use_reloader"] and reloader.isdigit():
            # The reloader's child: stop cleanly (Django's SIGTERM handler exits, the atexit
            # handler removes the segment) when the reloader dies, even by SIGKILL.
            stop_with_parent(signal.SIGTERM, parent=int(reloader))
        super().run(**options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        if not options["use_asgi"] or not getattr(settings, "CHANNEL_LAYERS", None):
            if options["use_asgi"]:
                self.stdout.write("settings.CHANNEL_LAYERS is not set: running the plain WSGI server\n")
            return super().inner_run(*args, **options)
        autoreload.raise_last_exception()
        setup_logger("django_glue", options["verbosity"])
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()

        site = self.start_site(options)
        threads = site.worker_threads
        self.stdout.write(
            f"{datetime.datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting development server at {self.protocol}://{self._display_addr()}:{site.port}/\n"
            f"Channel layer {site.wrapper.alias!r} ({type(site.wrapper.channel_layer).__name__}), "
            + (f"{threads} worker thread(s)\n" if threads else "no workers here (--noworker: run `manage.py runworker`)\n")
            + f"Quit the server with {'CTRL-BREAK' if sys.platform == 'win32' else 'CONTROL-C'}.\n"
        )
        try:
            while site.interface_exited() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            return  # the atexit handler stops everything
        status = site.interface_exited()
        if getattr(site, "_stopped", False):
            return  # stopping already (the atexit handler signalled it)
        if status:
            self.stderr.write(f"Error: the interface server exited with status {status}")
        # Clean up here: os._exit skips atexit, and sys.exit does not end the process from the
        # reloader's thread.
        self.stop_site(site)
        os._exit(1 if status else 0)

    def _display_addr(self) -> str:
        return f"[{self.addr}]" if self._raw_ipv6 else self.addr

    def start_site(self, options: dict[str, Any]) -> LocalSite:
        """Create the layer, install it for ``Channel``/``Group``, start interface + workers."""
        alias = options["layer"]
        try:  # an unknown alias is refused here, with the one reader's message (asgi_ipc.layer_settings)
            entry = layer_settings(alias)
            config = dict(entry.get("CONFIG", {}))
            if "create" in backend_parameters(alias):
                config["create"] = True  # this process is the site: it owns the segment
            try:
                layer = build_layer(alias, config)
            except SegmentExists:
                if not self.remove_stale_segment(config):
                    raise
                layer = build_layer(alias, config)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:  # e.g. asgi_ipc.SegmentExists: the site already runs
            raise CommandError(
                f"cannot create channel layer {alias!r}: {exc} (is this site already running, "
                "for instance under `procman run`?)"
            ) from exc
        from ...asgi import ChannelLayerWrapper

        wrapper = ChannelLayerWrapper(layer, alias, entry["ROUTING"])
        wrapper.router.check_default(http_consumer=self.http_consumer(options))
        channel_layers.set(alias, wrapper)
        threads = 0
        if options["run_worker"]:
            threads = DEFAULT_WORKER_THREADS if options["use_threading"] else 1
        interface_args = [
            "--http-timeout", str(options["http_timeout"]),
            "--websocket-connect-timeout", str(options["websocket_handshake_timeout"]),
        ]
        protocols = getattr(settings, "CHANNELS_WS_PROTOCOLS", None)
        if protocols:
            interface_args += ["--ws-protocol", *protocols]
        root_path = getattr(settings, "FORCE_SCRIPT_NAME", None)
        if root_path:
            interface_args += ["--root-path", root_path.rstrip("/")]
        site = LocalSite(wrapper, host=self.addr, port=int(self.port), worker_threads=threads,
                         interface_args=interface_args)
        atexit.register(self.stop_site, site)
        try:
            site.start()
        except OSError as exc:
            messages = {
                errno.EACCES: "You don't have permission to access that port.",
                errno.EADDRINUSE: "That port is already in use.",
                errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
            }
            self.stderr.write(f"Error: {messages.get(exc.errno, exc)}")
            self.stop_site(site)
            os._exit(1)
        return site

    @staticmethod
    def stop_site(site: LocalSite) -> None:
        """Stop interface server and workers, then close the layer (removing the segment).

        Called once by whichever comes first - the atexit handler (Ctrl-C, autoreload restart)
        or the serving thread (the interface server died); a later call waits for the first.
        """
        if threading.current_thread() is threading.main_thread():
            # A second Ctrl-C or a SIGTERM (Django's handler exits) must not cut this short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with _STOP_LOCK:
            if getattr(site, "_stopped", False):
                return
            site._stopped = True  # type: ignore[attr-defined]
            site.stop_and_close_layer()

    def remove_stale_segment(self, config: dict[str, Any]) -> bool:
        """Remove the segment of ``config``'s prefix if nobody uses it; True if removed.

        A ``runserver`` killed with SIGKILL (an IDE's stop button) leaves its segment behind;
        the next start must not fail on it. A segment whose creator lives, or that a process
        still maps, is left alone.
        """
        prefix = config.get("prefix", "asgi")
        try:
            info = segment.inspect(segment.segment_name(prefix).lstrip("/"))
        except (OSError, ValueError):
            return False
        if not info.stale:
            return False
        segment.remove(prefix)
        self.stdout.write(f"Removed the stale segment {info.name} ({info.verdict()})\n")
        return True

    @staticmethod
    def serve_static(options: dict[str, Any]) -> bool:
        """Whether Django's staticfiles ``runserver`` would serve static files with ``options``."""
        wanted = options.get("use_static_handler", True) and (settings.DEBUG or options.get("insecure_serving"))
        return bool(wanted) and apps.is_installed("django.contrib.staticfiles")

    def http_consumer(self, options: dict[str, Any]) -> Any:
        """StaticFilesConsumer where Django's runserver would serve static files, else None."""
        if self.serve_static(options):
            from ...staticfiles import StaticFilesConsumer

            return StaticFilesConsumer()
        return None

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """For ``--noasgi``: Django's WSGI handler, serving static files as staticfiles' does."""
        handler = super().get_handler(*args, **options)
        if self.serve_static(options):
            from django.contrib.staticfiles.handlers import StaticFilesHandler

            return StaticFilesHandler(handler)
        return handler


#: Environment variable holding the reloader's pid, for its child (the site) to stop with it.
RELOADER_PID_ENV = "DJANGO_GLUE_RELOADER_PID"
#: Seconds the reloader's parent waits for its child to clean up after Ctrl-C or SIGTERM.
CHILD_STOP_TIMEOUT = 30.0


def restart_with_reloader() -> int:
    """Run this command in a child process, again each time it exits with 3 (a reload).

    Django's own loop, with two differences: on Ctrl-C (which the child got too) or SIGTERM
    (passed on to the child) the parent waits up to :data:`CHILD_STOP_TIMEOUT` for the child
    before killing it; and the child gets SIGTERM when this process dies, however it dies
    (:data:`RELOADER_PID_ENV`, :func:`asgi_ipc.stop_signals.stop_with_parent`). Called from the main
    thread, which the kernel's parent-death signal is tied to.
    """
    environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true", RELOADER_PID_ENV: str(os.getpid())}
    arguments = autoreload.get_child_arguments()
    while True:
        child = subprocess.Popen(arguments, env=environ, close_fds=False)
        try:
            status = child.wait()
        except BaseException as exc:  # KeyboardInterrupt, or SystemExit from Django's SIGTERM handler
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if not isinstance(exc, KeyboardInterrupt) and child.poll() is None:
                child.send_signal(signal.SIGTERM)  # Ctrl-C reached the child already
            try:
                child.wait(CHILD_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return 0
        if status != 3:
            return status
