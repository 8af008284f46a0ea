"""The ASGI 1 channel-layer contract (reference section 1), conformance-suite style.

Every case runs on the shared-memory layer (C fast path and pure Python) and on
``asgi_ipc.redis.RedisChannelLayer`` against a real ``redis-server``.
"""

from __future__ import annotations

import time

import pytest

from asgi_ipc import ArenaFull, ChannelFull, MessageTooLarge

pytestmark = pytest.mark.parametrize("impl", ["c", "pure", "redis"], indirect=True)


def test_send_recv(layer):
    layer.send("sr_test", {"value": "blue"})
    layer.send("sr_test", {"value": "green"})
    layer.send("sr_test", {"value": "yellow"})
    layer.send("sr_test2", {"value": "red"})
    got = [layer.receive(["sr_test"]) for _ in range(3)]
    assert [c for c, _ in got] == ["sr_test"] * 3
    assert [m["value"] for _, m in got] == ["blue", "green", "yellow"]  # one reader: in order
    assert layer.receive(["sr_test", "sr_test2"]) == ("sr_test2", {"value": "red"})
    assert layer.receive(["sr_test", "sr_test2"]) == (None, None)


def test_single_process_receive(layer):
    layer.send("spr_test!a", {"value": "blue"})
    assert layer.receive(["spr_test!"]) == ("spr_test!a", {"value": "blue"})
    layer.send("spr_test!b", {"value": "green"})
    assert layer.receive(["spr_test!"]) == ("spr_test!b", {"value": "green"})


def test_single_process_receive_error(layer):
    with pytest.raises(TypeError, match="spr_test!c"):
        layer.receive(["spr_test!c"])


def test_message_expiry(make_layer):
    layer = make_layer(expiry=0.2)
    layer.send("me_test", {"value": "blue"})
    time.sleep(0.25)
    assert layer.receive(["me_test"]) == (None, None)
    assert layer.channel_statistics("me_test")["messages_expired"] == 1


def test_new_channel_single_reader(layer):
    name = layer.new_channel("test.foo?")
    assert name.count("?") == 1 and not name.endswith("?") and name.startswith("test.foo?")
    assert layer.new_channel("test.foo?") != name
    layer.send(name, {"value": "blue"})
    assert layer.receive([name, layer.new_channel("test.bar?")]) == (name, {"value": "blue"})


@pytest.mark.parametrize("pattern", ["test!", "test.foo", "bad name?", 42])
def test_new_channel_failures(layer, pattern):
    with pytest.raises(TypeError):
        layer.new_channel(pattern)


def test_strings_round_trip_exactly(layer):
    message = {
        "a": "\u00e9\u4e2d text",
        "b": b"\x00\xff bytes",
        "c": {"nested": [b"x", "y", 1, -2**63, 2**63 - 1, 1.5, True, False, None]},
        "d": (1, 2),
        "e": b"",
        "f": "",
    }
    layer.send("str_test", message)
    _, got = layer.receive(["str_test"])
    assert got == {**message, "d": [1, 2]}
    assert type(got["b"]) is bytes and type(got["a"]) is str
    assert type(got["c"]["nested"][0]) is bytes and type(got["c"]["nested"][1]) is str


def test_groups(layer):
    layer.group_add("tgroup", "tg_test")
    layer.group_add("tgroup", "tg_test2")
    layer.group_add("tgroup", "tg_test3")
    layer.group_discard("tgroup", "tg_test")
    layer.send_group("tgroup", {"value": "orange"})
    assert layer.receive(["tg_test"]) == (None, None)
    assert layer.receive(["tg_test2"]) == ("tg_test2", {"value": "orange"})
    assert layer.receive(["tg_test3"]) == ("tg_test3", {"value": "orange"})


def test_groups_process(layer):
    for member in ("tgp!test", "tgp!test2", "tgp!test3"):
        layer.group_add("tgroup", member)
    layer.group_discard("tgroup", "tgp!test")
    layer.send_group("tgroup", {"value": "orange"})
    got = {layer.receive(["tgp!"])[0], layer.receive(["tgp!"])[0]}
    assert got == {"tgp!test2", "tgp!test3"}
    assert layer.receive(["tgp!"]) == (None, None)


