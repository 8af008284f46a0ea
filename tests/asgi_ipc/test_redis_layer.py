"""``RedisChannelLayer`` beyond the shared conformance suite: sharding over two real servers,
several processes on one channel, expiry, capacity, groups, flush, statistics, restarts, TLS.

Every server is a real ``redis-server`` started by the fixtures on a free loopback port.
"""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time

import pytest
import redis

from asgi_ipc import ArenaFull, ChannelFull
from asgi_ipc.redis import RedisChannelLayer, RedisUnavailable
from asgi_ipc.redis_shards import shard_index

from .test_delivery import _ctx_switches

CTX = multiprocessing.get_context("fork")


def _url(server) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


@pytest.fixture(scope="module")
def second_redis_server(redis_server):
    from benchmarks.redis_server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def sharded(make_redis_layer, redis_server, second_redis_server):
    """A layer over two servers, plus a raw client on each to look at where keys went."""
    hosts = [_url(redis_server), _url(second_redis_server)]
    layer = make_redis_layer(hosts=hosts, capacity=50)
    clients = [redis.Redis.from_url(url) for url in hosts]
    yield layer, clients
    for client in clients:
        client.close()


def _names_on_each_shard(prefix: str) -> tuple[str, str]:
    """Two channel names of ``prefix`` that hash to shard 0 and shard 1 of two."""
    names = {}
    for i in range(100):
        names.setdefault(shard_index(f"{prefix}{i}", 2), f"{prefix}{i}")
    return names[0], names[1]


# -- sharding ------------------------------------------------------------------------------------
def test_channels_live_on_the_shard_their_name_hashes_to(sharded):
    layer, clients = sharded
    a, b = _names_on_each_shard("chan")
    layer.send(a, {"n": 1})
    layer.send(b, {"n": 2})
    assert clients[0].llen(f"{layer.prefix}:q:{a}") == 1 and not clients[1].exists(
        f"{layer.prefix}:q:{a}")
    assert clients[1].llen(f"{layer.prefix}:q:{b}") == 1 and not clients[0].exists(
        f"{layer.prefix}:q:{b}")
    assert {layer.receive([a, b])[0], layer.receive([a, b])[0]} == {a, b}
    assert layer.receive([a, b]) == (None, None)


def test_process_channels_shard_by_their_non_local_part(sharded):
    layer, clients = sharded
    shard = shard_index("reply!", 2)
    for local in ("x", "y", "zz", "abcdef"):
        layer.send(f"reply!{local}", {"to": local})
    assert clients[shard].llen(f"{layer.prefix}:q:reply!") == 4
    assert [layer.receive(["reply!"]) for _ in range(4)] == [
        (f"reply!{local}", {"to": local}) for local in ("x", "y", "zz", "abcdef")]


def test_blocking_receive_waits_on_both_shards(sharded):
    layer, _clients = sharded
    a, b = _names_on_each_shard("wait")
    for name in (a, b):
        sender = CTX.Process(target=_send_later, args=(layer.hosts, layer.prefix, name, 0.3))
        sender.start()
        try:
            assert layer.receive([a, b], block=True) == (name, {"late": name})
        finally:
            sender.join(10)


def _send_later(hosts, prefix, channel, delay):
    time.sleep(delay)
    RedisChannelLayer(hosts=hosts, prefix=prefix).send(channel, {"late": channel})


def test_a_message_popped_on_the_other_shard_is_given_back(sharded):
    """Both shards' blocking pops may take a message in the same instant; the one not
    returned goes back to the head of its queue, nothing is lost."""
    layer, _clients = sharded
    a, b = _names_on_each_shard("both")
    receive_plan = layer._blocking_plan([a, b])
    from asgi_ipc.redis_receive import BlockingReceive

    receive = BlockingReceive(layer, [a, b])
    pops = receive.poll()
    assert isinstance(pops, list) and len(pops) == len(receive_plan) == 2
    layer.send(a, {"n": "a"})
    layer.send(b, {"n": "b"})
    time.sleep(0.1)  # both servers have answered their BLPOP by now
    receive.ready(pops[0])
    first = receive.poll()
    assert first in [(a, {"n": "a"}), (b, {"n": "b"})]
    assert layer.receive([a, b]) in [(a, {"n": "a"}), (b, {"n": "b"})]
    assert layer.receive([a, b]) == (None, None)


