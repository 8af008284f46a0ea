"""The shared log stream and the heartbeat pipe protocol."""

import io
import os
import time

from procman.heartbeat import HeartbeatReader, HeartbeatSender
from procman.logstream import LineSplitter, LogStream


def test_prefix_and_alignment_without_colour():
    out = io.StringIO()
    log = LogStream(out, colour=False, clock=lambda: time.struct_time((2026, 1, 1, 12, 3, 4, 0, 1, 0)))
    log.reserve("interface.1")
    log.line("worker.1", "hello\n")
    log.info("ready")
    assert out.getvalue().splitlines() == ["12:03:04 worker.1    | hello", "12:03:04 procman     | ready"]


def test_colour_per_process():
    out = io.StringIO()
    log = LogStream(out, colour=True)
    log.line("worker.1", "a")
    log.line("worker.2", "b")
    first, second = out.getvalue().splitlines()
    assert first.startswith("\x1b[") and first.split("m", 1)[0] != second.split("m", 1)[0]


def test_colour_off_when_not_a_tty():
    assert LogStream(io.StringIO()).colour is False


def test_line_splitter_joins_partial_reads_and_cuts_huge_lines():
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r\nthree") == ["two"]
    assert splitter.flush() == ["three"]
    assert [len(x) for x in splitter.feed(b"x" * 40000)] == [16384, 16384]


def test_heartbeat_roundtrip_and_supervisor_gone():
    r, w = os.pipe()
    sender, reader = HeartbeatSender(w, interval=0), HeartbeatReader(r)
    assert sender.ready() and sender.beat(7) and sender.beat() and sender.retire("max-requests")
    sender.boot_error("ImportError: x\ny")
    os.write(w, b"garbage line\n")
    events = reader.read()
    assert [(e.kind, e.requests, e.text) for e in events] == [
        ("ready", None, ""), ("beat", 7, ""), ("beat", None, ""), ("retire", None, "max-requests"),
        ("booterror", None, "ImportError: x y"),
    ]
    reader.close()
    assert sender.beat(8, force=True) is False and sender.supervisor_alive is False
    os.close(w)


def test_beats_are_rate_limited_and_unsupervised_sender_is_a_noop():
    r, w = os.pipe()
    sender, reader = HeartbeatSender(w, interval=60), HeartbeatReader(r)
    sender.ready()
    for n in range(100):
        sender.beat(n)
    assert [e.kind for e in reader.read()] == ["ready"]
    reader.close()
    os.close(w)
    alone = HeartbeatSender(None)
    assert alone.ready() and alone.beat(1) and not alone.supervised
