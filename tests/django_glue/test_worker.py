"""The worker loop in-process: dispatch, control exceptions, retries, signals, thread group."""
import logging
import threading

from django_glue.asgi import ChannelLayerWrapper, channel_layers
from django_glue.exceptions import ConsumeLater, DenyConnection, WebsocketCloseException
from django_glue.routing import route
from django_glue.signals import consumer_finished, consumer_started, worker_ready
from django_glue.test import ChannelTestCase, apply_routes, isolated_layer
from django_glue.worker import Worker, WorkerGroup, filter_channels


def test_filter_channels_globs():
    names = ["http.request", "websocket.connect", "websocket.receive", "thumbnail"]
    assert filter_channels(names, only=["websocket.*"]) == ["websocket.connect", "websocket.receive"]
    assert filter_channels(names, exclude=["websocket.*", "http.*"]) == ["thumbnail"]
    assert filter_channels(names, only=["*"], exclude=["thumb*"]) == ["http.request", "websocket.connect", "websocket.receive"]
    assert filter_channels(names, only=["nothing"]) == []


calls = []


def deny(message):
    raise DenyConnection()


def close_4001(message):
    raise WebsocketCloseException(4001)


def later(message):
    calls.append(message.get("__retries__", 0))
    raise ConsumeLater()


def broken(message):
    message.reply_channel.send({"before": "error"})
    raise RuntimeError("consumer bug")


def record(message, **kwargs):
    calls.append((message.channel.name, kwargs, getattr(message, "__doomed__", False)))


class WorkerTests(ChannelTestCase):
    def setUp(self):
        calls.clear()
        self.layer = channel_layers["default"]
        self.worker = Worker(self.layer, message_retries=3)

    def step(self, channel):
        received, content = self.layer.receive([channel], block=False)
        self.assertIsNotNone(received, f"nothing on {channel}")
        self.worker.handle(received, content)

    @apply_routes([route("websocket.connect", deny)])
    def test_deny_connection_sends_close(self):
        self.layer.send("websocket.connect", {"reply_channel": "r1", "path": "/"})
        self.step("websocket.connect")
        self.assertEqual(self.get_next_message("r1").content, {"close": True})

    @apply_routes([route("websocket.receive", deny)])
    def test_deny_connection_outside_connect_is_logged_not_sent(self):
        self.layer.send("websocket.receive", {"reply_channel": "r1", "text": "x"})
        with self.assertLogs("django_glue.worker", logging.ERROR):
            self.step("websocket.receive")
        self.assertIsNone(self.get_next_message("r1"))

    @apply_routes([route("websocket.receive", close_4001)])
    def test_websocket_close_exception(self):
        self.layer.send("websocket.receive", {"reply_channel": "r1", "text": "x"})
        self.step("websocket.receive")
        self.assertEqual(self.get_next_message("r1").content, {"close": 4001})

    def test_invalid_close_code_rejected(self):
        with self.assertRaises(ValueError):
            WebsocketCloseException(1006)

    @apply_routes([route("work", later)])
    def test_consume_later_requeues_until_limit(self):
        self.layer.send("work", {"x": 1})
        for _ in range(3):
            self.step("work")
        with self.assertLogs("django_glue.worker", logging.WARNING) as logs:
            self.step("work")
        self.assertIn("Exceeded number of retries", logs.output[0])
        self.assertEqual(calls, [0, 1, 2, 3])
        self.assertIsNone(self.get_next_message("work"))

    @apply_routes([route("work", record)])
    def test_doomed_flag_on_last_retry(self):
        self.layer.send("work", {"__retries__": 3})
        self.step("work")
        self.assertEqual(calls, [("work", {}, True)])

    @apply_routes([route("work", broken)])
    def test_consumer_exception_is_logged_and_sends_still_flushed(self):
        self.layer.send("work", {"reply_channel": "r2"})
        with self.assertLogs("django_glue.worker", logging.ERROR) as logs:
            self.step("work")
        self.assertIn("consumer bug", "\n".join(logs.output))  # traceback included
        self.assertEqual(self.get_next_message("r2").content, {"before": "error"})

    @apply_routes([route("work", record, key=r"^(?P<k>\w+)$")])
    def test_unrouted_message_is_logged_and_dropped(self):
        self.layer.send("work", {"key": "!!"})
        with self.assertLogs("django_glue.worker", logging.ERROR) as logs:
            self.step("work")
        self.assertIn("Could not find match", logs.output[0])
        self.layer.send("work", {"key": "abc"})
        self.step("work")
        self.assertEqual(calls, [("work", {"k": "abc"}, False)])

    @apply_routes([route("work", record)])
    def test_signals_and_callback(self):
        seen = []
        started = lambda **kw: seen.append("started")  # noqa: E731
        finished = lambda **kw: seen.append("finished")  # noqa: E731
        consumer_started.connect(started)
        consumer_finished.connect(finished)
        self.worker.callback = lambda channel, message: seen.append(("callback", channel))
        try:
            self.layer.send("work", {})
            self.step("work")
        finally:
            consumer_started.disconnect(started)
            consumer_finished.disconnect(finished)
        self.assertEqual(seen, [("callback", "work"), "started", "finished"])

    @apply_routes([route("work", record)])
    def test_worker_group_threads_stop_gracefully(self):
        ready = []
        receiver = lambda sender, **kw: ready.append(sender)  # noqa: E731
        worker_ready.connect(receiver)
        group = WorkerGroup(self.layer, n_threads=2)
        result = []
        runner = threading.Thread(target=lambda: result.append(group.run()))
        try:
            runner.start()
            for i in range(5):
                self.layer.send("work", {"i": i})
            deadline = threading.Event()
            for _ in range(200):
                if len(calls) == 5:
                    break
                deadline.wait(0.02)
            group.request_stop()
            runner.join(10)
        finally:
            worker_ready.disconnect(receiver)
            group.request_stop()
        self.assertFalse(runner.is_alive())
        self.assertEqual(result, [0])
        self.assertEqual(len(calls), 5)
        self.assertEqual(len(ready), 2)

    def test_worker_refuses_to_run_without_channels(self):
        worker = Worker(self.layer, only_channels=["nothing.*"])
        with self.assertRaises(ValueError):
            worker.run()


