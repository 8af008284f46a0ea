"""The cluster benchmark runs end to end with tiny durations against a real ``redis-server``, and
its pure helpers compute what its tables rely on. Nothing is timed here: the smoke runs check that
every kind of simulated machine starts, serves, broadcasts without loss and stops clean."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import cluster_bench
from benchmarks.cluster_ws import broadcast_text, parse_broadcast, percentile

def test_broadcast_frames_and_percentiles():
    assert parse_broadcast("B 12 345.5") == (12, 345.5)
    assert parse_broadcast("E") is None
    with pytest.raises(ValueError, match="not a broadcast frame"):
        parse_broadcast("say:B 1 2")
    assert broadcast_text("B 1 2.0", wrapped=False) == "B 1 2.0"
    assert broadcast_text('{"text": "B 1 2.0", "from": 1, "to": 2}', wrapped=True) == "B 1 2.0"
    assert broadcast_text('{"hello": 42}', wrapped=True) is None  # the Channels 4 greeting
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_order_rotates_so_no_kind_always_goes_first():
    kinds = ("local", "cluster", "redis")
    firsts = {cluster_bench._order(kinds, r)[0] for r in range(3)}
    assert firsts == set(kinds)
    assert all(sorted(cluster_bench._order(kinds, r)) == sorted(kinds) for r in range(5))


def test_plan_starts_a_kind_once_only_when_machines_are_shared():
    http, broadcast = ("local", "cluster", "redis"), ("cluster", "c4-redis")
    assert cluster_bench.plan(http, broadcast, 0, share=False) == [
        ("local", ("http",)), ("cluster", ("http",)), ("redis", ("http",)),
        ("cluster", ("broadcast",)), ("c4-redis", ("broadcast",))]
    assert cluster_bench.plan(http, broadcast, 1, share=False)[0] == ("cluster", ("http",))  # rotated
    assert cluster_bench.plan(http, broadcast, 0, share=True) == [
        ("local", ("http",)), ("cluster", ("http", "broadcast")), ("redis", ("http",)), ("c4-redis", ("broadcast",))]
    assert [kind for kind, _ in cluster_bench.plan(http, broadcast, 1, share=True)] == [
        "cluster", "redis", "c4-redis", "local"]
    assert cluster_bench.plan((), broadcast, 0, share=True) == [("cluster", ("broadcast",)),
                                                                ("c4-redis", ("broadcast",))]
    assert cluster_bench.plan(http, (), 2, share=False) == [("redis", ("http",)), ("local", ("http",)),
                                                           ("cluster", ("http",))]
    assert cluster_bench.plan((), (), 0, share=True) == [] == cluster_bench.plan((), (), 0, share=False)


def test_bad_arguments_are_refused_with_what_to_use():
    with pytest.raises(SystemExit, match="unknown \\['nope'\\]; choose from local,cluster,redis"):
        cluster_bench.main(["--http-kinds", "local,nope"])
    with pytest.raises(SystemExit):
        cluster_bench.main(["--machines", "0"])
    with pytest.raises(SystemExit):
        cluster_bench.main(["--end-pause", "-1"])


# The first run shares the cluster machines between its HTTP load and its broadcast (one start of
# the most expensive kind instead of two); the second, with no kind in both parts, starts fresh
# machines for each part as a measuring run does.
@pytest.mark.parametrize("http_kinds, broadcast_kinds, share", [("local,cluster", "cluster", True),
                                                                ("redis", "c4-redis", False)])
def test_smoke_run(tmp_path, http_kinds, broadcast_kinds, share):
    pytest.importorskip("redis", reason="the cluster benchmark needs redis-py (pip install 'asgi_ipc[redis]')")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    pytest.importorskip("websockets", reason="the broadcast clients need websockets")
    if "c4-redis" in broadcast_kinds:
        for module in ("daphne", "channels", "channels_redis"):
            pytest.importorskip(module, reason="the Channels 4 baseline needs daphne, channels, channels-redis")
    out = tmp_path / "cluster.json"
    code = cluster_bench.main(["--machines", "2", "--rounds", "1", "--seconds", "0.5", "--clients", "2",
                               "--members", "10", "--ws-processes", "1", "--end-pause", "0.3", "--http-kinds", http_kinds,
                               "--broadcast-kinds", broadcast_kinds, "--json", str(out)]
                              + (["--share-machines"] if share else []))
    record = json.loads(out.read_text())
    assert record["suite"] == "cluster" and record["budgets"][0]["id"] == "cluster.rps_ratio"
    result = record["results"]
    assert code == 0 and result["shm_left"] == []
    for kind in http_kinds.split(","):
        (row,) = result["http"][kind]
        assert row["ok"] > 0 and row["failed"] == 0 and len(row["per_load_process"]) == 2
        assert all(rate > 0 for rate in row["per_load_process"])  # both machines served (one load process each)
        if kind == "cluster":  # requests stay local: only the idle link talks to Redis
            assert set(row["redis_commands"]) <= cluster_bench.IDLE_COMMANDS, row["redis_commands"]
        if kind == "redis":  # and here every request goes through Redis
            assert sum(row["redis_commands"].values()) >= row["ok"]
    (row,) = result["broadcast"][broadcast_kinds]
    assert row["members"] == 10 and row["connect_failures"] == 0 and row["broadcasts"] == 10
    assert row["lost"] == 0 and row["duplicates"] == 0 and row["members_got_end_marker"] == 10
    assert row["p50_ms"] is not None and row["p50_ms"] <= row["p99_ms"]
    for side in ("sender_machine", "other_machines"):  # members on both machines got the broadcasts
        assert row[f"{side}_p50_ms"] is not None and row[f"{side}_p50_ms"] <= row[f"{side}_p99_ms"]