def test_groups_fan_out_over_shards(sharded):
    layer, _clients = sharded
    a, b = _names_on_each_shard("member")
    for name in (a, b, "proc!1", "proc!2"):
        layer.group_add("room", name)
    layer.send_group("room", {"hi": True})
    got = {layer.receive([a])[0], layer.receive([b])[0], layer.receive(["proc!"])[0],
           layer.receive(["proc!"])[0]}
    assert got == {a, b, "proc!1", "proc!2"}
    stats = layer.global_statistics()
    assert stats["group_deliveries"] == 4 and stats["group_sends"] == 1
    assert stats["groups"] == 1 and stats["group_members"] == 4


def test_flush_and_statistics_cover_every_shard(sharded, redis_server):
    layer, clients = sharded
    a, b = _names_on_each_shard("fl")
    layer.send(a, {})
    layer.send(b, {})
    layer.send(b, {})
    layer.group_add("g", a)
    stats = layer.global_statistics()
    assert stats["messages_count"] == 3 and stats["messages_pending"] == 3
    assert layer.channel_statistics(b)["messages_pending"] == 2
    assert sorted(key for key, _ in layer.channel_list()) == sorted([a, b])
    other = RedisChannelLayer(hosts=[_url(redis_server)], prefix=layer.prefix + "other")
    try:
        other.send("kept", {})
        layer.flush()
        assert other.receive(["kept"]) == ("kept", {})  # another prefix is left alone
    finally:
        other.flush()
        other.close()
    for client in clients:
        assert list(client.scan_iter(match=f"{layer.prefix}:*")) == []
    assert layer.global_statistics()["messages_pending"] == 0
    assert layer.check() == []


def test_a_busy_channel_does_not_starve_a_quiet_one(sharded):
    layer, _clients = sharded
    a, b = _names_on_each_shard("busy")
    names = [a, b, "quiet.x", "quiet.y", "quiet.z"]
    for name in names:
        for _ in range(10):
            layer.send(name, {})
    seen = [layer.receive(names)[0] for _ in range(10)]
    assert {seen.count(name) for name in names} == {2}, seen
    for _ in range(45):
        layer.send("busy", {})
    layer.send("quiet", {})
    assert "quiet" in [layer.receive(["busy", "quiet"])[0] for _ in range(2)]


# -- several processes ---------------------------------------------------------------------------
def _consume(hosts, prefix, channel, out, stop):
    layer = RedisChannelLayer(hosts=hosts, prefix=prefix, receive_timeout=0.3)
    got = []
    while True:
        name, message = layer.receive([channel], block=True)
        if name is None:
            if stop.is_set():
                break
            continue
        got.append(message["id"])
    out.put(got)


