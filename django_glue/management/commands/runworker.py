"""``manage.py runworker``: run consumers for messages on the channel layer.

Attaches to the layer's existing segment (the site's supervisor or interface server creates it);
a worker started before the segment exists waits for it (``--wait-for-layer``, default 60 s).
Listens on every routed channel (filtered with ``--only-channels``/``--exclude-channels`` globs),
with ``--threads`` worker threads. SIGTERM (or Ctrl-C) lets each thread finish its current
consumer and exits 0; a second Ctrl-C (or SIGQUIT) exits at once (``asgi_ipc.stop_signals``). Consumer exceptions are logged with their
traceback and the worker carries on. Static files are served when ``DEBUG`` is on and
``django.contrib.staticfiles`` is installed. The exit statuses are :mod:`django_glue.exitcodes`.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from asgi_ipc import SegmentMissing

from ...asgi import DEFAULT_CHANNEL_LAYER, ChannelLayerWrapper, attached_layer, channel_layers
from ...exitcodes import EXIT_CONFIG, EXIT_NO_LAYER, EXIT_USAGE
from ...log import setup_logger
from ...worker import WorkerGroup


class LayerNotCreated(CommandError):
    """The layer's shared-memory segment does not exist (yet)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=EXIT_NO_LAYER)


class Command(BaseCommand):
    help = "Run a channel worker: receive routed messages from the channel layer and run their consumers."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--layer", default=DEFAULT_CHANNEL_LAYER, help="channel layer alias (default: %(default)s)")
        parser.add_argument(
            "--only-channels", action="append", dest="only_channels", metavar="GLOB",
            help="listen only on channels matching this glob (repeatable)",
        )
        parser.add_argument(
            "--exclude-channels", action="append", dest="exclude_channels", metavar="GLOB",
            help="do not listen on channels matching this glob (repeatable)",
        )
        parser.add_argument("--threads", type=int, default=1, help="worker threads (default: 1)")
        parser.add_argument(
            "--graceful-timeout", type=float, default=30.0,
            help="seconds to wait for running consumers on SIGTERM (default: %(default)s)",
        )
        parser.add_argument(
            "--disable-graceful-stop", action="store_true",
            help="on SIGTERM exit without waiting for running consumers (Channels 1.1.8.1's flag)",
        )
        parser.add_argument(
            "--wait-for-layer", type=float, default=60.0, metavar="SECONDS",
            help="if the layer's segment does not exist yet (the interface server or procman "
            "creates it), wait this long for it before giving up (default: %(default)s; 0: don't wait)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.configure_logging(options["verbosity"])
        if options["threads"] < 1:
            raise CommandError(f"--threads must be at least 1, got {options['threads']}", returncode=EXIT_USAGE)
        alias = options["layer"]
        wrapper = self.attach_when_ready(alias, options["wait_for_layer"])
        wrapper.router.check_default(http_consumer=self.http_consumer())
        callback = self.log_message if options["verbosity"] > 1 else None
        group = WorkerGroup(
            wrapper,
            n_threads=options["threads"],
            graceful_timeout=0.0 if options["disable_graceful_stop"] else options["graceful_timeout"],
            callback=callback,
            only_channels=options["only_channels"],
            exclude_channels=options["exclude_channels"],
        )
        try:
            channels = group.workers[0].listening_channels()
        except ValueError as exc:
            raise CommandError(
                f"{exc} (routed: {', '.join(sorted(wrapper.router.channels)) or 'none'})", returncode=EXIT_CONFIG
            ) from None
        self.logger.info(
            "Running %d worker thread(s) on layer %r (%s) for channels: %s",
            options["threads"], alias, type(wrapper.channel_layer).__name__, ", ".join(channels),
        )
        group.install_signal_handlers()
        status = group.run()
        if group.all_stopped:  # never close the layer under a thread still inside it
            channel_layers.close_all()
        if status:
            sys.exit(status)

    def attach_when_ready(self, alias: str, wait: float) -> ChannelLayerWrapper:
        """:meth:`attach`, waiting up to ``wait`` seconds for a segment that does not exist yet.

        Supervisors (systemd, supervisord) start the interface server and the workers in any
        order; a worker started first waits, saying what for, instead of exiting.
        """
        deadline = time.monotonic() + max(0.0, wait)
        announced = False
        while True:
            try:
                return self.attach(alias)
            except LayerNotCreated as exc:
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait:g}s" if wait > 0 else ""
                    raise LayerNotCreated(f"{exc}{waited}") from exc
                if not announced:
                    self.logger.warning(
                        "Waiting up to %gs for the channel layer %r to be created (%s); start the "
                        "interface server or `procman run` for this site",
                        wait, alias, exc,
                    )
                    announced = True
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def attach(self, alias: str) -> ChannelLayerWrapper:
        """The layer of ``alias``, attached only: a worker never creates the site's segment.

        A worker that created the segment would remove it when it stops, under the interface
        servers and the other workers; so unless ``CONFIG`` says ``create`` explicitly, a missing
        segment is an error telling to start the site first.
        """
        try:
            wrapper = attached_layer(alias)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=EXIT_CONFIG) from exc
        except SegmentMissing as exc:
            raise LayerNotCreated(f"the segment of channel layer {alias!r} does not exist: {exc}") from exc
        except Exception as exc:  # the layer's other errors
            raise CommandError(f"cannot attach to channel layer {alias!r}: {exc}", returncode=EXIT_CONFIG) from exc
        channel_layers.set(alias, wrapper)
        return wrapper

    def http_consumer(self) -> Any:
        """StaticFilesConsumer when DEBUG and staticfiles are on, else the default views."""
        if settings.DEBUG and apps.is_installed("django.contrib.staticfiles"):
            from ...staticfiles import StaticFilesConsumer

            return StaticFilesConsumer()
        return None

    def configure_logging(self, verbosity: int) -> None:
        self.logger = setup_logger("django_glue", verbosity)

    def log_message(self, channel: str, message: Any) -> None:
        self.logger.debug("%s %s", channel, message.reply_channel or "")
