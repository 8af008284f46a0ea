"""A Channels 4 background worker under supervision: what ``manage.py runworker CHANNEL...`` runs
(``channels.worker.Worker`` feeding the application's ``"channel"`` route, usually a
``ChannelNameRouter``), plus heartbeats and a graceful stop.

The worker's event loop is the one that beats: a beat task on the same loop as the listeners and
consumers, so a consumer that blocks the loop stops the beats and the supervisor replaces the
process. The application is wrapped to see each consumer instance take its next message: the
"requests" count of ``procman status`` is the number of messages handed to consumers, and a
consumer is *idle* while it waits for its next one.

Graceful stop (SIGTERM or a first SIGINT: the table of :mod:`asgi_ipc.stop_signals`): the channel listeners are cancelled first, so no new message is taken (a
cancelled ``receive`` leaves the message in the layer for the other or the next worker); then the
messages already taken are finished - the process exits once every consumer instance waits for its
next message with nothing queued, or at ``--graceful-timeout`` less a margin. A fast stop (SIGINT
during the graceful one, or SIGQUIT) exits at once with ``exitcodes.FAST``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from typing import Any, Callable

from asgi_ipc.stop_signals import StopSignals

from . import exitcodes
from .heartbeat import HeartbeatSender

__all__ = ["parse_args", "worker_entry"]

#: Seconds of the graceful timeout left to the supervisor after the stop gave up waiting.
STOP_MARGIN = 1.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m procman.boot runworker")
    parser.add_argument("--application", required=True, metavar="MODULE:APP",
                        help="the ASGI 3 application (its 'channel' route handles the messages)")
    parser.add_argument("--alias", default="default", help="CHANNEL_LAYERS alias")
    parser.add_argument("--graceful-timeout", type=float, default=30.0)
    parser.add_argument("channels", nargs="+", help="channels to listen on")
    return parser.parse_args(argv)


class _Tracked:
    """Wraps the ASGI application to count messages taken and consumers waiting for one."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.taken = 0
        self.waiting = 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> Any:
        async def tracked_receive() -> dict:
            self.waiting += 1
            try:
                message = await receive()
            finally:
                self.waiting -= 1
            self.taken += 1
            return message

        return await self.application(scope, tracked_receive, send)


def worker_entry(argv: list[str]) -> Callable[[HeartbeatSender], int]:
    """The entry point :func:`procman.boot.supervised_main` runs for a Channels worker."""

    def entry(beats: HeartbeatSender) -> int:
        args = parse_args(argv)
        from channels.layers import get_channel_layer
        from channels.worker import Worker

        from .asgi3_server import import_application

        tracked = _Tracked(import_application(args.application))
        layer = get_channel_layer(args.alias)
        if layer is None:
            raise ValueError(f"CHANNEL_LAYERS has no {args.alias!r} entry: a Channels worker needs a channel layer")
        for name in args.channels:
            layer.require_valid_channel_name(name)
        worker = Worker(application=tracked, channels=args.channels, channel_layer=layer)
        return asyncio.run(_serve(worker, tracked, args, beats))

    return entry


async def _serve(worker: Any, tracked: _Tracked, args: argparse.Namespace, beats: HeartbeatSender) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = StopSignals(stop.set, call=loop.call_soon_threadsafe, announce=functools.partial(print, flush=True),
                          fast_exit_code=exitcodes.FAST).install()
    listening = asyncio.ensure_future(worker.handle())
    checking = asyncio.ensure_future(worker.application_checker())
    beats.ready()
    print(f"listening on {', '.join(args.channels)}", flush=True)
    stopping = asyncio.ensure_future(stop.wait())
    code = 0
    try:
        while not stop.is_set():
            await asyncio.wait({stopping, listening}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            if listening.done():
                listening.result()  # a layer error: an ordinary crash (restarted with backoff)
                raise RuntimeError("the channel listeners ended")
            if not beats.beat(tracked.taken):
                print("supervisor gone: exiting", flush=True)
                code = 1
                break
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        deadline = time.monotonic() + max(0.5, args.graceful_timeout - STOP_MARGIN)
        while time.monotonic() < deadline and not _idle(worker, tracked):
            await asyncio.sleep(0.02)
            beats.beat(tracked.taken)
        if not _idle(worker, tracked):
            print("stop timed out with messages still being handled", flush=True)
    finally:
        stopping.cancel()
        checking.cancel()
        for details in list(worker.application_instances.values()):
            details["future"].cancel()
        await asyncio.gather(checking, *(d["future"] for d in worker.application_instances.values()),
                             return_exceptions=True)
        signals.restore()
    return code


def _idle(worker: Any, tracked: _Tracked) -> bool:
    """Every consumer instance waits for its next message and none is queued for it."""
    instances = [d for d in worker.application_instances.values() if not d["future"].done()]
    return tracked.waiting >= len(instances) and all(d["input_queue"].empty() for d in instances)
