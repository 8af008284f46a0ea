"""group_send's fan-out in the Channels 4 layer: one segment entry per process is expanded into
the per-channel buffers in one pass; every member still gets each message once, in order, as
its own dict, and the per-channel bounds and cancellation rules hold as for single sends."""

from __future__ import annotations

import asyncio
import random

import pytest

pytest.importorskip("channels", reason="the Channels 4 layer needs the channels4 extra")

from .test_channels_api import make, nothing_within, run  # noqa: E402,F401  (fixture)


def test_fan_out_reaches_every_waiting_receiver_once_in_order(make):
    layer = make(capacity=50)
    rounds = 5

    async def main():
        specific = [await layer.new_channel() for _ in range(300)]
        plain = [f"fanout.plain{n}" for n in range(30)]
        members = specific + plain
        for name in members:
            await layer.group_add("room", name)
        got: dict[str, list[dict]] = {name: [] for name in members}

        async def consumer(name: str) -> None:
            for _ in range(rounds):
                got[name].append(await layer.receive(name))

        tasks = [asyncio.ensure_future(consumer(name)) for name in members]
        await asyncio.sleep(0.05)  # every consumer is waiting
        for r in range(rounds):
            await layer.group_send("room", {"round": r, "items": [r]})
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        for name in members:
            assert [m["round"] for m in got[name]] == list(range(rounds)), name
        # nothing more for anyone: all members watched at once, for longer than one by one did
        quiet = await asyncio.gather(*(nothing_within(layer, name, 0.05) for name in members))
        assert all(quiet), [name for name, ok in zip(members, quiet) if not ok]
        first = got[specific[0]][0]
        first["items"].append("changed")
        assert got[specific[1]][0] == {"round": 0, "items": [0]}, "members share one dict"

    run(main(), 30)


def test_fan_out_to_unread_members_keeps_their_newest(make):
    """Members nobody reads buffer a fan-out up to their capacity, dropping the oldest."""
    layer = make(capacity=3)

    async def main():
        read, *unread = [await layer.new_channel() for _ in range(20)]
        for name in (read, *unread):
            await layer.group_add("g", name)
        for n in range(8):
            await layer.group_send("g", {"n": n})
            assert await layer.receive(read) == {"n": n}  # pumps: the others are buffered
        for name in unread:
            assert [(await layer.receive(name))["n"] for _ in range(3)] == [5, 6, 7]
            assert await nothing_within(layer, name, 0.01)

    run(main())


def test_cancelled_receives_during_fan_out_lose_nothing(make):
    """Receivers cut short by ``wait_for`` at random moments while group sends arrive: each
    member receives every round exactly once."""
    layer = make(capacity=500)
    rounds = 60

    async def main():
        members = [await layer.new_channel() for _ in range(40)]
        for name in members:
            await layer.group_add("g", name)
        got: dict[str, list[int]] = {name: [] for name in members}

        async def receiver(name: str, stop: asyncio.Event) -> None:
            rng = random.Random(name)
            while not stop.is_set():
                try:
                    got[name].append((await asyncio.wait_for(
                        layer.receive(name), rng.uniform(0, 0.003)))["n"])
                except asyncio.TimeoutError:
                    pass
            while len(got[name]) < rounds:  # then drain what is left
                try:
                    got[name].append((await asyncio.wait_for(layer.receive(name), 2))["n"])
                except asyncio.TimeoutError:
                    return

        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(receiver(name, stop)) for name in members]
        for n in range(rounds):
            await layer.group_send("g", {"n": n})
            await asyncio.sleep(0.001)
        stop.set()
        await asyncio.gather(*tasks)
        for name in members:
            assert got[name] == list(range(rounds)), f"{name}: lost, duplicated or reordered"

    run(main(), 60)
