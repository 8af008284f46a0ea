"""The worker loop: receive a routed message, run its consumer, flush its sends; and a thread group.

:class:`Worker` is the one loop every Django worker runs - ``runworker``'s threads, ``runserver``'s
and procman's supervised workers (:mod:`procman.worker`). It handles no signals itself; its
public interface is what a host needs:

- :meth:`Worker.request_stop` - stop after the current message; signal-safe, and it wakes the
  layer so an idle worker's blocked receive returns at once instead of at its timeout;
- ``around_message(channel, content, handle)`` - wraps the handling of each message (procman
  records the request in flight there, so the supervisor answers it with a 502 if this process
  dies);
- ``after_turn(worker)`` - called after every turn of the loop, a message handled or a receive
  that timed out (procman beats its heartbeat and retires the worker after ``--max-requests``
  there); it may call :meth:`Worker.request_stop`;
- :attr:`Worker.handled`, :attr:`Worker.in_job`, :attr:`Worker.termed` - its state, for the host to read.

:class:`WorkerGroup` is what ``runworker`` runs: N worker threads, and the stop signals of
:mod:`asgi_ipc.stop_signals`. Graceful stop (SIGTERM, or the first SIGINT): every worker finishes
the consumer it is running and returns (an idle one at once: the layer is woken); the process
exits 0 once all have returned (or after ``graceful_timeout``). No message is lost: a worker that
took one before noticing the stop still consumes it. Fast stop (a SIGINT during the graceful
stop, or SIGQUIT): exit at once with ``EXIT_FAST``; a second SIGTERM changes nothing. A worker thread that dies
(for instance the layer's segment was removed) stops the whole group so a supervisor restarts
it. Its exit statuses come from :mod:`django_glue.exitcodes`.
"""
from __future__ import annotations

import fnmatch
import logging
import threading
import time
from typing import Any, Callable, Iterable

from asgi_ipc.stop_signals import StopSignals

from .exceptions import ChannelSocketException, ConsumeLater, DenyConnection
from .exitcodes import EXIT_FAILURE, EXIT_FAST, EXIT_OK
from .message import Message
from .signals import consumer_finished, consumer_started, worker_process_ready, worker_ready

__all__ = ["Worker", "WorkerGroup", "filter_channels", "wake_layer"]

logger = logging.getLogger("django_glue.worker")

#: ``around_message(channel, content, handle)``: wraps the handling of one message.
AroundMessage = Callable[[str, dict[str, Any], Callable[[str, dict[str, Any]], None]], None]


def filter_channels(
    channels: Iterable[str], only: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> list[str]:
    """Keep channels matching any ``only`` glob (if given), then drop any matching ``exclude``."""
    names = sorted(channels)
    if only:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in only)]
    if exclude:
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, g) for g in exclude)]
    return names


