"""A Django worker under supervision: django_glue's consumer dispatch plus heartbeats and recycling.

Each loop turn blocks in the layer's ``receive`` (bounded by the layer's internal timeout), hands a
message to :meth:`django_glue.worker.Worker.handle` (routing, consumer, buffered sends) and beats.
Beats come from this loop, so a consumer stuck for longer than ``--timeout`` stops them and the
supervisor aborts and replaces the process.

Stopping: SIGTERM / SIGINT set ``termed`` and wake the layer (an idle worker's blocked receive
returns at once); the consumer running now finishes and the loop exits at its next turn
(messages still queued stay in the layer for the other or the new workers).

Each HTTP request is recorded while its consumer runs (:mod:`procman.inflight`), so if this
process dies the supervisor answers that request with a 502 at once.
``--max-requests N`` (+ a random jitter up to ``--max-requests-jitter``) asks the supervisor to
replace this worker once N messages were handled; it keeps serving until its replacement is ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
from typing import Any, Callable

from .heartbeat import HeartbeatSender
from .inflight import InflightLog

__all__ = ["worker_entry", "parse_args"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m procman.boot worker")
    parser.add_argument("--settings", required=True, help="Django settings module")
    parser.add_argument("--alias", default="default", help="CHANNEL_LAYERS alias")
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
        from django_glue.asgi import ChannelLayerWrapper, build_layer, channel_layers, layer_settings
        from django_glue.worker import Worker

        # Attach only (create=False): the supervisor owns the segment. A worker must never create
        # one of its own if the site's segment is gone - it would leak and split the site in two.
        entry = layer_settings(args.alias)
        layer = ChannelLayerWrapper(
            build_layer(args.alias, {**entry.get("CONFIG", {}), "create": False}), args.alias, entry["ROUTING"]
        )
        channel_layers.set(args.alias, layer)
        http_consumer = None
        if settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS:
            from django_glue.staticfiles import StaticFilesConsumer

            http_consumer = StaticFilesConsumer()
        layer.router.check_default(http_consumer=http_consumer)
        worker = Worker(layer, only_channels=args.only_channels, exclude_channels=args.exclude_channels)
        channels = worker.channels()
        if not channels:
            raise ValueError(
                "this worker has no channel to listen on: --only-channels/--exclude-channels "
                f"(only={args.only_channels}, exclude={args.exclude_channels}) removed every routed channel"
            )
        limit = 0
        if args.max_requests > 0:
            limit = args.max_requests + random.randint(0, max(0, args.max_requests_jitter))
        return _serve(worker, layer, channels, beats, limit)

    return entry


def _serve(worker: Any, layer: Any, channels: list[str], beats: HeartbeatSender, limit: int) -> int:
    def stop(signum: int, _frame: Any) -> None:
        worker.termed = True
        _wake(layer)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    inflight = InflightLog(layer)
    worker.ready()
    print(f"listening on {', '.join(channels)}", flush=True)
    beats.ready()
    served = 0
    retiring = False
    while not worker.termed:
        channel, content = layer.receive(channels, block=True)
        if channel is not None:
            worker.in_job = True
            try:
                inflight.run(channel, content, worker.handle)
            finally:
                worker.in_job = False
            served += 1
            if limit and served >= limit and not retiring:
                retiring = True
                if not beats.supervised:
                    print(f"handled {served} messages (--max-requests): exiting", flush=True)
                    return 0
                beats.retire(f"handled {served} messages, --max-requests")
        if not beats.beat(served):
            print("supervisor gone: exiting", flush=True)
            return 1
    return 0


def _wake(layer: Any) -> None:
    """End the layer's blocked receive now (from the stop signal's handler), if it can."""
    wake = getattr(layer, "wake", None)  # the wrapper hands it on to the layer
    if wake is not None:
        wake()
