"""The Channels 4 layer across real processes: shared normal channels, specific channels read
only by their process, group_send to members in several processes, fork."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue

import pytest

pytest.importorskip("channels", reason="the Channels 4 layer needs 'channels>=4'")

from asgi_ipc.segment import SHM_DIR  # noqa: E402

from . import channels_workers as workers  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def layer(prefix):
    """The test process's layer; the segment must be gone once it and the children left."""
    layer = workers.make(prefix, capacity=10000)
    yield layer
    layer.close_now()
    assert not os.path.exists(f"{SHM_DIR}/asgi_ipc.{prefix}"), "the last process out left it"


@pytest.fixture
def start():
    """Start spawn processes; every one is joined (or killed) at the end."""
    procs = []

    def start_(target, *args):
        proc = SPAWN.Process(target=target, args=args, daemon=True)
        proc.start()
        procs.append(proc)
        return proc

    yield start_
    for proc in procs:
        proc.join(20)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
            pytest.fail(f"process {proc.pid} did not finish")
        assert proc.exitcode == 0, f"process {proc.pid} exited with {proc.exitcode}"


def get(results, timeout: float = 30):
    try:
        return results.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no report from a child process within {timeout} s")


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_consumer_processes_share_a_normal_channel_without_duplicates(layer, start):
    """Three consumer processes on one channel, their receives often cancelled by wait_for:
    every message is received exactly once."""
    results = SPAWN.Queue()
    consumers, total = 3, 3000
    for _ in range(consumers):
        start(workers.consume, layer.prefix, "work", results, 60.0, 0.003)
    assert [get(results)[0] for _ in range(consumers)] == ["ready"] * consumers

    async def produce():
        for n in range(total):
            await layer.send("work", {"id": n})
            if n % 50 == 0:
                await asyncio.sleep(0.001)
        for _ in range(consumers):
            await layer.send("work", {"stop": True})

    run(produce())
    reports = [get(results) for _ in range(consumers)]

    async def left_over() -> list[int]:
        # A message taken for a receive cancelled at that moment, when no other receive of its
        # process waits, goes back to the segment's tail: possibly behind the stop messages.
        # Each consumer closed its layer (giving such messages back) before it reported, so
        # what is left is in the segment now: a short wait for the next one is enough.
        ids = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive("work"), 0.3)
            except asyncio.TimeoutError:
                return ids
            if not message.get("stop"):
                ids.append(message["id"])

    received = [n for _pid, ids in reports for n in ids] + run(left_over())
    duplicates = len(received) - len(set(received))
    assert duplicates == 0, f"{duplicates} messages were delivered twice"
    assert sorted(received) == list(range(total)), f"lost {total - len(set(received))}"
    shares = sorted(len(ids) for _pid, ids in reports)
    assert shares[-2] > 0, f"one process took everything: {shares}"


def test_specific_channels_are_read_by_their_process_only(layer, start):
    results = SPAWN.Queue()
    echoes = 3
    for _ in range(echoes):
        start(workers.echo, layer.prefix, results, 30.0)
    names = [get(results)[1] for _ in range(echoes)]
    assert len({name.split("!")[0] for name in names}) == echoes, "client prefixes repeat"

    async def main():
        reply = await layer.new_channel()
        for n in range(60):
            await layer.send(names[n % echoes], {"id": n, "reply": reply})
        answers = [await asyncio.wait_for(layer.receive(reply), 10) for _ in range(60)]
        for name in names:
            await layer.send(name, {"stop": True})
        return answers

    answers = run(main())
    assert sorted(a["id"] for a in answers) == list(range(60))
    by_pid: dict[int, set[int]] = {}
    for answer in answers:
        by_pid.setdefault(answer["pid"], set()).add(answer["id"] % echoes)
    assert len(by_pid) == echoes
    assert all(len(residues) == 1 for residues in by_pid.values()), \
        "a process answered for another process's channel"


def test_group_send_reaches_members_in_three_processes(layer, start):
    results = SPAWN.Queue()
    members, messages = 3, 40
    for _ in range(members):
        start(workers.member, layer.prefix, "room", messages, results, 15.0)
    channels = [name for _ in range(members) for name in get(results)[1]]

    async def main():
        for n in range(messages):
            await layer.group_send("room", {"id": n})

    run(main())
    reports = dict(get(results) for _ in range(2 * members))
    assert sorted(reports) == sorted(channels)
    for name, ids in reports.items():
        assert ids == list(range(messages)), f"{name} got {len(ids)} of {messages}"


def _forked_child(layer, parent_channel: str, child_report, done) -> None:
    async def main():
        mine = await layer.new_channel()
        child_report.put(mine)
        # the parent's channel is not ours: only the parent may read it
        message = await asyncio.wait_for(layer.receive(mine), 10)
        child_report.put(message)
        await layer.send(parent_channel, {"from": "child"})
        done.wait(10)

    asyncio.run(main())
    layer.close_now()


def test_fork_gets_its_own_client_prefix_and_no_cross_talk(layer):
    fork = multiprocessing.get_context("fork")
    child_report, done = fork.Queue(), fork.Event()

    async def before():
        return await layer.new_channel()

    parent_channel = run(before())
    proc = fork.Process(target=_forked_child, args=(layer, parent_channel, child_report, done))
    proc.start()
    try:
        child_channel = get(child_report)
        assert child_channel.split("!")[0] != parent_channel.split("!")[0]

        async def main():
            await layer.send(child_channel, {"to": "child"})
            assert get(child_report) == {"to": "child"}
            assert await asyncio.wait_for(layer.receive(parent_channel), 10) == {"from": "child"}

        run(main())
    finally:
        done.set()
        proc.join(15)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0


def test_channels_consumers_in_two_processes_chat_through_the_layer(layer, start):
    """The Channels tutorial's shape: consumers in two processes, each with its own specific
    channel, in one group; a line sent by one reaches both sockets."""
    results = SPAWN.Queue()
    commands = {name: SPAWN.Queue() for name in ("alice", "bob")}
    for name, queue_ in commands.items():
        start(workers.chat, layer.prefix, name, results, queue_, 20.0)
    assert sorted(get(results) for _ in commands) == [("alice", "joined"), ("bob", "joined")]
    assert len(layer._process_for().segment.group_channels("room")) == 2
    commands["alice"].put("say")
    for queue_ in commands.values():
        queue_.put("read")
    got = sorted(get(results) for _ in commands)
    assert got == [("alice", {"text": "hello from alice"}), ("bob", {"text": "hello from alice"})]
    for queue_ in commands.values():
        queue_.put("close")
    assert sorted(get(results) for _ in commands) == [("alice", "closed"), ("bob", "closed")]
    assert layer._process_for().segment.group_channels("room") == []
