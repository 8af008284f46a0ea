"""The whole-site comparison's pure helpers do what its numbers rely on (nothing is timed here):

- the keep-alive client delimits responses (Content-Length, chunked, split reads, back-to-back
  responses) and refuses what it cannot delimit;
- broadcast frames parse, losses and duplicates are counted;
- the verdicts and budget rows follow benchmarks/budgets.py;
- a contender whose package is missing is reported, and bad arguments are refused.
"""

from __future__ import annotations

import resource

import pytest

from benchmarks import site_compare
from benchmarks.compare_sites import contenders, ws_load
from benchmarks.http_load import ResponseError, parse_responses, parse_responses_detail, request_bytes

CL = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


def test_content_length_and_chunked_responses_back_to_back():
    buf = CL + CHUNKED + CL
    assert parse_responses(buf) == ([200, 200, 200], len(buf))


@pytest.mark.parametrize("whole", [CL, CHUNKED])
def test_a_split_response_is_complete_only_with_its_last_byte(whole):
    for cut in range(len(whole)):
        assert parse_responses(whole[:cut]) == ([], 0)
    assert parse_responses(whole) == ([200], len(whole))


def test_chunked_with_several_chunks_extensions_and_trailers():
    buf = (b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: Chunked\r\n\r\n"
           b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert parse_responses(buf + b"HTTP/1.1") == ([404], len(buf))


def test_bodyless_statuses_and_undelimited_bodies():
    assert parse_responses(b"HTTP/1.1 204 No Content\r\n\r\n") == ([204], 27)
    with pytest.raises(ResponseError, match="neither Content-Length nor chunked"):
        parse_responses(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
    with pytest.raises(ResponseError, match="bad status line"):
        parse_responses(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ResponseError, match="bad chunk size"):
        parse_responses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


def test_connection_close_is_reported_per_response():
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    old_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello"
    buf = CL + close + old + old_kept
    assert parse_responses_detail(buf) == ([(200, False), (200, True), (200, True), (200, False)], len(buf))


def test_request_is_keep_alive_http11_with_host():
    request = request_bytes(8123)
    assert request.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8123\r\n")
    assert request.endswith(b"\r\n\r\n") and b"close" not in request.lower()
    assert request_bytes(8123, "/bench").startswith(b"GET /bench HTTP/1.1\r\n")
    with pytest.raises(ValueError, match="absolute path"):
        request_bytes(8123, "bench x")


def test_broadcast_frames():
    assert ws_load.parse_frame("B 12 345.5") == (12, 345.5)
    assert ws_load.parse_frame(ws_load.END) is None
    for bad in ("hello", "B 1", "X 1 2.0", "B x 2.0"):
        with pytest.raises(ValueError):
            ws_load.parse_frame(bad)


def test_summary_counts_losses_and_leaves_warmup_out_of_latencies():
    reports = [
        {"connected": 2, "deliveries": [(0, 100.0), (1, 5.0), (2, 6.0), (0, 90.0), (2, 7.0)], "duplicates": 1,
         "ended": 2, "connect_failures": {"TimeoutError": 1}},
        {"error": "RuntimeError: boom"},
    ]
    summary = ws_load.summarize(reports, broadcasts=3, skip_first=1)
    assert summary["members"] == 2 and summary["deliveries_expected"] == 6
    assert summary["deliveries_received"] == 5 and summary["lost"] == 1
    assert summary["duplicates"] == 1 and summary["connect_failures"] == 1
    assert summary["members_got_end_marker"] == 2 and summary["errors"] == ["RuntimeError: boom"]
    assert summary["max_ms"] == 7.0  # the warm-up broadcast 0 is not in the latencies


def test_fd_limit_is_raised_within_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ws_load.raise_fd_limit(soft) == soft  # never lowers
    wanted = soft + 1 if hard == resource.RLIM_INFINITY or soft < hard else soft
    try:
        assert ws_load.raise_fd_limit(wanted) >= min(wanted, hard if hard != resource.RLIM_INFINITY else wanted)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _http(rps, failures=0):
    return {"requests_per_s": rps, "p50_ms": 1.0, "p99_ms": 2.0, "failures": failures, "non_200": 0,
            "server_cpu_cores": 1.5, "server_cpu_us_per_request": 300.0, "pss_idle_mib": 60.0,
            "idle_processes": 3, "load_generator_cpu_cores": 0.1}


def _verdicts(checks):
    return {c["id"]: c["verdict"] for c in checks}


def test_budget_rows_are_ratios_of_this_run():
    best = {"ours": _http(2000.0), "gunicorn-w4": _http(1000.0), "granian-w2": _http(3000.0),
            "uvicorn": _http(500.0), "daphne": _http(800.0)}
    pss = {"ours": 72.0, "gunicorn-w2": 60.0}
    checks = site_compare.budget_checks(best, pss, None)
    assert _verdicts(checks) == {"compare.rps_vs_gunicorn_w4": "PASS",  # exactly 2x
                                 "compare.rps_vs_granian_w2": "FAIL",  # 0.67x < 0.7x
                                 "compare.pss_vs_gunicorn_w2": "PASS",  # exactly 1.2x
                                 "compare.rps_vs_asgi_servers": "PASS"}
    by_id = {c["id"]: c for c in checks}
    assert by_id["compare.rps_vs_granian_w2"]["measured"] == pytest.approx(2 / 3)
    assert "daphne" in by_id["compare.rps_vs_asgi_servers"]["note"]  # the better of the two ASGI servers
    table = "\n".join(site_compare.budget_table(checks))
    assert "| `compare.pss_vs_gunicorn_w2` | <= 1.2x gunicorn -w 2 | 1.20x | PASS |" in table


def test_budget_rows_fail_on_failed_requests_and_are_na_without_a_baseline():
    checks = site_compare.budget_checks({"ours": _http(5000.0, failures=1), "gunicorn-w4": _http(1000.0)}, {}, None)
    verdicts = _verdicts(checks)
    assert verdicts["compare.rps_vs_gunicorn_w4"] == "FAIL"  # fast, but a request failed
    assert verdicts["compare.rps_vs_granian_w2"] == "n.a."
    assert verdicts["compare.pss_vs_gunicorn_w2"] == "n.a."


def test_http_table_shows_skipped_and_failed_contenders():
    lines = site_compare.http_table({"ours": _http(300.0)}, {"uvicorn": "x", "daphne": "y"},
                                    {"granian-w2": "ContenderError: no answer"}, {"ours": 70.5})
    assert any("skipped: x" in line for line in lines)
    assert any("FAILED: ContenderError" in line for line in lines)
    assert any(line.startswith("| ours | 300 |") and "| 70.5 |" in line for line in lines)


def _ws(p99, lost=0):
    return {"members": 10, "broadcasts": 3, "p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": p99, "max_ms": p99,
            "lost": lost, "duplicates": 0, "deliveries_expected": 30, "server_cpu_cores_while_sending": 0.5,
            "client_cpu_cores_while_sending": 0.9}


def test_ws_verdict_compares_p99_and_reports_losses():
    _, verdict = site_compare.ws_table({"ours": _ws(5.0), "channels": _ws(9.0, lost=4)}, {})
    assert verdict.startswith("PASS") and "Channels 9.0 ms, lost 4 of 30" in verdict
    _, verdict = site_compare.ws_table({"ours": _ws(9.0), "channels": _ws(5.0)}, {})
    assert verdict.startswith("FAIL")
    _, verdict = site_compare.ws_table({"ours": _ws(5.0)}, {"channels": "not installed"})
    assert verdict.startswith("n.a.")
    lines, verdict = site_compare.ws_table({"ours": _ws(5.0)}, {}, {"channels": "TimeoutError: members"})
    assert verdict.startswith("n.a.") and any("FAILED: TimeoutError" in line for line in lines)


def test_missing_packages_and_unknown_contender(monkeypatch):
    # Decide what is "installed" here, so the test does not depend on the machine's packages
    # (CI's fresh venv has none of the contenders).
    installed = {"channels", "channels_redis", "asgi_ipc", "procman", "django_glue"}
    monkeypatch.setattr(contenders.importlib.util, "find_spec",
                        lambda name: object() if name in installed else None)
    assert contenders.missing_packages("channels") == ["daphne"]
    assert contenders.missing_packages("granian-w2") == ["granian"]
    assert contenders.missing_packages("ours") == []
    with pytest.raises(ValueError, match="unknown contender"):
        contenders.start("gunicorn", None)  # type: ignore[arg-type]


def test_every_contender_has_a_legend():
    assert set(site_compare.HTTP_CONTENDERS) | set(site_compare.WS_CONTENDERS) == set(contenders.NEEDS) \
        == set(contenders.SHAPES)


@pytest.mark.parametrize("argv", [["--parts", "tcp"], ["--contenders", "ours,gunicorn"], ["--rounds", "0"],
                                  ["--seconds", "0"], ["--quick", "--connections", "0"],
                                  ["--ws-intervals", "fast"], ["--ws-intervals", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        site_compare.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "bad value" in err or "--ws-intervals" in err
