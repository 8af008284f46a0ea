"""The channel-layer benchmark's helpers do what the numbers rely on (no timing is asserted).

- messages have the sizes and ids the cases count with;
- the throwaway redis-server starts, answers and is always cleaned up;
- the process runner reports results, child failures and hangs;
- the table's budget verdicts follow benchmarks/budgets.py;
- the cases run end to end against the real ``asgi_ipc`` layer on a tiny budget, and count every
  message (these double as a check that the layer neither loses nor duplicates under the harness).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid

import pytest

from asgi_ipc import IPCChannelLayer
from benchmarks import cases, layer_bench, messages, report
from benchmarks.procs import CaseFailed, ChildSpec, RoleContext, run_children
from benchmarks.redis_server import RedisServer

#: The runner tests' roles: a module without pytest, so each spawned child starts quickly.
ROLES = "tests.benchmarks.runner_roles"


# -- messages -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [800, 1024, 4096, 70_000])
def test_http_request_packs_to_the_requested_size(size: int) -> None:
    message = messages.http_request("bench.reply!c1", size, messages.make_id(1, 7))
    assert messages.packed_size(message) == size
    assert message["reply_channel"] == "bench.reply!c1"
    assert isinstance(message["query_string"], bytes)


@pytest.mark.parametrize("size", [32, 100, 255, 256, 10 * 1024, 65_536, 512 * 1024])
def test_payload_packs_to_the_requested_size(size: int) -> None:
    assert messages.packed_size(messages.payload(size, messages.make_id(3, 123_456))) == size


def test_sizes_too_small_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        messages.http_request("bench.reply!c1", 100)
    with pytest.raises(ValueError, match=">= 32"):
        messages.payload(10)


def test_ids_round_trip_and_are_unique_per_producer() -> None:
    ids = {messages.make_id(p, s) for p in range(3) for s in (0, 1, 2**40 - 1)}
    assert len(ids) == 9
    assert messages.split_id(messages.make_id(2, 99)) == (2, 99)
    with pytest.raises(ValueError):
        messages.make_id(0, 2**40)


# -- redis-server -------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_server_answers_then_is_gone() -> None:
    with RedisServer() as server:
        port, pid = server.port, server.pid
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(16).startswith(b"+PONG")
        directory = server._dir
        assert directory is not None and os.path.isdir(directory)
    assert server.pid is None
    assert not os.path.exists(directory)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_redis_binary_is_a_clear_error() -> None:
    from benchmarks.redis_server import RedisServerError

    with pytest.raises(RedisServerError, match="not on PATH"):
        RedisServer(executable="no-such-redis-server-binary").start()


# -- process runner -------------------------------------------------------------------------------
def test_runner_returns_each_childs_result() -> None:
    specs = [ChildSpec(f"c{i}", ROLES, "role_echo", {"value": i}) for i in range(2)]
    results = run_children(specs, {}, timeout=30)
    assert {name: r["value"] for name, r in results.items()} == {"c0": 0, "c1": 1}
    assert results["c0"]["pid"] != results["c1"]["pid"] != os.getpid()


def test_runner_reports_a_failing_child_with_its_traceback() -> None:
    specs = [ChildSpec("ok", ROLES, "role_echo", {"value": 1}), ChildSpec("bad", ROLES, "role_fail")]
    with pytest.raises(CaseFailed, match="this role fails on purpose"):
        run_children(specs, {}, timeout=30)


def test_runner_gives_up_on_a_hung_child_and_stops_it() -> None:
    with pytest.raises(CaseFailed, match="timed out"):
        run_children([ChildSpec("slow", ROLES, "role_hang", {"seconds": 60})], {}, timeout=0.5)


def test_duplicate_child_names_are_refused() -> None:
    spec = ChildSpec("same", ROLES, "role_echo", {"value": 1})
    with pytest.raises(ValueError, match="unique"):
        run_children([spec, spec], {}, timeout=5)


# -- table verdicts ---------------------------------------------------------------------------------
def _row(rows: list[report.Row], case: str, unit: str | None = None) -> report.Row:
    return next(r for r in rows if r.case == case and (unit is None or r.unit == unit))


def test_budget_verdicts_follow_the_design_ratios() -> None:
    results = {
        "cross_1to1": {"ours": {"rate": 40_000.0, "duplicates": 0, "lost": 0, "sent": 10},
                       "redis": {"rate": 1_000.0, "duplicates": 0, "lost": 0}},
        "cross_2to2": {"ours": {"rate": 39_000.0, "duplicates": 1, "lost": 0, "sent": 10},
                       "redis": {"rate": 900.0, "duplicates": 5, "lost": 0}},
        "rtt": {"ours": {"p50_us": 60.0, "p99_us": 100.0}, "redis": {"p50_us": 1000.0, "p99_us": 2000.0}},
        "floor_rtt": {"floor": {"p50_us": 30.0, "p99_us": 50.0}},
        "queued": {"ours": {"depth_10": {"rate": 100.0}, "depth_10000": {"rate": 95.0}}},
        "idle_sync": {"ours": {"cpu_ms_per_s": 0.1}},
        "idle_async": {"ours": {"error": "CaseFailed: boom"}},
        "size_512k": {"ours": {"mb_per_s": 100.0}, "redis": {"mb_per_s": 120.0}},
    }
    rows = report.build_rows(results)
    assert _row(rows, "cross-process 1 -> 1").verdict == "PASS"  # exactly 40x
    assert _row(rows, "cross-process 2 -> 2").verdict == "FAIL"  # does not scale above 1 -> 1
    assert _row(rows, "  2 -> 2 duplicates / lost").verdict == "FAIL"
    assert _row(rows, "  2 -> 2 duplicates / lost").redis == "5 / 0"
    assert _row(rows, "round trip p50").verdict == "FAIL"  # 60 > 1.5 x the floor's 30
    assert _row(rows, "round trip p50").measured == 2.0
    assert _row(rows, "round trip p99").verdict == "PASS"  # 100 <= 2000 / 10
    assert _row(rows, "  10,000 queued vs 10").verdict == "PASS"
    assert _row(rows, "512 KB messages, 1 -> 1", "MB/s").verdict == "FAIL"
    assert _row(rows, "idle blocked receiver, receive(block=True)").verdict == "PASS"
    assert _row(rows, "idle blocked receiver, receive_async").verdict == "n.a."  # the case failed
    assert _row(rows, "send_group 1000: send").verdict == "n.a."  # not measured
    table = report.format_table(rows)
    assert len(table.splitlines()) == len(rows) + 2
    assert "| cross-process 1 -> 1" in table and "40x" in table
    entries = {e["id"]: e for e in report.budget_entries(rows)}
    assert entries["layer.rtt_p50"]["verdict"] == "FAIL" and entries["layer.rtt_p99"]["verdict"] == "PASS"
    assert entries["layer.cross_1to1"]["measured"] == 40.0 and entries["layer.cross_1to1"]["budget"] == ">= 40x channels_redis"


def test_best_attempt_keeps_the_fastest_but_counts_every_duplicate() -> None:
    attempts = [
        {"rate": 10.0, "sent": 100, "delivered": 100, "duplicates": 2, "lost": 0},
        {"rate": 30.0, "sent": 300, "delivered": 299, "duplicates": 0, "lost": 1},
        {"error": "CaseFailed: hung"},
    ]
    best = layer_bench.best_attempt("cross_1to1", attempts)
    assert best["rate"] == 30.0
    assert (best["sent"], best["delivered"], best["duplicates"], best["lost"]) == (400, 399, 2, 1)
    assert (best["attempts"], best["failed_attempts"]) == (3, 1)
    assert layer_bench.best_attempt("rtt", [{"p50_us": 9.0}, {"p50_us": 5.0}])["p50_us"] == 5.0
    assert layer_bench.best_attempt("rtt", [{"error": "x"}]) == {"error": "x"}


def test_bad_arguments_exit_with_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--backends", "ours,mongo"], ["--repeat", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            layer_bench.main(argv)
        assert exit_info.value.code == 2
    assert "mongo" in capsys.readouterr().err


# -- the cases, end to end on our layer ---------------------------------------------------------------
TINY = cases.Durations(pairs=0.1, cross=0.2, rtt=0.5, group=0.2, size=0.1, queued=0.1, idle=0.2)


@pytest.fixture
def ours_config():
    prefix = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    sizes = {"capacity": 5000, "channel_capacity": {"bench.size*": 10}, "message_memory": 16 * 2**20}
    creator = IPCChannelLayer(prefix=prefix, create=True, **sizes)
    try:
        yield {"prefix": prefix, "create": False, **sizes}
    finally:
        creator.close()


def test_cross_process_case_counts_every_message(ours_config: dict) -> None:
    result = cases.cross_process("ours", ours_config, TINY.cross, 2, 2, "http", 1024, "x22")
    assert result["sent"] > 0
    assert result["delivered"] == result["sent"]
    assert (result["duplicates"], result["lost"], result["unknown"]) == (0, 0, 0)
    assert sum(result["per_consumer"]) == result["sent"]


def test_pairs_case_keeps_each_queue_at_its_depth(ours_config: dict) -> None:
    result = cases.pairs("ours", ours_config, 0.3, (0, 50), "q")  # the role checks what is left
    assert result["pairs"] > 0
    assert result["depth_0"]["windows"] > 0 and result["depth_50"]["windows"] > 0


def test_round_trip_and_group_cases_complete(ours_config: dict) -> None:
    trip = cases.round_trip("ours", ours_config, TINY, "rtt")
    assert trip["trips"] > 0 and trip["served"] >= trip["trips"]
    group = cases.group_send("ours", ours_config, TINY, 40, "g40")
    assert group["rounds"] > 0
    assert (group["lost"], group["duplicates"], group["incomplete_rounds"]) == (0, 0, 0)


def test_large_messages_and_idle_receiver_cases_complete(ours_config: dict) -> None:
    big = cases.cross_process("ours", ours_config, TINY.size, 1, 1, "payload", 512 * 1024, "size512k")
    assert big["delivered"] == big["sent"] > 0
    idle = cases.idle_cpu("ours", ours_config, TINY, "sync", "idle")
    assert idle["wall_s"] > 0 and idle["cpu_s"] >= 0


def test_channels4_table_checks_its_budgets_from_the_budgets_table() -> None:
    from benchmarks import channels4_bench

    results = {
        "cross_1to1": {"ipc": {"rate": 3000.0, "duplicates": 0, "lost": 0},
                       "redis": {"rate": 100.0, "duplicates": 0, "lost": 0}},
        "rtt": {"ipc": {"p50_us": 200.0, "p99_us": 300.0}, "redis": {"p50_us": 1000.0, "p99_us": 2000.0}},
    }
    checked: list[dict] = []
    table = channels4_bench.build_table(results, checked)
    verdicts = {(c["id"], c["note"]): c["verdict"] for c in checked}
    assert verdicts[("channels4.throughput", "1 -> 1")] == "PASS"  # exactly 30x
    assert verdicts[("channels4.throughput", "2 -> 2")] == "n.a."
    assert verdicts[("channels4.rtt", "round trip p50")] == "FAIL"  # 1/5, budget 1/10
    assert ">= 30x channels_redis" in table
