"""``manage.py runworker`` as a real process on a real layer segment."""
import os
import signal
import subprocess
import sys

import pytest

from django_glue import exitcodes
from tests.children import end_with_parent

from .conftest import REPO, process_env, wait_for

ROUTING = "tests.django_glue.project.routing.process_routing"


def receive(layer, channel, timeout=15.0):
    """Next message on ``channel`` within ``timeout`` (blocking receives, bounded)."""
    result = wait_for(lambda: layer.receive([channel], block=True)[1], timeout=timeout, interval=0)
    return result


def log_text(proc):
    return proc.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def shared(module_processes):
    """One worker (2 threads, -v 2) for the tests that only send it work and read its log - each
    on reply channels of its own, none stopping or killing it: 3 process starts fewer. The
    tests that signal, starve or configure a worker otherwise start their own."""
    return module_processes.runworker(ROUTING, "--threads", "2", "-v", "2"), module_processes.layer


def test_consumes_routed_channel_and_http(shared):
    _, ipc_layer = shared
    ipc_layer.send("background", {"n": 21, "reply_channel": "t.reply.routed"})
    assert receive(ipc_layer, "t.reply.routed") == {"done": 42}
    ipc_layer.send("http.request", {
        "reply_channel": "t.http!routed", "http_version": "1.1", "method": "GET", "path": "/hello/",
        "query_string": b"", "headers": [[b"host", b"localhost"]],
    })
    response = receive(ipc_layer, "t.http!")
    assert (response["status"], response["content"]) == (200, b"hello")


def test_consumer_exception_is_logged_and_worker_continues(shared):
    worker, ipc_layer = shared
    ipc_layer.send("fail", {"tag": "first"})
    ipc_layer.send("background", {"n": 1, "reply_channel": "t.reply.failed"})
    assert receive(ipc_layer, "t.reply.failed") == {"done": 2}
    wait_for(lambda: "deliberate failure first" in log_text(worker))
    text = log_text(worker)
    assert "Traceback (most recent call last)" in text and "RuntimeError" in text
    assert worker.poll() is None


def test_only_and_exclude_channels(processes, ipc_layer):
    only = processes.runworker(ROUTING, "--only-channels", "back*")
    ipc_layer.send("background", {"n": 2, "reply_channel": "t.reply"})
    assert receive(ipc_layer, "t.reply") == {"done": 4}
    assert "for channels: background" in log_text(only)
    excluded = processes.runworker(ROUTING, "--exclude-channels", "websocket.*", "--exclude-channels", "http.*")
    wait_for(lambda: "for channels:" in log_text(excluded))
    assert "for channels: background, fail, job" in log_text(excluded)


def test_no_channels_left_is_a_clear_error(ipc_layer, db_file):
    result = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--only-channels", "nothing.*"],
        cwd=REPO, env=process_env(ipc_layer.prefix, ROUTING, db_file), capture_output=True, timeout=60,
    )
    assert result.returncode == exitcodes.EXIT_CONFIG
    assert b"no channels left to listen on" in result.stderr and b"only=['nothing.*']" in result.stderr


def test_bad_layer_alias_is_a_clear_error(ipc_layer, db_file):
    result = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--layer", "missing"],
        cwd=REPO, env=process_env(ipc_layer.prefix, ROUTING, db_file), capture_output=True, timeout=60,
    )
    assert result.returncode == exitcodes.EXIT_CONFIG
    assert b"CHANNEL_LAYERS has no 'missing' entry (defined: 'default', 'other'" in result.stderr


def test_bad_arguments_exit_with_the_usage_code(ipc_layer, db_file):
    for args, message in [(["--threads", "0"], b"--threads must be at least 1, got 0"),
                          (["--threads", "many"], b"invalid int value: 'many'")]:
        result = subprocess.run(
            [sys.executable, "-m", "django", "runworker", *args],
            cwd=REPO, env=process_env(ipc_layer.prefix, ROUTING, db_file), capture_output=True, timeout=60,
        )
        assert result.returncode == exitcodes.EXIT_USAGE, result.stderr
        assert message in result.stderr


def test_sigterm_finishes_the_running_consumer_then_exits_0(processes, ipc_layer):
    worker = processes.runworker(ROUTING)
    ipc_layer.send("job", {"job": "a", "reply_channel": "t.jobs"})
    assert receive(ipc_layer, "t.jobs") == {"started": "a"}
    worker.send_signal(signal.SIGTERM)
    ipc_layer.send("release.a", {})
    assert receive(ipc_layer, "t.jobs") == {"done": "a"}
    assert worker.wait(15) == 0


def test_sigterm_while_idle_exits_0(processes, ipc_layer):
    worker = processes.runworker(ROUTING)
    ipc_layer.send("background", {"n": 0, "reply_channel": "t.reply"})
    receive(ipc_layer, "t.reply")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0


def test_threads_run_consumers_concurrently(shared):
    _, ipc_layer = shared
    ipc_layer.send("job", {"job": "ta", "reply_channel": "t.jobs.threads"})
    ipc_layer.send("job", {"job": "tb", "reply_channel": "t.jobs.threads"})
    # Both jobs block until released, so both can only start if two threads consume.
    started = {receive(ipc_layer, "t.jobs.threads")["started"], receive(ipc_layer, "t.jobs.threads")["started"]}
    assert started == {"ta", "tb"}
    ipc_layer.send("release.ta", {})
    ipc_layer.send("release.tb", {})
    assert {receive(ipc_layer, "t.jobs.threads")["done"], receive(ipc_layer, "t.jobs.threads")["done"]} == {"ta", "tb"}


