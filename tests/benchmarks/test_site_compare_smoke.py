"""The whole-site comparison's pure helpers do what its numbers rely on (nothing is timed here):

- the keep-alive client delimits responses (Content-Length, chunked, split reads, back-to-back
  responses) and refuses what it cannot delimit;
- broadcast frames parse, percentiles are nearest-rank, losses and duplicates are counted;
- the verdicts follow docs/design.md section 4;
- a contender whose package is missing is reported, and bad arguments are refused.
"""

from __future__ import annotations

import resource

import pytest

from benchmarks import site_compare
from benchmarks.compare_sites import contenders, ws_load
from benchmarks.compare_sites.http_load import ResponseError, parse_responses, request_bytes

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


def test_request_is_keep_alive_http11_with_host():
    request = request_bytes(8123)
    assert request.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8123\r\n")
    assert request.endswith(b"\r\n\r\n") and b"close" not in request.lower()


def test_broadcast_frames():
    assert ws_load.parse_frame("B 12 345.5") == (12, 345.5)
    assert ws_load.parse_frame(ws_load.END) is None
    for bad in ("hello", "B 1", "X 1 2.0", "B x 2.0"):
        with pytest.raises(ValueError):
            ws_load.parse_frame(bad)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert ws_load.percentile(values, 50) == 50.0
    assert ws_load.percentile(values, 99) == 99.0
    assert ws_load.percentile(values, 100) == 100.0
    assert ws_load.percentile([3.0], 99) == 3.0
    assert ws_load.percentile([], 50) is None
    with pytest.raises(ValueError):
        ws_load.percentile(values, 101)


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
            "server_cpu_cores": 1.5, "load_generator_cpu_cores": 0.1}


def test_http_verdict_needs_more_than_every_baseline_and_no_failure():
    _, verdict = site_compare.http_table({"ours": _http(300.0), "uvicorn": _http(200.0), "daphne": _http(100.0)}, {})
    assert verdict.startswith("PASS")
    _, verdict = site_compare.http_table({"ours": _http(150.0), "uvicorn": _http(200.0), "daphne": _http(100.0)}, {})
    assert verdict.startswith("FAIL")
    _, verdict = site_compare.http_table({"ours": _http(300.0, failures=1), "daphne": _http(100.0)}, {})
    assert verdict.startswith("FAIL")
    lines, verdict = site_compare.http_table({"ours": _http(300.0)}, {"uvicorn": "x", "daphne": "y"})
    assert verdict.startswith("n.a.") and any("skipped: x" in line for line in lines)
    lines, verdict = site_compare.http_table({"uvicorn": _http(200.0)}, {}, {"ours": "ContenderError: no answer"})
    assert verdict.startswith("n.a.") and any("FAILED: ContenderError" in line for line in lines)


def _ws(p99, lost=0):
    return {"members": 10, "broadcasts": 3, "p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": p99, "max_ms": p99,
            "lost": lost, "duplicates": 0, "deliveries_expected": 30, "server_cpu_cores_while_sending": 0.5,
            "client_cpu_cores_while_sending": 0.9}


def test_ws_verdict_compares_p99_and_reports_losses():
    _, verdict = site_compare.ws_table({"ours": _ws(5.0), "channels": _ws(9.0, lost=4)}, {})
    assert verdict.startswith("PASS") and "Channels 4 of 30" in verdict
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
    assert contenders.missing_packages("ours") == []
    with pytest.raises(ValueError, match="unknown contender"):
        contenders.start("gunicorn", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [["--parts", "tcp"], ["--contenders", "ours,gunicorn"], ["--rounds", "0"],
                                  ["--ws-intervals", "fast"], ["--ws-intervals", "0"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        site_compare.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "bad value" in err or "--ws-intervals" in err
