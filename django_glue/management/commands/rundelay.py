"""``manage.py rundelay``: run the delay server (the ASGI ``asgi.delay`` protocol).

Needs ``"django_glue.delay"`` in ``INSTALLED_APPS`` and its migration applied. Run one per site:
two would both send every due message. SIGTERM or Ctrl-C stops it; pending messages stay stored
and are sent by the next run. Attaches to the layer exactly as ``runworker`` does.
"""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from ...asgi import DEFAULT_CHANNEL_LAYER, channel_layers
from .runworker import Command as RunworkerCommand


class Command(RunworkerCommand):
    help = "Run the delay server: messages sent to asgi.delay are delivered to their channel after their delay."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--layer", default=DEFAULT_CHANNEL_LAYER, help="channel layer alias (default: %(default)s)")
        parser.add_argument(
            "--sleep", type=float, default=None,
            help="accepted for Channels 1 compatibility and ignored: the server sleeps until the next "
                 "message is due and wakes as soon as a request arrives",
        )
        parser.add_argument(
            "--wait-for-layer", type=float, default=60.0, metavar="SECONDS",
            help="if the layer's segment does not exist yet, wait this long for it (as runworker "
                 "does; default: %(default)s; 0: don't wait)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not apps.is_installed("django_glue.delay"):
            raise CommandError('rundelay needs "django_glue.delay" in INSTALLED_APPS (then run manage.py migrate)')
        self.check_migrated()
        self.configure_logging(options["verbosity"])
        alias = options["layer"]
        from ...delay.server import DelayServer

        # An unknown alias, or a segment still missing after the wait: a CommandError saying so.
        wrapper = self.attach_when_ready(alias, options["wait_for_layer"])
        on_sent = self.log_sent if options["verbosity"] > 1 else None
        self.logger.info("Delay server listening on asgi.delay, layer %r (%s)", alias,
                         type(wrapper.channel_layer).__name__)
        try:
            DelayServer(wrapper, on_sent=on_sent).run()
        finally:
            channel_layers.close_all()

    @staticmethod
    def check_migrated() -> None:
        """Refuse to start (saying what to run) when the table is not migrated."""
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes("django_glue_delay"))
        except DatabaseError as exc:
            raise CommandError(f"cannot read the database's migration state: {exc}") from None
        if plan:
            raise CommandError("the delay server's table is not migrated: run manage.py migrate django_glue_delay")

    def log_sent(self, channel: str, message: dict[str, Any]) -> None:
        self.logger.debug("delayed message sent to %s", channel)