def test_ready_signals(processes, ipc_layer):
    worker = processes.runworker(ROUTING, "--threads", "2", env={"DG_TEST_REPORT_SIGNALS": "1"})
    signals = sorted(receive(ipc_layer, "test.signals")["signal"] for _ in range(3))
    assert signals == ["worker_process_ready", "worker_ready", "worker_ready"]
    assert worker.poll() is None


def test_worker_exits_nonzero_when_the_segment_is_removed(processes, ipc_layer):
    worker = processes.runworker(ROUTING)
    ipc_layer.send("background", {"n": 0, "reply_channel": "t.reply"})
    receive(ipc_layer, "t.reply")
    ipc_layer.unlink()
    assert worker.wait(15) == exitcodes.EXIT_FAILURE


def test_verbosity_2_logs_each_message(shared):
    worker, ipc_layer = shared
    ipc_layer.send("background", {"n": 3, "reply_channel": "t.reply.verbose"})
    assert receive(ipc_layer, "t.reply.verbose") == {"done": 6}
    wait_for(lambda: "DEBUG django_glue: background t.reply.verbose" in log_text(worker))


def test_missing_segment_is_a_clear_error_and_nothing_is_created(db_file):
    prefix = "dgmissing_" + str(os.getpid())
    result = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--wait-for-layer", "0.5"],
        cwd=REPO, env={**process_env(prefix, ROUTING, db_file), "DG_TEST_DEFAULT_CREATE": "1"},
        capture_output=True, timeout=60,
    )
    assert result.returncode == exitcodes.EXIT_NO_LAYER
    assert b"Waiting up to 0.5s for the channel layer 'default' to be created" in result.stderr
    assert b"the segment of channel layer 'default' does not exist" in result.stderr
    assert b"after waiting 0.5s" in result.stderr
    assert prefix.encode() in result.stderr
    assert not any(prefix in name for name in os.listdir("/dev/shm"))


def test_worker_started_before_the_segment_waits_for_it(db_file, tmp_path):
    """Supervisors start the site's processes in any order: a worker that comes first waits."""
    from asgi_ipc import IPCChannelLayer

    from .conftest import settings, stop_process, unique_prefix

    prefix = unique_prefix()
    log = tmp_path / "early.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", "--wait-for-layer", "60"],
            cwd=REPO, env=process_env(prefix, ROUTING, db_file), stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=end_with_parent(),
        )
    layer = None
    try:
        wait_for(lambda: "Waiting up to 60s for the channel layer 'default'" in log.read_text(), timeout=60)
        assert worker.poll() is None
        layer = IPCChannelLayer(prefix=prefix, create=True, **settings.CHANNEL_LAYERS["default"]["TEST_CONFIG"])
        wait_for(lambda: "Listening on channels" in log.read_text(), timeout=30)
        layer.send("background", {"n": 5, "reply_channel": "t.reply"})
        assert receive(layer, "t.reply") == {"done": 10}
    finally:
        stop_process(worker)
        if layer is not None:
            layer.close()
    assert not any(prefix in name for name in os.listdir("/dev/shm"))


def test_layer_option_serves_another_alias(db_file, tmp_path):
    """``--layer other`` attaches to that alias's segment and serves that alias's routing only."""
    from asgi_ipc import IPCChannelLayer

    from .conftest import Processes, settings, unique_prefix

    default, other = unique_prefix(), unique_prefix()
    sizes = settings.CHANNEL_LAYERS["other"]["TEST_CONFIG"]
    layers = [IPCChannelLayer(prefix=p, create=True, **sizes) for p in (default, other)]
    procs = Processes(default, db_file, tmp_path)
    try:
        worker = procs.runworker(ROUTING, "--layer", "other", env={"DG_TEST_OTHER_PREFIX": other})
        assert "on layer 'other'" in log_text(worker)
        assert "for channels: http.disconnect, http.request, other.work," in log_text(worker)
        layers[0].send("background", {"n": 1, "reply_channel": "t.reply"})  # the default alias's
        layers[1].send("other.work", {"n": 4, "reply_channel": "t.reply"})
        assert receive(layers[1], "t.reply") == {"done": 8}
        # The worker of "other" never touched the default layer: its message is still waiting.
        assert layers[0].receive(["background"], block=False)[1] == {"n": 1, "reply_channel": "t.reply"}
    finally:
        procs.stop_all()
        for layer in layers:
            layer.close()


def test_disable_graceful_stop_exits_without_waiting(processes, ipc_layer):
    worker = processes.runworker(ROUTING, "--disable-graceful-stop")
    ipc_layer.send("job", {"job": "g", "reply_channel": "t.jobs"})
    assert receive(ipc_layer, "t.jobs") == {"started": "g"}
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0  # the job is still blocked: nobody released it
    assert "Graceful timeout: worker-0 still running" in log_text(worker)
    assert ipc_layer.receive(["t.jobs"], block=False) == (None, None)


def test_a_second_ctrl_c_ends_a_busy_worker_at_once_and_a_second_sigterm_does_not(processes, ipc_layer):
    """The table of ``asgi_ipc.stop_signals``: the consumer never finishes (nobody releases it),
    yet a SIGINT during the graceful stop exits at once with ``EXIT_FAST``."""
    worker = processes.runworker(ROUTING)
    ipc_layer.send("job", {"job": "busy", "reply_channel": "t.jobs"})
    assert receive(ipc_layer, "t.jobs") == {"started": "busy"}
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: stopping gracefully" in log_text(worker))
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM again: already stopping gracefully" in log_text(worker))
    assert worker.poll() is None  # the second TERM changed nothing: the consumer still runs
    worker.send_signal(signal.SIGINT)
    assert worker.wait(15) == exitcodes.EXIT_FAST == 130
    assert "SIGINT during the graceful stop: stopping at once (exit 130)" in log_text(worker)
    assert ipc_layer.receive(["t.jobs"], block=False) == (None, None)  # the consumer never finished
