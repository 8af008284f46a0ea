"""The Channels 4 part of the whole-site comparison: its verdict and its contenders' needs."""

from __future__ import annotations

from benchmarks import site_compare
from benchmarks.compare_sites import contenders


def _ws(p99, lost=0):
    return {"members": 10, "broadcasts": 3, "p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": p99, "max_ms": p99,
            "lost": lost, "duplicates": 0, "deliveries_expected": 30, "server_cpu_cores_while_sending": 0.5,
            "client_cpu_cores_while_sending": 0.9}


def test_channels4_verdict_needs_a_lower_p99_than_every_redis_contender_and_no_loss():
    assert site_compare.channels4_verdict(
        {"c4ipc": _ws(5.0), "channels": _ws(9.0, lost=3), "uvicorn-channels": _ws(8.0)}).startswith("PASS")
    assert site_compare.channels4_verdict({"c4ipc": _ws(5.0), "channels": _ws(9.0), "uvicorn-channels": _ws(4.0)}) \
        .startswith("FAIL")
    assert site_compare.channels4_verdict({"c4ipc": _ws(5.0, lost=1), "channels": _ws(9.0)}).startswith("FAIL")
    assert site_compare.channels4_verdict({"channels": _ws(9.0)}).startswith("n.a.")
    assert site_compare.channels4_verdict({"c4ipc": _ws(5.0)}).startswith("n.a.")


def test_every_broadcast_contender_has_a_legend_and_package_needs():
    assert set(site_compare.WS_CONTENDERS) <= set(contenders.SHAPES) <= set(contenders.NEEDS)
    assert set(contenders.NEEDS_REDIS) <= set(contenders.NEEDS)
    assert "channels_redis" in contenders.NEEDS["uvicorn-channels"] and "daphne" in contenders.NEEDS["c4ipc"]
