"""A Django worker under supervision: django_glue's worker loop plus heartbeats and recycling.

The loop is :meth:`django_glue.worker.Worker.run` (the one ``runworker`` runs); this module adds
what supervision needs through its hooks (:class:`Supervision`). Each turn blocks in the layer's
``receive`` (bounded by the layer's internal timeout), handles a message if one came (routing,
consumer, buffered sends) and then beats. Beats come from this loop, so a consumer stuck for
longer than ``--timeout`` stops them and the supervisor aborts and replaces the process; a beat
nobody reads (the supervisor is gone) ends the process with status 1.

Stopping (the table of :mod:`asgi_ipc.stop_signals`): a graceful stop (SIGTERM, or a first
SIGINT) calls :meth:`~django_glue.worker.Worker.request_stop`, which wakes the layer (an idle
worker's blocked receive returns at once); the consumer running now finishes and the loop exits
at its next turn (messages still queued stay in the layer for the other or the new workers). A
fast stop (SIGINT during the graceful one, or SIGQUIT) exits at once with ``exitcodes.FAST``.

Each HTTP request is recorded while its consumer runs (:mod:`procman.inflight`), so if this
process dies the supervisor answers that request with a 502 at once.
``--max-requests N`` (+ a random jitter up to ``--max-requests-jitter``) asks the supervisor to
replace this worker once N messages were handled; it keeps serving until its replacement is ready.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import random
import sys
from typing import Any, Callable

from asgi_ipc.layer_settings import DEFAULT_ALIAS
from asgi_ipc.stop_signals import StopSignals

from . import exitcodes
from .heartbeat import HeartbeatSender
from .inflight import InflightLog

__all__ = ["Supervision", "worker_entry", "parse_args"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The worker's command line (the supervisor builds it; see :func:`procman.site.build_roles`)."""
    parser = argparse.ArgumentParser(prog="python -m procman.boot worker")
    parser.add_argument("--settings", required=True, help="Django settings module")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="CHANNEL_LAYERS alias")
    parser.add_argument("--only-channels", action="append", default=[], metavar="GLOB")
    parser.add_argument("--exclude-channels", action="append", default=[], metavar="GLOB")
    parser.add_argument("--max-requests", type=int, default=0)
    parser.add_argument("--max-requests-jitter", type=int, default=0)
    return parser.parse_args(argv)


def worker_entry(argv: list[str]) -> Callable[[HeartbeatSender], int]:
    """The entry point :func:`procman.boot.supervised_main` runs for a worker."""

    def entry(beats: HeartbeatSender) -> int:
        args = parse_args(argv)
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
        import django

        django.setup(set_prefix=False)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
        from django.conf import settings
        from django_glue.asgi import attached_layer, channel_layers
        from django_glue.worker import Worker

        # Attach only, even if CONFIG says create: the supervisor owns the segment. A worker must
        # never create one of its own if the site's segment is gone - it would leak and split the
        # site in two.
        layer = attached_layer(args.alias, supervised=True)
        channel_layers.set(args.alias, layer)
        http_consumer = None
        if settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS:
            from django_glue.staticfiles import StaticFilesConsumer

            http_consumer = StaticFilesConsumer()
        layer.router.check_default(http_consumer=http_consumer)
        limit = 0
        if args.max_requests > 0:
            limit = args.max_requests + random.randint(0, max(0, args.max_requests_jitter))
        supervision = Supervision(beats, limit)
        worker = Worker(
            layer, only_channels=args.only_channels, exclude_channels=args.exclude_channels,
            around_message=InflightLog(layer).run, after_turn=supervision.after_turn,
        )
        return supervision.serve(worker)

    return entry


class Supervision:
    """What a supervised worker adds to :class:`django_glue.worker.Worker`'s loop: signals,
    readiness, heartbeats, ``--max-requests`` retirement and the exit status.

    :param beats: the heartbeat pipe to the supervisor (a no-op when not supervised).
    :param limit: retire after this many messages (0: never).
    """

    def __init__(self, beats: HeartbeatSender, limit: int) -> None:
        self.beats = beats
        self.limit = limit
        self.retiring = False
        #: The process exit status: 0 stopped or retired, 1 the supervisor is gone.
        self.status = 0

    def serve(self, worker: Any) -> int:
        """Install the stop signals, report ready, run ``worker``'s loop; returns :attr:`status`.

        :raises ValueError: ``worker`` has no channel to listen on (before reporting ready, so the
            supervisor sees a boot failure, not a crash to restart).
        """
        channels = worker.listening_channels()
        # request_stop wakes the layer: an idle worker returns at once.
        StopSignals(worker.request_stop, announce=functools.partial(print, flush=True), fast_exit_code=exitcodes.FAST).install()
        from django_glue.signals import worker_process_ready

        worker.ready()
        worker_process_ready.send(sender=self)
        print(f"listening on {', '.join(channels)}", flush=True)
        self.beats.ready()
        worker.run()
        return self.status

    def after_turn(self, worker: Any) -> None:
        """After each turn of the loop: retire past the limit, then beat (a stop if nobody listens)."""
        served = worker.handled
        if self.limit and served >= self.limit and not self.retiring:
            self.retiring = True
            if not self.beats.supervised:
                print(f"handled {served} messages (--max-requests): exiting", flush=True)
                worker.request_stop(wake=False)
                return
            self.beats.retire(f"handled {served} messages, --max-requests")
        if not self.beats.beat(served):
            print("supervisor gone: exiting", flush=True)
            self.status = 1
            worker.request_stop(wake=False)