def _run_in_thread(worker):
    errors = []

    def target():
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


class WorkerHookTests(ChannelTestCase):
    """The loop's public interface for its hosts (procman's supervised worker uses it)."""

    def setUp(self):
        calls.clear()

    @apply_routes([route("work", record)])
    def test_around_message_wraps_each_message_and_after_turn_follows_each_turn(self):
        layer = channel_layers["default"]
        wrapped, turns = [], []

        def around(channel, content, handle):
            wrapped.append(("before", channel, content["i"], worker.in_job))
            handle(channel, content)
            wrapped.append(("after", len(calls)))

        def after_turn(w):
            turns.append((w.handled, w.in_job))
            if w.handled == 2:
                w.request_stop(wake=False)

        worker = Worker(layer, around_message=around, after_turn=after_turn)
        for i in range(3):
            layer.send("work", {"i": i})
        thread, errors = _run_in_thread(worker)
        thread.join(20)
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])
        self.assertEqual(wrapped, [("before", "work", 0, True), ("after", 1), ("before", "work", 1, True), ("after", 2)])
        self.assertEqual(turns[-1], (2, False))
        self.assertEqual([handled for handled, _ in turns if handled], [1, 2])
        self.assertEqual(layer.receive(["work"], block=False)[1], {"i": 2})  # left for another worker

    def test_request_stop_wakes_an_idle_worker_before_its_receive_times_out(self):
        isolated = isolated_layer("default", receive_timeout=60.0)  # closed when collected: keep it
        raw = isolated.channel_layer
        worker = Worker(ChannelLayerWrapper(raw, "default", [route("work", record)]))
        thread, errors = _run_in_thread(worker)
        try:
            raw.send("work", {"i": 0})
            for _ in range(400):  # bounded: the worker is in its loop once it handled this message
                if worker.handled:
                    break
                thread.join(0.05)
            self.assertEqual(worker.handled, 1)
            worker.request_stop()
            thread.join(20)  # a third of the receive timeout: only the wake ends it this soon
            self.assertFalse(thread.is_alive())
            self.assertEqual(errors, [])
        finally:
            worker.request_stop()
            thread.join(60)
            raw.close()