def test_group_channels(layer):
    layer.group_add("tgroup", "tg_test")
    layer.group_add("tgroup", "tg_test2")
    layer.group_add("tgroup", "tg_test")  # idempotent
    assert sorted(layer.group_channels("tgroup")) == ["tg_test", "tg_test2"]
    layer.group_discard("tgroup", "tg_test")
    layer.group_discard("tgroup", "never_added")
    assert layer.group_channels("tgroup") == ["tg_test2"]
    assert layer.group_channels("nogroup") == []


def test_flush(layer):
    layer.send("fl_test", {})
    layer.flush()
    assert layer.receive(["fl_test"]) == (None, None)


def test_flush_groups(layer):
    layer.group_add("tgroup", "fg_test")
    layer.send_group("tgroup", {"value": "blue"})
    layer.flush()
    assert layer.receive(["fg_test"]) == (None, None)
    assert layer.group_channels("tgroup") == []
    layer.send_group("tgroup", {"value": "blue"})
    assert layer.receive(["fg_test"]) == (None, None)
    assert layer.check() == []


def test_group_expiry(make_layer):
    layer = make_layer(group_expiry=0.2)
    assert layer.group_expiry == 0.2
    layer.group_add("tgroup", "ge_test")
    time.sleep(0.25)
    layer.send_group("tgroup", {"value": "blue"})
    assert layer.receive(["ge_test"]) == (None, None)
    assert layer.group_channels("tgroup") == []


def test_group_add_refreshes_expiry(make_layer):
    layer = make_layer(group_expiry=0.3)
    layer.group_add("g", "c")
    time.sleep(0.2)
    layer.group_add("g", "c")
    time.sleep(0.2)
    assert layer.group_channels("g") == ["c"]


def test_capacity(layer):
    for _ in range(5):
        layer.send("cap_test", {"hey": "there"})
    with pytest.raises(layer.ChannelFull) as info:
        layer.send("cap_test", {"hey": "there"})
    assert not isinstance(info.value, ArenaFull)
    assert layer.channel_statistics("cap_test")["channel_full_count"] == 1


def test_capacity_process_shares_the_non_local_budget(layer):
    for i in range(5):
        layer.send(f"capp!{i}", {"hey": "there"})
    with pytest.raises(ChannelFull):
        layer.send("capp!final", {"hey": "there"})


def test_capacity_group_never_raises(layer):
    layer.group_add("tgroup", "cg_test")
    for _ in range(10):
        layer.send_group("tgroup", {"hey": "there"})
    assert layer.global_statistics()["group_drops"] == 5


def test_channel_capacity_patterns_first_match_wins(make_layer):
    import re

    layer = make_layer(capacity=42, channel_capacity={
        "http.response!*": 3, re.compile(r"^http\.request$"): 2, "http.*": 7})
    assert layer.get_capacity("http.response!") == 3
    assert layer.get_capacity("http.request") == 2
    assert layer.get_capacity("http.other") == 7
    assert layer.get_capacity("other") == 42
    for _ in range(2):
        layer.send("http.request", {})
    with pytest.raises(ChannelFull):
        layer.send("http.request", {})


def test_exceptions_are_layer_attributes(layer):
    assert issubclass(layer.ChannelFull, Exception)
    assert issubclass(layer.MessageTooLarge, Exception)
    assert issubclass(layer.ArenaFull, layer.ChannelFull)


def test_message_alteration_after_send(layer):
    message = {"value": [1, 2, 3], "inner": {"a": 1}}
    layer.send("mas_test", message)
    message["value"][0] = 9
    message["inner"]["a"] = 9
    assert layer.receive(["mas_test"])[1] == {"value": [1, 2, 3], "inner": {"a": 1}}


def test_extensions(layer):
    assert set(layer.extensions) == {"groups", "flush", "statistics", "twisted", "asyncio"}