def test_two_processes_on_one_channel_get_each_message_once(make_redis_layer):
    layer = make_redis_layer(capacity=5000)
    out, stop = CTX.Queue(), CTX.Event()
    consumers = [CTX.Process(target=_consume, args=(layer.hosts, layer.prefix, "jobs", out, stop))
                 for _ in range(2)]
    for process in consumers:
        process.start()
    try:
        for i in range(2000):
            layer.send("jobs", {"id": i})
        deadline = time.monotonic() + 60
        while layer.channel_statistics("jobs")["messages_pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        got = out.get(timeout=60) + out.get(timeout=60)
    finally:
        stop.set()
        for process in consumers:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert len(got) == len(set(got)), "a message was delivered twice"
    assert sorted(got) == list(range(2000)), "messages were lost"
    assert layer.channel_statistics("jobs")["messages_received"] == 2000


def _blocked(hosts, prefix, channel, out):
    layer = RedisChannelLayer(hosts=hosts, prefix=prefix, receive_timeout=30)
    out.put("ready")
    out.put(layer.receive([channel], block=True))


def test_blocked_receiver_does_not_poll_and_a_killed_one_blocks_nobody(make_redis_layer):
    """An idle receiver sleeps in BLPOP (no wake-ups of its own); one killed with SIGKILL while
    blocked leaves no waiter behind, so the next message goes to a live receiver at once."""
    layer = make_redis_layer()
    out, out2 = CTX.Queue(), CTX.Queue()
    victim = CTX.Process(target=_blocked, args=(layer.hosts, layer.prefix, "idle", out))
    victim.start()
    survivor = None
    try:
        assert out.get(timeout=10) == "ready"
        time.sleep(0.3)
        before = _ctx_switches(victim.pid)
        time.sleep(0.5)
        assert _ctx_switches(victim.pid) - before <= 2, "the blocked receiver polls"
        victim.kill()
        victim.join(10)
        survivor = CTX.Process(target=_blocked, args=(layer.hosts, layer.prefix, "idle", out2))
        survivor.start()
        assert out2.get(timeout=10) == "ready"
        time.sleep(0.3)
        layer.send("idle", {"wake": 1})
        assert out2.get(timeout=10) == ("idle", {"wake": 1})
    finally:
        for process in (victim, survivor):
            if process is not None:
                process.join(10)
                if process.is_alive():
                    process.kill()


# -- expiry, capacity, groups --------------------------------------------------------------------
def test_expired_messages_never_hold_capacity_and_are_counted(make_redis_layer):
    layer = make_redis_layer(expiry=0.2, capacity=2)
    layer.send("exp", {"n": 1})
    layer.send("exp", {"n": 2})
    with pytest.raises(ChannelFull):
        layer.send("exp", {"n": 3})
    time.sleep(0.25)
    layer.send("exp", {"n": 4})  # the two expired heads were dropped to make room
    assert layer.receive(["exp"]) == ("exp", {"n": 4})
    stats = layer.channel_statistics("exp")
    assert stats["messages_expired"] == 2 and stats["channel_full_count"] == 1


def test_a_message_expiring_in_a_blocking_pop_is_not_delivered(make_redis_layer):
    layer = make_redis_layer(expiry=0.05, receive_timeout=0.5)
    from asgi_ipc.redis_receive import BlockingReceive

    receive = BlockingReceive(layer, ["slow"])
    pops = receive.poll()
    layer.send("slow", {"late": True})
    time.sleep(0.1)  # popped by the server, but read after its deadline
    receive.ready(pops[0])
    assert receive.got is None
    assert layer.channel_statistics("slow")["messages_expired"] == 1


def test_expired_member_leaves_all_its_groups_on_every_shard(make_redis_layer, redis_server,
                                                             second_redis_server):
    hosts = [_url(redis_server), _url(second_redis_server)]
    layer = make_redis_layer(hosts=hosts, expiry=0.2, capacity=2)
    groups = list(_names_on_each_shard("room"))  # one group on each shard
    for member in ("plain", "ifc!a", "ifc!b", "ifc!c"):
        for group in groups:
            layer.group_add(group, member)
    layer.send("plain", {})
    layer.send("ifc!a", {})
    time.sleep(0.25)
    assert layer.receive(["plain", "ifc!"]) == (None, None)  # both expired: both evicted
    for group in groups:
        assert sorted(layer.group_channels(group)) == ["ifc!b", "ifc!c"]
    # a member nobody reads is evicted once its expired messages stand in the way of a send
    layer.send_group(groups[0], {"n": 1})  # ifc!b and ifc!c fill ifc!'s capacity of 2
    time.sleep(0.25)
    layer.send_group(groups[0], {"n": 2})  # at capacity: the expired heads go, with their channels
    for group in groups:
        assert layer.group_channels(group) == []
    assert layer.check() == []


def test_queues_and_groups_carry_ttls_so_abandoned_ones_vanish(make_redis_layer, redis_server):
    layer = make_redis_layer(expiry=10, group_expiry=100)
    layer.send("ttl", {})
    layer.group_add("g", "ttl")
    client = redis.Redis.from_url(_url(redis_server))
    try:
        assert 0 < client.ttl(f"{layer.prefix}:q:ttl") <= 11
        assert 0 < client.ttl(f"{layer.prefix}:g:g") <= 100
        assert client.ttl(f"{layer.prefix}:s:ttl") > 0
    finally:
        client.close()


def test_group_members_expire_by_their_own_add_time(make_redis_layer):
    layer = make_redis_layer(group_expiry=0.4)
    layer.group_add("g", "old")
    time.sleep(0.25)
    layer.group_add("g", "new")
    time.sleep(0.25)
    assert layer.group_channels("g") == ["new"]
    layer.send_group("g", {"x": 1})
    assert layer.receive(["old"]) == (None, None) and layer.receive(["new"])[0] == "new"


def test_process_channels_share_one_capacity_in_group_sends(make_redis_layer):
    layer = make_redis_layer(capacity=3)
    for i in range(5):
        layer.group_add("g", f"p!{i}")
    layer.send_group("g", {})
    stats = layer.global_statistics()
    assert stats["group_deliveries"] == 3 and stats["group_drops"] == 2
    with pytest.raises(ChannelFull, match="capacity of 3"):
        layer.send("p!9", {})


def test_redis_out_of_memory_is_arena_full(prefix, redis_server):
    from benchmarks.redis_server import RedisServer

    with RedisServer(extra_args=["--maxmemory-policy", "noeviction"]) as server, \
            RedisChannelLayer(hosts=[_url(server)], prefix=prefix, capacity=1000) as layer:
        client = redis.Redis(port=server.port)
        used = client.info("memory")["used_memory"]
        client.config_set("maxmemory", used + 2**20)
        client.close()
        with pytest.raises(ArenaFull, match="out of memory"):
            for _ in range(100):
                layer.send("big", {"body": b"x" * 100_000})
        assert layer.receive(["big"])[0] == "big"  # what was queued is still there


# -- configuration errors, restarts, TLS ---------------------------------------------------------
@pytest.mark.parametrize("kwargs, fragment", [
    ({"hosts": "redis://127.0.0.1:6379"}, "not a string"),
    ({"prefix": "has space"}, "prefix"),
    ({"expiry": 0}, "expiry"),
    ({"receive_timeout": 0}, "receive_timeout"),
    ({"capacity": 0}, "capacity"),
    ({"connection_kwargs": {"decode_responses": True}}, "decode_responses"),
    ({"connection_kwargs": {"retry_on_timeout": True}}, "twice"),
])
def test_bad_settings_say_what_is_wrong(kwargs, fragment):
    with pytest.raises((TypeError, ValueError)) as info:
        RedisChannelLayer(**kwargs)
    assert fragment in str(info.value)


def test_restarted_server_clear_error_while_down_then_works(prefix, redis_server):
    from benchmarks.redis_server import RedisServer

    # A server of its own, whose data goes with it; the layer is closed with it.
    with RedisServer() as server, RedisChannelLayer(hosts=[_url(server)], prefix=prefix) as layer:
        layer.send("r", {"before": 1})
        assert layer.receive(["r"]) == ("r", {"before": 1})
        server.halt()
        for call in (lambda: layer.send("r", {}), lambda: layer.receive(["r"], block=True),
                     lambda: layer.group_add("g", "r"), layer.global_statistics):
            with pytest.raises(RedisUnavailable) as info:
                call()
            assert f"127.0.0.1:{server.port}" in str(info.value)
            assert "start it" in str(info.value)
        assert layer.check() and "cannot be reached" in layer.check()[0]
        server.resume()
        layer.send("r", {"after": 1})  # scripts are loaded again by themselves
        assert layer.receive(["r"], block=True) == ("r", {"after": 1})


def test_server_going_away_under_a_blocked_receive_is_a_clear_error(prefix, redis_server):
    import asyncio

    from benchmarks.redis_server import RedisServer

    with RedisServer() as server, RedisChannelLayer(hosts=[_url(server)], prefix=prefix,
                                                    receive_timeout=20) as layer:

        async def main():
            task = asyncio.ensure_future(layer.receive_async(["gone"]))
            await asyncio.sleep(0.2)
            server.halt()
            with pytest.raises(RedisUnavailable):
                await asyncio.wait_for(task, 10)

        asyncio.run(main())
        server.resume()


def test_unix_socket_host(prefix, redis_server, tmp_path):
    from benchmarks.redis_server import RedisServer

    path = tmp_path / "redis.sock"
    with RedisServer(extra_args=["--unixsocket", str(path), "--unixsocketperm", "700"]), \
            RedisChannelLayer(hosts=[f"unix://{path}"], prefix=prefix) as layer:
        sender = threading.Timer(0.2, layer.send, ("unix!x", {"over": "unix"}))
        sender.start()
        try:
            assert layer.receive(["unix!"], block=True) == ("unix!x", {"over": "unix"})
        finally:
            sender.join(10)


def _serves_tls() -> bool:
    """Whether this redis-server was built with TLS (it then links OpenSSL)."""
    import subprocess

    path = shutil.which("redis-server")
    if path is None or shutil.which("ldd") is None:
        return False
    return "libssl" in subprocess.run(["ldd", path], capture_output=True, text=True).stdout


def test_tls_and_password_in_the_url(prefix, redis_server, tmp_path):
    if not _serves_tls():
        pytest.skip("this redis-server was built without TLS (BUILD_TLS=yes links libssl)")
    trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")
    from benchmarks.redis_server import RedisServer, free_loopback_port

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    tls_port = free_loopback_port()
    server = RedisServer(extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert_file),
        "--tls-key-file", str(key_file), "--tls-ca-cert-file", str(ca_file),
        "--tls-auth-clients", "no", "--requirepass", "s3cret"])
    url = f"rediss://:s3cret@127.0.0.1:{tls_port}/0"
    with server, RedisChannelLayer(hosts=[url], prefix=prefix,
                                   connection_kwargs={"ssl_ca_certs": str(ca_file)}) as layer:
        sender = threading.Timer(0.3, layer.send, ("tls", {"secret": b"\x00"}))
        sender.start()
        try:  # a blocking pop over TLS: the driver watches the TLS socket
            assert layer.receive(["tls"], block=True) == ("tls", {"secret": b"\x00"})
        finally:
            sender.join(10)
        wrong = RedisChannelLayer(hosts=[f"rediss://:nope@127.0.0.1:{tls_port}/0"],
                                  prefix=layer.prefix,
                                  connection_kwargs={"ssl_ca_certs": str(ca_file)})
        with pytest.raises(RedisUnavailable) as info:
            wrong.send("tls", {})
        assert "nope" not in str(info.value) and ":***@" in str(info.value)
        wrong.close()
        untrusted = RedisChannelLayer(hosts=[url], prefix=layer.prefix)
        with pytest.raises(RedisUnavailable):
            untrusted.send("tls", {})  # the server's certificate is not trusted by default
        untrusted.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_layer_used_after_fork_reconnects_in_the_child(make_redis_layer):
    layer = make_redis_layer()
    layer.send("before", {})
    out = CTX.Queue()

    def child():
        layer.send("from_child", {"pid": 1})
        out.put(layer.receive(["before"]))

    process = CTX.Process(target=child)
    process.start()
    try:
        assert out.get(timeout=10) == ("before", {})
    finally:
        process.join(10)
    assert layer.receive(["from_child"]) == ("from_child", {"pid": 1})