class Worker:
    """Receive on the routed channels of ``channel_layer`` and dispatch to consumers.

    :param channel_layer: a :class:`~.asgi.ChannelLayerWrapper` (layer + router).
    :param callback: called with ``(channel, message)`` before each consumer (debug logging).
    :param message_retries: how many times one message may be re-queued by ``ConsumeLater``.
    :param only_channels: / :param exclude_channels: glob filters on the routed channel names.
    """

    #: Attempts (50 ms apart) to re-queue a ConsumeLater message on a full channel.
    requeue_attempts = 10

    def __init__(
        self,
        channel_layer: Any,
        callback: Callable[[str, Message], None] | None = None,
        message_retries: int = 10,
        only_channels: Iterable[str] | None = None,
        exclude_channels: Iterable[str] | None = None,
        *,
        around_message: AroundMessage | None = None,
        after_turn: Callable[["Worker"], None] | None = None,
    ) -> None:
        self.channel_layer = channel_layer
        self.callback = callback
        self.message_retries = message_retries
        self.only_channels = list(only_channels or [])
        self.exclude_channels = list(exclude_channels or [])
        self.around_message = around_message
        self.after_turn = after_turn
        #: Set once a stop was requested; the loop returns at its next turn.
        self.termed = False
        #: True while a message is being handled.
        self.in_job = False
        #: Messages handled so far (routed or not).
        self.handled = 0

    def channels(self) -> list[str]:
        """The channel names this worker listens on (routing minus the filters)."""
        return self.apply_channel_filters(self.channel_layer.router.channels)

    def apply_channel_filters(self, channels: Iterable[str]) -> list[str]:
        """``channels`` filtered by this worker's only/exclude globs (Channels 1 API)."""
        return filter_channels(channels, self.only_channels, self.exclude_channels)

    def ready(self) -> None:
        """Send ``worker_ready`` (called once before :meth:`run`)."""
        worker_ready.send(sender=self)

    def request_stop(self, wake: bool = True) -> None:
        """Stop after the current message (an idle worker: now). Safe in a signal handler.

        :param wake: also end the layer's blocked receives in this process (:func:`wake_layer`);
            a group waking many workers passes False to each and wakes the layer once.
        """
        self.termed = True
        if wake:
            wake_layer(self.channel_layer)

    def listening_channels(self) -> list[str]:
        """:meth:`channels`, refusing an empty list (call it before reporting ready).

        :raises ValueError: no channel to listen on (empty routing, or the filters removed all).
        """
        channels = self.channels()
        if not channels:
            raise ValueError(
                "no channels left to listen on: the routing is empty or --only-channels/"
                f"--exclude-channels (only={self.only_channels}, exclude={self.exclude_channels}) "
                "removed every routed channel"
            )
        return channels

    def run(self) -> None:
        """Loop until :meth:`request_stop`; each blocking receive is bounded by the layer.

        :raises ValueError: no channel to listen on (:meth:`listening_channels`).
        """
        channels = self.listening_channels()
        logger.info("Listening on channels %s", ", ".join(channels))
        while not self.termed:
            channel, content = self.channel_layer.receive(channels, block=True)
            if channel is not None:
                self.in_job = True
                try:
                    if self.around_message is None:
                        self.handle(channel, content)
                    else:
                        self.around_message(channel, content, self.handle)
                finally:
                    self.in_job = False
                self.handled += 1
            if self.after_turn is not None:
                self.after_turn(self)

    def handle(self, channel: str, content: dict[str, Any]) -> None:
        """Route and consume one message; consumer errors are logged, never raised."""
        message = Message(content, channel, self.channel_layer)
        if content.get("__retries__", 0) == self.message_retries:
            message.__doomed__ = True  # type: ignore[attr-defined]
        match = self.channel_layer.router.match(message)
        if match is None:
            logger.error("Could not find match for message on %s! Check your routing.", channel)
            return
        consumer, kwargs = match
        if self.callback:
            self.callback(channel, message)
        try:
            consumer_started.send(sender=self.__class__, environ={})
            self.run_consumer(consumer, message, kwargs)
        finally:
            try:
                consumer_finished.send(sender=self.__class__)
            except Exception:
                logger.exception("Error sending the messages buffered by %s", _name(consumer))

    def run_consumer(self, consumer: Callable[..., Any], message: Message, kwargs: dict[str, Any]) -> None:
        """Call the consumer and turn the control exceptions into their effects.

        Any other exception is logged with its traceback; on ``websocket.connect`` the handshake
        is also rejected at once (:meth:`reject_failed_connect`).
        """
        try:
            consumer(message, **kwargs)
        except DenyConnection:
            if message.channel.name != "websocket.connect":
                logger.error(
                    "%s raised DenyConnection on %s; it is only allowed on websocket.connect",
                    _name(consumer), message.channel.name,
                )
            elif message.reply_channel is not None:
                message.reply_channel.send({"close": True})
        except ChannelSocketException as exc:
            try:
                exc.run(message)
            except Exception:
                logger.exception("Error running %r for %s", exc, _name(consumer))
        except ConsumeLater:
            self.requeue(message)
        except Exception:
            logger.exception("Error processing message with consumer %s:", _name(consumer))
            self.reject_failed_connect(message)

    @staticmethod
    def reject_failed_connect(message: Message) -> None:
        """Reject the handshake of a ``websocket.connect`` whose consumer raised, at once.

        Otherwise the client waits for the interface server's connect timeout. Sent immediately
        so it reaches the interface server before anything the consumer had buffered.
        """
        if message.channel.name != "websocket.connect" or message.reply_channel is None:
            return
        try:
            message.reply_channel.send({"close": True}, immediately=True)
        except Exception:
            logger.exception("Could not reject the WebSocket handshake on %s", message.reply_channel)

    def requeue(self, message: Message) -> None:
        """Put a ConsumeLater message back, counting retries; drop it past the limit."""
        content = dict(message.content)
        retries = content.get("__retries__", 0) + 1
        if retries > self.message_retries:
            logger.warning(
                "Exceeded number of retries for message on channel %s: %s",
                message.channel.name, repr(content)[:100],
            )
            return
        content["__retries__"] = retries
        for _ in range(self.requeue_attempts):
            try:
                self.channel_layer.send(message.channel.name, content)
                return
            except self.channel_layer.ChannelFull:
                time.sleep(0.05)
        logger.warning(
            "Dropped ConsumeLater message on %s: the channel stayed full", message.channel.name
        )