def test_message_too_large(make_layer):
    layer = make_layer(max_message_size=2048)
    with pytest.raises(MessageTooLarge, match="2048"):
        layer.send("big", {"body": b"x" * 4096})
    with pytest.raises(MessageTooLarge):
        layer.send_group("g", {"body": b"x" * 4096})
    layer.send("big", {"body": b"x" * 1000})
    assert layer.receive(["big"])[1]["body"] == b"x" * 1000
    assert layer.global_statistics()["message_too_large_count"] == 2


def test_one_megabyte_message_is_accepted_by_default(make_layer):
    layer = make_layer(message_memory=8 * 2**20, max_message_size=2**20 + 4096)
    body = bytes(range(256)) * 4096  # 1 MiB
    layer.send("mb", {"body": body})
    assert layer.receive(["mb"])[1]["body"] == body


@pytest.mark.parametrize("bad, fragment", [
    ([1, 2], "must be a dict"),
    ("text", "must be a dict"),
    ({"a": {1, 2}}, "message['a'] is a set"),
    ({"a": [1, {"b": object()}]}, "message['a'][1]['b']"),
    ({"a": 2**64}, "outside the signed 64-bit range"),
    ({1: "x"}, "keys must be str"),
])
def test_unserialisable_messages_say_which_value(layer, bad, fragment):
    with pytest.raises(TypeError) as info:
        layer.send("ok", bad)
    assert fragment in str(info.value)
    assert layer.receive(["ok"]) == (None, None)  # nothing half-sent


@pytest.mark.parametrize("name", ["", "a" * 100, "bad name", "caf\u00e9", "one?two?three",
                                  "four!five!six", "some+other!thing", "ends?", b"bytes", None])
def test_invalid_channel_names_raise_type_error_naming_them(layer, name):
    with pytest.raises(TypeError) as info:
        layer.send(name, {})
    if isinstance(name, str) and name:
        assert repr(name)[:20] in str(info.value)


@pytest.mark.parametrize("name", ["bad?", "has!", "sp ace", "x" * 100])
def test_invalid_group_names(layer, name):
    with pytest.raises(TypeError):
        layer.group_add(name, "chan")


@pytest.mark.parametrize("channels", ["http.request", [], None, ("a",)])
def test_receive_needs_a_non_empty_list(layer, channels):
    if channels == ("a",):
        assert layer.receive(channels) == (None, None)  # a tuple is accepted as a list
        return
    with pytest.raises(TypeError):
        layer.receive(channels)


def test_valid_names(layer):
    for name in ["http.request", "http.response!ab0def", "http.request.body?ab0def",
                 "0.a_b-c?d_e-f.1", "x" * 99]:
        layer.send(name, {"n": name})
    assert layer.receive(["0.a_b-c?d_e-f.1"]) == ("0.a_b-c?d_e-f.1", {"n": "0.a_b-c?d_e-f.1"})


def test_statistics_keys(layer):
    layer.send("st", {})
    layer.send("st", {})
    layer.receive(["st"])
    stats = layer.channel_statistics("st")
    for key in ("messages_count", "messages_count_per_second", "messages_pending",
                "messages_max_age", "channel_full_count", "channel_full_count_per_second"):
        assert key in stats
    assert stats["messages_count"] == 2 and stats["messages_pending"] == 1
    assert stats["messages_count_per_second"] > 0 and stats["messages_max_age"] >= 0
    glob = layer.global_statistics()
    for key in ("messages_count", "messages_count_per_second", "messages_pending",
                "messages_max_age", "channel_full_count", "channel_full_count_per_second"):
        assert key in glob
    assert glob["messages_count"] >= 2 and glob["messages_pending"] == 1


def test_context_manager_and_creator_unlinks(prefix, impl):
    import os

    if impl == "redis":
        pytest.skip("segment ownership is a shared-memory matter; test_redis_layer covers close")

    from asgi_ipc import IPCChannelLayer

    with IPCChannelLayer(prefix=prefix, message_memory=2**20, max_message_size=64 * 1024) as a:
        assert a.owner
        with IPCChannelLayer(prefix=prefix, create=False, message_memory=2**20,
                             max_message_size=64 * 1024) as b:
            assert not b.owner
            b.send("x", {"from": "b"})
        assert os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")  # an attacher never unlinks
        assert a.receive(["x"]) == ("x", {"from": "b"})
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")
