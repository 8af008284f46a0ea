"""The Redis layer's pure rules: the shard ring, host settings, key names and the entry format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ipc.redis_shards import (
    Keys,
    decode_entry,
    encode_entry,
    normalise_hosts,
    redact,
    shard_index,
)

NAMES = [f"chan.{i}" for i in range(2000)]


def test_one_host_takes_everything():
    assert {shard_index(name, 1) for name in NAMES} == {0}


@pytest.mark.parametrize("count", [2, 3, 5])
def test_names_spread_over_every_host(count):
    spread = [sum(1 for n in NAMES if shard_index(n, count) == i) for i in range(count)]
    assert all(share > len(NAMES) / count / 2 for share in spread), spread


def test_adding_a_host_moves_only_one_slice_of_the_ring():
    """Consistent hashing: going from 3 to 4 hosts keeps most names where they were (a modulo
    hash would move three quarters of them)."""
    moved = sum(1 for n in NAMES if shard_index(n, 3) != shard_index(n, 4))
    assert moved < len(NAMES) * 0.55, moved


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=99),
       st.integers(min_value=1, max_value=16))
def test_shard_index_is_in_range_and_stable(name, count):
    index = shard_index(name, count)
    assert 0 <= index < count and index == shard_index(name, count)


def test_hosts_default_and_forms():
    assert normalise_hosts(None) == ["redis://127.0.0.1:6379/0"]
    assert normalise_hosts([("10.0.0.1", 6380), "rediss://:pw@h:6390/2", "unix:///tmp/r.sock"]) == [
        "redis://10.0.0.1:6380/0", "rediss://:pw@h:6390/2", "unix:///tmp/r.sock"]


@pytest.mark.parametrize("hosts, error, fragment", [
    ("redis://h:6379", TypeError, "use ['redis://h:6379']"),
    ([], TypeError, "non-empty list"),
    (["http://h:6379"], ValueError, "redis://, rediss://"),
    ([("h", "6379")], TypeError, "(host, port) pair"),
    (["redis://h:1", "redis://h:1"], ValueError, "twice"),
])
def test_bad_hosts_say_what_to_do(hosts, error, fragment):
    with pytest.raises(error) as info:
        normalise_hosts(hosts)
    assert fragment in str(info.value)


def test_passwords_never_reach_messages():
    assert redact("rediss://:s3cret@h:6390/0") == "rediss://:***@h:6390/0"
    assert redact("redis://user:s3cret@h/0") == "redis://user:***@h/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    with pytest.raises(ValueError) as info:
        normalise_hosts(["http://:s3cret@h"])
    assert "s3cret" not in str(info.value)


def test_keys_of_a_prefix():
    keys = Keys("site")
    assert keys.queue("http.response!") == "site:q:http.response!"
    assert keys.channel_of_queue(b"site:q:http.response!") == "http.response!"
    assert keys.group_of_key(keys.group("room")) == "room"
    assert keys.stats == "site:stats" and keys.pattern == "site:*"


@given(st.integers(min_value=0, max_value=2**53), st.integers(min_value=0, max_value=2**53),
       st.binary(max_size=64))
def test_entries_round_trip_whatever_the_payload_holds(deadline, sent, payload):
    entry = encode_entry(deadline, sent, "reply!ab c"[:8], payload)
    assert decode_entry(entry) == (deadline, sent, "reply!ab", payload)
