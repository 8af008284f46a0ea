"""Cost per operation is O(message): independent of queued messages, channels and members.

Measured as the number of Python lines executed inside ``asgi_ipc`` for one send + receive,
which is deterministic (no timing). A layer that (de)serialises whole tables or walks queues,
like asgi_ipc 1.x did, grows with the state and fails these by orders of magnitude.
"""

from __future__ import annotations

from tests.asgi_ipc.tracing import trace_lines

MESSAGE = {"path": "/x", "headers": [[b"host", b"example.com"]], "body": b"x" * 900}


def lines_executed(operation) -> int:
    lines = [0]
    trace_lines(operation, lambda n: lines.__setitem__(0, n))
    return lines[0]


def pair_cost(layer) -> int:
    def pair():
        layer.send("measured", MESSAGE)
        assert layer.receive(["measured"])[0] == "measured"

    pair()  # warm caches
    return max(lines_executed(pair) for _ in range(5))


def test_cost_does_not_grow_with_queued_messages(make_layer):
    layer = make_layer(capacity=20000, message_memory=32 * 2**20, channels=1024)
    for _ in range(10):
        layer.send("measured", MESSAGE)
    small = pair_cost(layer)
    for _ in range(10000):
        layer.send("measured", MESSAGE)
    large = pair_cost(layer)
    assert large <= small * 1.5, f"{small} lines with 10 queued, {large} with 10,010"


def test_cost_does_not_grow_with_channels_or_members(make_layer):
    layer = make_layer(capacity=100, message_memory=32 * 2**20, channels=4096,
                       group_members=8192, groups=512)
    small = pair_cost(layer)
    for i in range(3000):
        layer.send(f"other{i}", {"n": i})
        layer.group_add(f"g{i % 500}", f"other{i}")
    large = pair_cost(layer)
    assert large <= small * 1.5, f"{small} lines with 1 channel, {large} with 3,000"


def test_group_send_cost_is_per_destination_process(make_layer):
    """1,000 members behind one ``prefix!`` cost about what 10 do: one fan-out entry."""
    layer = make_layer(capacity=100, message_memory=32 * 2**20, group_members=4096)
    for i in range(10):
        layer.group_add("small", f"ifc!m{i}")
    for i in range(1000):
        layer.group_add("large", f"ifc!m{i}")
    small = lines_executed(lambda: layer.send_group("small", MESSAGE))
    large = lines_executed(lambda: layer.send_group("large", MESSAGE))
    # group_channels-style membership walk is O(members) but a few lines each, not a send each
    assert large < small + 20 * 1000, f"{small} lines for 10 members, {large} for 1,000"
    layer.flush()
