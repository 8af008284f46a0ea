"""``procman.worker.Supervision``: what a supervised worker adds to django_glue's loop, in memory.

Driven with a real heartbeat pipe and a stand-in for the loop (its ``handled`` count and its
``request_stop``); the real loop under a real supervisor is covered end to end by test_run.py
(SIGTERM, --max-requests, a hung worker, 502 on death).
"""

from __future__ import annotations

import os

from procman.heartbeat import HeartbeatReader, HeartbeatSender
from procman.worker import Supervision, parse_args


class Loop:
    """What :meth:`Supervision.after_turn` sees of ``django_glue.worker.Worker``."""

    def __init__(self) -> None:
        self.handled = 0
        self.stops: list[bool] = []

    def request_stop(self, wake: bool = True) -> None:
        self.stops.append(wake)


def pipe_sender() -> tuple[HeartbeatSender, HeartbeatReader]:
    read, write = os.pipe()
    return HeartbeatSender(write, interval=0.0), HeartbeatReader(read)


def test_supervised_worker_beats_each_turn_and_asks_once_to_retire():
    beats, reader = pipe_sender()
    try:
        supervision, loop = Supervision(beats, limit=2), Loop()
        for handled in (0, 1, 2, 2, 3):
            loop.handled = handled
            supervision.after_turn(loop)
        events = [(e.kind, e.requests) for e in reader.read()]
        assert events == [("beat", 0), ("beat", 1), ("retire", None), ("beat", 2), ("beat", 2), ("beat", 3)]
        assert loop.stops == [] and supervision.status == 0  # it serves on until replaced
    finally:
        reader.close()
        os.close(beats.fd)


def test_unsupervised_worker_exits_0_at_the_limit(capsys):
    supervision, loop = Supervision(HeartbeatSender(None), limit=1), Loop()
    supervision.after_turn(loop)
    assert loop.stops == []
    loop.handled = 1
    supervision.after_turn(loop)
    assert loop.stops == [False] and supervision.status == 0
    assert "handled 1 messages (--max-requests): exiting" in capsys.readouterr().out


def test_supervisor_gone_stops_the_loop_with_status_1(capsys):
    beats, reader = pipe_sender()
    reader.close()
    try:
        supervision, loop = Supervision(beats, limit=0), Loop()
        supervision.after_turn(loop)
        assert loop.stops == [False] and supervision.status == 1
        assert "supervisor gone: exiting" in capsys.readouterr().out
    finally:
        os.close(beats.fd)


def test_parse_args_keeps_its_command_line():
    args = parse_args(["--settings", "mysite.settings", "--only-channels", "http.*", "--max-requests", "5"])
    assert (args.settings, args.alias, args.only_channels, args.exclude_channels) == (
        "mysite.settings", "default", ["http.*"], [])
    assert (args.max_requests, args.max_requests_jitter) == (5, 0)
