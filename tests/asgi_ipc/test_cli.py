"""The ``asgi-ipc`` operator CLI against real segments: run for real (``python -m asgi_ipc``),
and its ``--json`` reports read through ``cli.main`` in the test process (``run_json``).

Every test makes its segments under its own unique prefix and removes them in finalizers, and
``doctor`` is always limited with ``--prefix`` so a parallel test's segments are never touched.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import posix_ipc
import pytest

from asgi_ipc import IPCChannelLayer, cli
from asgi_ipc.cli import removeipc_warning, space_warnings
from asgi_ipc.layout import CH_O_DEPTH, CH_O_USED, Layout
from asgi_ipc.segment import NAME_PREFIX, SHM_DIR

# Small segments: the tests need a few messages, not the 30+ MiB of the defaults.
SMALL = dict(message_memory=2**20, max_message_size=64 * 1024, channels=64, groups=16,
             group_members=64, waiters=8)


def unique_prefix() -> str:
    return f"tcli{os.getpid()}_{uuid.uuid4().hex[:8]}"


def shm_path(prefix: str) -> Path:
    return Path(SHM_DIR) / (NAME_PREFIX + prefix)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asgi_ipc", *args], capture_output=True,
                          text=True, timeout=60)


def run_json(*args: str, process: bool = False) -> dict:
    """The ``--json`` report of a command, from ``cli.main`` in this process: what it reports
    is the same code either way, and an interpreter start per report was most of this file's
    time. The command line as a process (exit codes, one-line errors, the tables, the console
    script) is run for real by ``run_cli``, and so is a report with ``process=True`` (one that
    must see the test process from outside, e.g. among a segment's attached pids)."""
    if process:
        done = run_cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*args, "--json"])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def assert_one_line_error(done: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _remove_quietly(prefix: str) -> None:
    try:
        posix_ipc.unlink_shared_memory("/" + NAME_PREFIX + prefix)
    except posix_ipc.ExistentialError:
        pass


@pytest.fixture
def make_layer():
    """Create layers (this process is their creator); closed and removed afterwards."""
    made: list[IPCChannelLayer] = []

    def make(**options) -> IPCChannelLayer:
        layer = IPCChannelLayer(prefix=unique_prefix(), create=True, **{**SMALL, **options})
        made.append(layer)
        return layer

    yield make
    for layer in made:
        layer.close()
        _remove_quietly(layer.prefix)


@pytest.fixture
def stale_prefix():
    """A segment whose creator was SIGKILLed: a dead creator and nobody mapping it."""
    prefix = unique_prefix()
    code = (
        "import sys, time\n"
        "from asgi_ipc import IPCChannelLayer\n"
        f"layer = IPCChannelLayer(prefix={prefix!r}, create=True, **{SMALL!r})\n"
        "layer.send('left.behind', {'n': 1})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert shm_path(prefix).exists()
        yield prefix
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdout.close()
        _remove_quietly(prefix)


@pytest.fixture
def foreign_file():
    """A file named like our segments that another program made (text, not our header)."""
    prefix = unique_prefix()
    path = shm_path(prefix)
    path.write_bytes(b"not a channel layer\n")
    yield prefix
    path.unlink(missing_ok=True)


def segment_record(report: dict, prefix: str) -> dict:
    """The survey's one record of ``prefix``; fails saying whether the file still exists (a
    segment missing from a survey was removed by something else: a doctor ``--clean`` without
    ``--prefix`` running in parallel sweeps every stale or invalid segment of the machine)."""
    records = [s for s in report["segments"] if s["prefix"] == prefix]
    assert len(records) == 1, (f"{len(records)} records of {prefix!r} in the survey; "
                               f"{shm_path(prefix)} exists: {shm_path(prefix).exists()}")
    return records[0]


# ===== stats =====================================================================================
def test_stats_json_reports_depth_counters_groups_and_memory(make_layer):
    layer = make_layer(capacity=2)
    layer.send("chat.a", {"n": 1})
    layer.send("chat.a", {"n": 2})
    with pytest.raises(layer.ChannelFull):
        layer.send("chat.a", {"n": 3})
    layer.send("other", {"n": 4})
    assert layer.receive(["chat.a"])[1] == {"n": 1}
    layer.group_add("room", "chat.a")
    layer.group_add("room", "other")
    layer.group_add("lobby", "other")

    data = run_json("stats", "--prefix", layer.prefix, process=True)

    assert data["prefix"] == layer.prefix
    assert data["segment"]["creator_pid"] == os.getpid()
    assert os.getpid() in data["segment"]["attached_pids"]
    channels = {c["channel"]: c for c in data["channels"]}
    assert set(channels) == {"chat.a", "other"}
    assert channels["chat.a"]["messages_pending"] == 1
    assert channels["chat.a"]["messages_count"] == 2
    assert channels["chat.a"]["messages_received"] == 1
    assert channels["chat.a"]["channel_full_count"] == 1
    assert channels["chat.a"]["messages_max_age"] >= 0
    assert channels["other"]["messages_pending"] == 1
    assert channels["other"]["messages_received"] == 0
    g = data["global"]
    assert g["messages_pending"] == 2
    assert g["channel_full_count"] == 1
    assert g["groups"] == 2 and g["group_members"] == 3
    assert 0 < g["memory_free_bytes"] < g["memory_bytes"] == SMALL["message_memory"]
    assert data["groups"] == {"lobby": 1, "room": 2}


def test_stats_table_for_people(make_layer):
    layer = make_layer()
    layer.send("http.request", {"path": "/"})
    layer.send("websocket.receive", {"text": "hi"})
    layer.group_add("chat-room", "websocket.send!abc")

    done = run_cli("stats", "--prefix", layer.prefix)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"layer {layer.prefix!r}" in out
    assert "2 queued" in out
    assert "CHANNEL" in out and "DEPTH" in out and "OLDEST" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["http.request"][1] == "1"  # depth
    assert rows["websocket.receive"][1] == "1"
    assert rows["chat-room"] == ["chat-room", "1"]
    assert "memory:" in out and "free of 1.0 MiB" in out


def test_stats_channel_filter_includes_unknown_channels_as_zero(make_layer):
    layer = make_layer()
    layer.send("a", {})
    layer.send("b", {})

    data = run_json("stats", "--prefix", layer.prefix, "--channel", "a", "--channel", "never.used")

    assert [c["channel"] for c in data["channels"]] == ["a", "never.used"]
    assert data["channels"][0]["messages_pending"] == 1
    assert data["channels"][1]["messages_pending"] == 0
    assert data["channels"][1]["messages_count"] == 0


def test_stats_leaves_the_segment_and_the_layer_working(make_layer):
    layer = make_layer()
    layer.send("q", {"n": 1})
    assert run_cli("stats", "--prefix", layer.prefix).returncode == 0
    assert shm_path(layer.prefix).exists()
    assert layer.receive(["q"]) == ("q", {"n": 1})


# ===== flush =====================================================================================
def test_flush_empties_queues_and_groups(make_layer):
    layer = make_layer()
    for n in range(3):
        layer.send("work", {"n": n})
    layer.group_add("room", "work")

    done = run_cli("flush", "--prefix", layer.prefix)

    assert done.returncode == 0, done.stderr
    assert "dropped 3 queued message(s) and 1 membership(s)" in done.stdout
    assert layer.receive(["work"]) == (None, None)
    assert layer.group_channels("room") == []
    data = run_json("stats", "--prefix", layer.prefix)
    assert data["global"]["messages_pending"] == 0
    assert data["groups"] == {}
    layer.send("work", {"n": "after"})  # the layer still works after a flush
    assert layer.receive(["work"]) == ("work", {"n": "after"})


# ===== errors ====================================================================================
@pytest.mark.parametrize("command", ["stats", "flush"])
def test_missing_segment_is_one_line_and_exit_1_and_creates_nothing(command):
    prefix = unique_prefix()
    done = run_cli(command, "--prefix", prefix)
    assert_one_line_error(done, 1, "no channel layer segment", repr(prefix))
    assert not shm_path(prefix).exists()


@pytest.mark.parametrize("args", [
    ["stats", "--prefix", "bad/prefix"],
    ["flush", "--prefix", "x" * 65],
    ["doctor", "--prefix", "has space"],
])
def test_bad_prefix_is_a_usage_error(args):
    assert_one_line_error(run_cli(*args), 2, "prefix", "is not usable")


@pytest.mark.parametrize("args, words", [
    (["stats", "--prefix", "p", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["stats"], ["--prefix"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["COMMAND"]),
])
def test_bad_flags_are_usage_errors(args, words):
    assert_one_line_error(run_cli(*args), 2, *words)


def test_bad_channel_name_is_a_usage_error(make_layer):
    layer = make_layer()
    done = run_cli("stats", "--prefix", layer.prefix, "--channel", "no spaces")
    assert_one_line_error(done, 2, "'no spaces'")


def test_foreign_segment_cannot_be_attached(foreign_file):
    done = run_cli("stats", "--prefix", foreign_file)
    assert_one_line_error(done, 1, foreign_file)
    assert shm_path(foreign_file).exists(), "a read-only tool must not remove anything"


# ===== doctor ====================================================================================
def test_doctor_lists_a_live_segment_as_in_use_and_checks_it(make_layer):
    layer = make_layer()
    layer.send("a", {})

    report = run_json("doctor", "--prefix", layer.prefix)

    record = segment_record(report, layer.prefix)
    assert record["state"] == "in use"
    assert record["creator_pid"] == os.getpid() and record["creator_alive"]
    assert os.getpid() in record["attached_pids"]
    assert record["mode"] == "0600"
    assert record["uid"] == os.getuid()
    assert record["size"] == shm_path(layer.prefix).stat().st_size
    assert record["problems"] == []
    assert record["removed"] is False
    assert report["shm"]["total_bytes"] > 0


def test_doctor_table_without_prefix_shows_every_segment(make_layer):
    layer = make_layer()
    done = run_cli("doctor")
    assert done.returncode in (0, 1), done.stderr  # others' segments may have problems
    line = next(line for line in done.stdout.splitlines()
                if line.startswith(NAME_PREFIX + layer.prefix + " "))
    assert line.rstrip().endswith("in use")
    assert f"{NAME_PREFIX}{layer.prefix}: in use (creator pid {os.getpid()} is running)" \
        in done.stdout


def test_doctor_reports_stale_and_clean_removes_only_it(make_layer, stale_prefix):
    live = make_layer()

    report = run_json("doctor", "--prefix", stale_prefix, "--prefix", live.prefix)
    stale = segment_record(report, stale_prefix)
    assert stale["state"] == "stale"
    assert "gone and no process maps it" in stale["verdict"]
    assert stale["attached_pids"] == [] and stale["removable"]
    assert not segment_record(report, live.prefix)["removable"]
    assert shm_path(stale_prefix).exists(), "without --clean nothing is removed"

    done = run_cli("doctor", "--clean", "--prefix", stale_prefix, "--prefix", live.prefix)
    assert done.returncode == 0, done.stderr
    assert f"removed: {NAME_PREFIX}{stale_prefix}" in done.stdout
    assert not shm_path(stale_prefix).exists()
    assert shm_path(live.prefix).exists()
    live.send("still", {"ok": True})
    assert live.receive(["still"]) == ("still", {"ok": True})


def test_doctor_text_suggests_clean_for_stale(stale_prefix):
    done = run_cli("doctor", "--prefix", stale_prefix)
    assert done.returncode == 0, done.stderr
    assert "stale" in done.stdout
    assert "asgi-ipc doctor --clean" in done.stdout


def test_doctor_reports_foreign_file_invalid_and_clean_removes_it(foreign_file):
    an_hour_ago = time.time() - 3600
    os.utime(shm_path(foreign_file), (an_hour_ago, an_hour_ago))
    report = run_json("doctor", "--prefix", foreign_file)
    record = segment_record(report, foreign_file)
    assert record["state"] == "invalid"
    assert record["verdict"].startswith("invalid: ")
    assert "bytes long" in record["verdict"]
    assert record["problems"] is None  # never attached to

    report = run_json("doctor", "--clean", "--prefix", foreign_file)
    assert report["removed"] == [NAME_PREFIX + foreign_file], segment_record(report, foreign_file)
    assert not shm_path(foreign_file).exists()


def test_doctor_keeps_a_just_made_invalid_file(foreign_file):
    # it might be a segment whose creator has not written the header yet
    report = run_json("doctor", "--clean", "--prefix", foreign_file)
    record = segment_record(report, foreign_file)
    assert record["state"] == "invalid" and not record["removable"]
    assert any("creating it right now" in note for note in record["notes"])
    assert report["removed"] == [] and shm_path(foreign_file).exists()


def test_doctor_keeps_an_invalid_file_that_a_process_maps(foreign_file):
    # a process of some other program holding the file mapped: never removed under it
    an_hour_ago = time.time() - 3600
    os.utime(shm_path(foreign_file), (an_hour_ago, an_hour_ago))
    code = (
        "import mmap, sys\n"
        f"f = open({str(shm_path(foreign_file))!r}, 'r+b')\n"
        "m = mmap.mmap(f.fileno(), 0)\n"
        "print('mapped', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "mapped"
        report = run_json("doctor", "--clean", "--prefix", foreign_file)
        record = segment_record(report, foreign_file)
        assert record["state"] == "invalid"
        assert record["attached_pids"] == [holder.pid]
        assert not record["removable"] and report["removed"] == []
        assert shm_path(foreign_file).exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()


def test_doctor_keeps_an_orphaned_segment_while_a_process_maps_it(stale_prefix):
    # the creator is dead, but this process still maps the segment (as a worker would)
    attached = IPCChannelLayer(prefix=stale_prefix, create=False, **SMALL)
    try:
        report = run_json("doctor", "--clean", "--prefix", stale_prefix)
        record = segment_record(report, stale_prefix)
        assert record["state"] == "orphaned"
        assert record["attached_pids"] == [os.getpid()]
        assert record["problems"] == []
        assert report["removed"] == [] and shm_path(stale_prefix).exists()
    finally:
        attached.close()
    assert shm_path(stale_prefix).exists(), "an attacher never removes the segment"
    report = run_json("doctor", "--clean", "--prefix", stale_prefix)
    assert report["removed"] == [NAME_PREFIX + stale_prefix]


def test_doctor_reports_an_inconsistent_segment_and_exits_1(make_layer):
    layer = make_layer()
    layer.send("victim", {"n": 1})
    # corrupt derived data: the queue depth of the only channel record says 7, one is linked
    layout = Layout(layer.sizes)
    with open(shm_path(layer.prefix), "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        try:
            [at] = [layout.channel(cid) for cid in range(SMALL["channels"])
                    if mm[layout.channel(cid) + CH_O_USED]]
            struct.pack_into("<I", mm, at + CH_O_DEPTH, 7)
        finally:
            mm.close()

    done = run_cli("doctor", "--prefix", layer.prefix)

    assert done.returncode == 1, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "inconsistent:" in line]
    assert "victim" in line and "depth 7" in line
    assert shm_path(layer.prefix).exists()


def test_doctor_with_no_matching_segment_says_so():
    done = run_cli("doctor", "--prefix", unique_prefix())
    assert done.returncode == 0, done.stderr
    assert f"no asgi_ipc segments in {SHM_DIR}" in done.stdout


@pytest.mark.skipif(os.getuid() != 0, reason="giving a segment to another user needs root")
def test_a_segment_of_another_user_is_listed_but_not_attached(make_layer):
    layer = make_layer()
    nobody = 65534
    os.chown(shm_path(layer.prefix), nobody, -1)

    report = run_json("doctor", "--prefix", layer.prefix)
    record = segment_record(report, layer.prefix)
    assert record["uid"] == nobody and record["state"] == "in use"
    assert record["problems"] is None
    assert any(f"belongs to uid {nobody}" in note for note in record["notes"])

    assert_one_line_error(run_cli("stats", "--prefix", layer.prefix), 1, f"uid {nobody}")


def test_console_script_is_this_main():
    from importlib.metadata import entry_points

    from asgi_ipc.cli import main

    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "asgi-ipc"]
    assert script.load() is main


# ===== environment warnings (pure decisions fed by statvfs / logind settings) ====================
def test_space_warnings():
    mib = 2**20
    assert space_warnings(1024 * mib, 900 * mib, 40 * mib) == []
    small = space_warnings(64 * mib, 60 * mib, 40 * mib)
    assert len(small) == 1 and "--shm-size" in small[0]
    full = space_warnings(1024 * mib, 30 * mib, 40 * mib)
    assert len(full) == 1 and "nearly full" in full[0]


def test_removeipc_warning_only_for_regular_users_under_logind():
    assert "RemoveIPC" in removeipc_warning(1000, 999, True, True, True)
    assert "this login session" in removeipc_warning(1000, 999, True, True, True)
    assert removeipc_warning(0, 999, True, True, True) is None
    assert removeipc_warning(998, 999, True, True, True) is None
    assert removeipc_warning(1000, 999, False, True, True) is None
    assert removeipc_warning(1000, 999, True, False, True) is None