def _name(consumer: Any) -> str:
    return getattr(consumer, "__qualname__", None) or type(consumer).__name__


def wake_layer(channel_layer: Any) -> None:
    """End the blocked receives of ``channel_layer`` in this process now, if the layer can
    (``wake``; a :class:`~.asgi.ChannelLayerWrapper` hands it on). Signal-safe."""
    wake = getattr(channel_layer, "wake", None)
    if wake is not None:
        wake()


class WorkerGroup:
    """N :class:`Worker` threads; the main thread waits for them (and for a stop signal)."""

    def __init__(self, channel_layer: Any, n_threads: int = 1, graceful_timeout: float = 30.0, **kwargs: Any) -> None:
        if n_threads < 1:
            raise ValueError(f"--threads must be at least 1, got {n_threads}")
        self.workers = [Worker(channel_layer, **kwargs) for _ in range(n_threads)]
        self.graceful_timeout = graceful_timeout
        self.stop_requested = threading.Event()
        #: The stop signals, once :meth:`install_signal_handlers` ran.
        self.stop_signals: StopSignals | None = None
        self.failed = False
        #: False after :meth:`run` if a thread was still busy at the graceful timeout.
        self.all_stopped = True

    def install_signal_handlers(self) -> None:
        """The stop signals of :mod:`asgi_ipc.stop_signals` (main thread only): graceful is
        :meth:`request_stop`, fast exits at once with ``EXIT_FAST``."""
        self.stop_signals = StopSignals(
            self.request_stop, announce=logger.info, fast_exit_code=EXIT_FAST,
        ).install()

    def request_stop(self) -> None:
        """Ask every worker to stop after its current message; idle ones return at once."""
        for worker in self.workers:
            worker.request_stop(wake=False)
        self.stop_requested.set()
        if self.workers:
            wake_layer(self.workers[0].channel_layer)  # one wake ends every thread's receive

    def _thread_main(self, worker: Worker) -> None:
        try:
            worker.run()
        except BaseException:
            if not worker.termed:
                logger.exception("Worker thread died")
                self.failed = True
        finally:
            self.stop_requested.set()

    def run(self) -> int:
        """Run until stopped; returns the process exit status (:data:`EXIT_OK`, or
        :data:`EXIT_FAILURE` when a worker thread died)."""
        threads = []
        for index, worker in enumerate(self.workers):
            worker.ready()
            thread = threading.Thread(
                target=self._thread_main, args=(worker,), name=f"worker-{index}", daemon=True
            )
            thread.start()
            threads.append(thread)
        worker_process_ready.send(sender=self)
        self.stop_requested.wait()
        self.request_stop()
        deadline = time.monotonic() + self.graceful_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        self.all_stopped = not busy
        if busy:
            logger.warning("Graceful timeout: %s still running, exiting anyway", ", ".join(busy))
        return EXIT_FAILURE if self.failed else EXIT_OK
