"""``RedisChannelLayer`` over two real servers against a model: random sequences of sends, group
operations and receives (one or several channels, on one or both shards) must agree with plain
per-channel FIFO queues and sets.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from asgi_ipc.names import non_local_name

SEND_NAMES = ["a", "b", "work.c", "c?xyz", "p!1", "p!2", "q!1"]
RECEIVE_NAMES = sorted({non_local_name(n) for n in SEND_NAMES})
GROUPS = ["g1", "g2"]
CAPACITY = 4


@pytest.fixture
def two_shard_layer(prefix, redis_server):
    from asgi_ipc.redis import RedisChannelLayer
    from benchmarks.redis_server import RedisServer

    with RedisServer() as second:
        hosts = [f"redis://127.0.0.1:{redis_server.port}/0", f"redis://127.0.0.1:{second.port}/0"]
        with RedisChannelLayer(hosts=hosts, prefix=prefix, capacity=CAPACITY, expiry=3600,
                               group_expiry=3600, receive_timeout=2.0) as layer:
            try:
                yield layer
            finally:
                layer.flush()  # the second server goes with its data; this empties the first


def test_layer_agrees_with_a_model(two_shard_layer):
    layer = two_shard_layer
    assert {layer._shard_of(k) for k in RECEIVE_NAMES} == set(layer._shards)  # both shards used

    class LayerModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            layer.flush()
            # key -> entries (full name, value, send id); entries of one group send to several
            # locals of one key may come in either order
            self.queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)
            self.groups: dict[str, set[str]] = collections.defaultdict(set)
            self.sends = 0

        @rule(name=st.sampled_from(SEND_NAMES), value=st.integers(0, 1000))
        def send(self, name, value):
            queue = self.queues[non_local_name(name)]
            self.sends += 1
            if len(queue) >= CAPACITY:
                with pytest.raises(layer.ChannelFull):
                    layer.send(name, {"v": value})
            else:
                layer.send(name, {"v": value})
                queue.append((name, value, self.sends))

        @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(SEND_NAMES))
        def group_add(self, group, name):
            layer.group_add(group, name)
            self.groups[group].add(name)

        @rule(group=st.sampled_from(GROUPS), name=st.sampled_from(SEND_NAMES))
        def group_discard(self, group, name):
            layer.group_discard(group, name)
            self.groups[group].discard(name)

        @rule(group=st.sampled_from(GROUPS), value=st.integers(0, 1000))
        def send_group(self, group, value):
            layer.send_group(group, {"v": value})
            self.sends += 1
            by_key = collections.defaultdict(list)
            for name in self.groups[group]:
                by_key[non_local_name(name)].append(name)
            for key, names in by_key.items():
                queue = self.queues[key]
                room = CAPACITY - len(queue)
                if room >= len(names):
                    queue.extend((name, value, self.sends) for name in names)
                else:  # which members of a shared key get the last places is not specified
                    queue.extend((name, value, -self.sends) for name in names[:room])

        @rule(names=st.lists(st.sampled_from(RECEIVE_NAMES), min_size=1, max_size=4, unique=True),
              block=st.booleans())
        def receive(self, names, block):
            channel, message = layer.receive(names, block=block and any(
                self.queues[n] for n in names))
            if not any(self.queues[n] for n in names):
                assert (channel, message) == (None, None)
                return
            assert channel is not None, f"nothing received from {names} though messages wait"
            queue = self.queues[non_local_name(channel)]
            head_send = queue[0][2]
            batch = [e for e in list(queue) if e[2] == head_send] if head_send > 0 else list(queue)
            match = [e for e in batch if (e[0], e[1]) == (channel, message["v"])]
            if head_send < 0:  # a capped group send: the layer chose which members got places
                match = [e for e in queue if e[2] == head_send and e[1] == message["v"]]
            assert match, f"{channel} {message} is not at the head of {list(queue)}"
            queue.remove(match[0])

        @invariant()
        def memberships_agree(self):
            for group in GROUPS:
                assert sorted(layer.group_channels(group)) == sorted(self.groups[group])

    run_state_machine_as_test(LayerModel, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None))
