"""kill -9 torture: producers and consumers killed at random moments, many times.

Processes hammer one segment (sends, blocking receives, group sends to 100 members, group
changes) while the test SIGKILLs random ones every few milliseconds and starts replacements.
Afterwards: no message was delivered twice, nobody stayed blocked (every process uses a 3 s
lock timeout, so a wedged lock would surface as ``LockTimeout`` in the survivors and in the
final checks), and the segment passes the consistency check.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest

from asgi_ipc import ChannelFull, IPCChannelLayer
from asgi_ipc.lock import recoveries

CTX = multiprocessing.get_context("fork")
SETTINGS = dict(expiry=1.0, message_memory=8 * 2**20, channels=256, groups=16, group_members=512,
                max_message_size=64 * 1024, capacity=200, lock_timeout=3.0, receive_timeout=0.5)


def producer(prefix: str, tag: str) -> None:
    layer = IPCChannelLayer(prefix=prefix, create=False, **SETTINGS)
    rng = random.Random(tag)
    for seq in range(10**9):
        ident = f"{tag}-{seq:07d}"
        choice = rng.random()
        try:
            if choice < 0.6:
                layer.send("work", {"id": ident, "pad": b"x" * rng.randrange(2000)})
            elif choice < 0.8:
                layer.send(f"proc!{rng.randrange(8)}", {"id": ident})
            elif choice < 0.9:
                layer.send_group("room", {"id": ident})
            else:
                member = f"proc!m{rng.randrange(200)}"
                (layer.group_add if rng.random() < 0.7 else layer.group_discard)("room", member)
        except ChannelFull:
            time.sleep(0.001)


def consumer(prefix: str, log_path: str, channels: list[str]) -> None:
    layer = IPCChannelLayer(prefix=prefix, create=False, **SETTINGS)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while True:
        channel, message = layer.receive(channels, block=True)
        if channel is not None:
            os.write(fd, f"{channel} {message['id']}\n".encode())


def read_log(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read().decode()
    except FileNotFoundError:
        return []
    lines = data.split("\n")
    return [line for line in lines[:-1] if line]  # the last piece may be a torn write


#: The torture runs as independent rounds (one test item each, so ``pytest -n 4`` spreads them),
#: each with its own seed, processes and segment; together they kill ``ROUNDS * KILLS`` times.
ROUNDS = 3
KILLS = 40


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_torture(make_layer, tmp_path, round_):
    layer = make_layer(**SETTINGS)
    prefix = layer.prefix
    for i in range(100):
        layer.group_add("room", f"plain{i}" if i < 50 else f"proc!m{i}")
    rng = random.Random(99 + round_)
    logs: list[str] = []
    procs: dict[int, tuple[str, CTX.Process]] = {}

    def start(kind: str) -> None:
        if kind == "producer":
            p = CTX.Process(target=producer, args=(prefix, f"p{len(logs)}{rng.randrange(10**6)}"))
        else:
            log = str(tmp_path / f"c{len(logs)}.log")
            logs.append(log)
            channels = ["work", "proc!"] if rng.random() < 0.5 else ["proc!", "work"]
            p = CTX.Process(target=consumer, args=(prefix, log, channels))
        p.start()
        procs[p.pid] = (kind, p)

    for kind in ["producer"] * 2 + ["consumer"] * 2:
        start(kind)
    kills = 0
    deadline = time.monotonic() + 45  # a cap for very slow machines; normally KILLS kills end it
    try:
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.002, 0.03))
            pid = rng.choice(list(procs))
            kind, proc = procs.pop(pid)
            os.kill(pid, signal.SIGKILL)
            proc.join(5)
            assert proc.exitcode == -signal.SIGKILL, f"{kind} died on its own: {proc.exitcode}"
            kills += 1
            start(kind)
            # the test process itself must never be blocked by a dead holder
            try:
                layer.send("probe", {"id": "probe"})
                assert layer.receive(["probe"])[0] == "probe"
            except ChannelFull:  # a full arena is fine here; being blocked is not
                pass
        # every survivor must still be alive (none died of LockTimeout or SegmentCorrupt)
        for kind, proc in procs.values():
            assert proc.is_alive(), f"a {kind} died: exit code {proc.exitcode}"
    finally:
        for _, proc in procs.values():
            proc.kill()
            proc.join(5)
    assert layer.check() == []
    seen: dict[str, int] = {}
    for log in logs:
        for line in read_log(log):
            seen[line] = seen.get(line, 0) + 1
    for _ in range(100000):
        channel, message = layer.receive(["work", "proc!"] + [f"plain{i}" for i in range(50)])
        if channel is None:
            break
        line = f"{channel} {message['id']}"
        seen[line] = seen.get(line, 0) + 1
    duplicates = {line: n for line, n in seen.items() if n > 1}
    assert not duplicates, f"delivered twice: {list(duplicates)[:5]}"
    assert kills >= KILLS // 3, f"only {kills} kills before the time cap"
    assert len(seen) > 1000, "the processes hardly worked; the torture proved nothing"
    assert layer.check() == []
    print(f"\n{kills} kills, {len(seen)} deliveries, "
          f"{recoveries(layer._a().segment.mm)} crash repairs")
