"""The one harness every suite uses does what the numbers rely on (no timing is asserted):

- one percentile definition (nearest rank), medians and ratios that refuse missing numbers;
- CPU time and PSS of a real process tree (a parent and its child), summed over the tree;
- the result file's schema with the machine's state;
- the budgets table: unique ids, verdicts on the limit, and benchmarks/README.md holding its table;
- ``python -m benchmarks`` dispatches to every suite and refuses an unknown one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import __main__ as entry
from benchmarks import budgets, stats
from benchmarks.cpu_time import process_cpu_seconds, pss_bytes, tree_cpu_seconds, tree_pids, tree_pss_bytes
from benchmarks.record import SCHEMA, Record

REPO = Path(__file__).resolve().parents[2]


# -- stats -----------------------------------------------------------------------------------------
def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(reversed(values), 90) == 90.0  # order of the input does not matter
    assert stats.percentile([3.0], 99) == 3.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # a measured value, never interpolated
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError, match="outside 0..100"):
        stats.percentile(values, 101)


def test_median_ratio_and_latency_summary():
    assert stats.median([3.0, 1.0, 2.0]) == 2.0 and stats.median([1.0, 2.0]) == 1.5
    assert stats.median([]) is None
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None and stats.ratio(3.0, None) is None and stats.ratio(3.0, 0) is None
    assert stats.latency_summary([5.0, 1.0, 9.0]) == {"p50": 5.0, "p90": 9.0, "p99": 9.0, "max": 9.0}
    assert stats.latency_summary([])["p99"] is None


# -- CPU and memory of a process tree ------------------------------------------------------------------
BUSY_CHILD = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', "
    "'import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass\\n"
    "data = bytearray(32 << 20)\\nprint(\"ready\", flush=True)\\ntime.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "child.wait()\n"
)


def test_cpu_and_pss_are_summed_over_the_whole_tree():
    parent = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        assert tree_pids([parent.pid]) == [parent.pid, child_pid]
        assert process_cpu_seconds(child_pid) >= 0.25  # it spun 0.3 s of CPU
        assert tree_cpu_seconds([parent.pid]) >= process_cpu_seconds(child_pid)
        pss = tree_pss_bytes([parent.pid])
        assert set(pss) == {parent.pid, child_pid}
        assert pss[child_pid] >= 32 << 20  # it touched a 32 MiB buffer
        assert pss_bytes(parent.pid) == pytest.approx(pss[parent.pid], rel=0.2)
    finally:
        for pid in tree_pids([parent.pid])[::-1]:
            os.kill(pid, 9)
        parent.wait(10)
    assert tree_pids([parent.pid]) == [] and tree_pss_bytes([parent.pid]) == {}
    with pytest.raises(FileNotFoundError):
        pss_bytes(parent.pid)


# -- the result record -------------------------------------------------------------------------------
def test_record_writes_the_schema_with_the_machine_state(tmp_path):
    record = Record("unit", ["--quick"], quick=True)
    time.sleep(0.01)
    path = record.write({"value": 1}, {"seconds": 2.0}, [budgets.check("worker.dispatch_x_wsgi", 1.4)], tmp_path)
    assert path.parent == tmp_path and path.name.startswith("unit-") and path.suffix == ".json"
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["suite"] == "unit" and data["argv"] == ["--quick"] and data["quick"]
    assert data["results"] == {"value": 1} and data["settings"] == {"seconds": 2.0}
    assert data["budgets"][0]["verdict"] == "PASS" and data["budgets"][0]["id"] == "worker.dispatch_x_wsgi"
    machine = data["machine"]
    assert machine["cpus"] == os.cpu_count() and machine["python"] == sys.version.split()[0]
    assert len(machine["load_average_start"]) == 3 and len(machine["load_average_end"]) == 3
    assert machine["asgi_ipc_fast_path"] in ("on", "not built", "off (ASGI_IPC_PURE=1)")
    assert "django" in machine["versions"] and machine["cpu_model"]
    assert "unit at" in record.headline() and "load average" in record.headline()


# -- the budgets ---------------------------------------------------------------------------------------
def test_budget_ids_suites_and_verdicts():
    assert len({b.id for b in budgets.BUDGETS}) == len(budgets.BUDGETS)
    assert {b.suite for b in budgets.BUDGETS} <= set(entry.SUITES)
    assert budgets.verdict("compare.rps_vs_gunicorn_w4", 2.0) == "PASS"
    assert budgets.verdict("compare.rps_vs_gunicorn_w4", 1.99) == "FAIL"
    assert budgets.verdict("compare.pss_vs_gunicorn_w2", 1.21) == "FAIL"
    assert budgets.verdict("layer.cross_2to2", 1.0) == "FAIL"  # must scale above, not equal
    assert budgets.verdict("compare.rps_vs_granian_w2", None) == "n.a."
    assert budgets.verdict("interface.broadcast_p99", 30.0, False) == "FAIL"  # e.g. frames were lost
    with pytest.raises(KeyError, match="known: layer.cross_1to1"):
        budgets.get("no.such.budget")


def test_the_readme_holds_the_budgets_table_and_design_points_to_it():
    readme = (REPO / "benchmarks" / "README.md").read_text()
    assert budgets.markdown_table() in readme, "regenerate it: python -m benchmarks budgets"
    design = (REPO / "docs" / "design.md").read_text()
    assert "benchmarks/budgets.py" in design


# -- the entry point -----------------------------------------------------------------------------------
def test_every_suite_module_has_main():
    import importlib

    for name, (module, _) in entry.SUITES.items():
        assert callable(importlib.import_module(module).main), name


def test_entry_point_usage_and_unknown_suite(capsys):
    assert entry.main([]) == 2
    assert "layer,channels4,interface,worker,site,compare,cluster" in capsys.readouterr().out
    assert entry.main(["nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert entry.main(["budgets"]) == 0
    assert "`compare.pss_vs_gunicorn_w2`" in capsys.readouterr().out


def test_entry_point_passes_the_rest_to_the_suite(capsys):
    with pytest.raises(SystemExit) as exc:
        entry.main(["compare", "--parts", "tcp"])
    assert exc.value.code == 2
    assert "python -m benchmarks compare" in capsys.readouterr().err


# -- the load generator against a real server ----------------------------------------------------------
class _Hello:
    """A stdlib HTTP/1.1 server in a thread: ``/`` keeps the connection alive, ``/close`` ends it
    after each response (as gunicorn's sync workers do), ``/missing`` answers 404."""

    def __enter__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - the stdlib's name
                status = 404 if self.path == "/missing" else 200
                self.send_response(status)
                self.send_header("Content-Length", "5")
                if self.path == "/close":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(b"hello")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self.server.server_address[1]

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.mark.parametrize("path", ["/", "/close"])
def test_load_generator_counts_every_answer_and_reconnects_after_close(path):
    from benchmarks.http_load import run_load, wait_first_200

    with _Hello() as port:
        assert wait_first_200(port, 10) > 0
        result = run_load(port, 2, time.monotonic(), 0.05, 0.3, path=path)
    assert result["ok"] > 0 and result["failures"] == 0 and result["bad_status"] == 0, result["errors"]
    assert len(result["latencies_ms"]) == result["ok"]
    if path == "/close":
        assert result["reconnects_after_close"] >= result["ok"]  # one new connection per response
    else:
        assert result["reconnects_after_close"] == 0


def test_load_processes_and_the_simple_form_cluster_bench_uses():
    import multiprocessing

    from benchmarks.http_load import run_load_processes
    from benchmarks.site_bench import free_port, load_process, wait_first_200  # what cluster_bench imports

    with _Hello() as port:
        probes = iter([1.0, 3.5])
        result = run_load_processes(port, 2, 2, 0.05, 0.3, path="/missing", window_probe=lambda: next(probes))
        out = multiprocessing.get_context("spawn").Queue()
        load_process(port, 1, 0.2, out)
        ok, failed = out.get(timeout=10)
    assert result["ok"] == 0 and result["bad_status"] > 0 and result["connections"] == 2
    assert result["probe"] == [1.0, 3.5] and result["requests_per_s"] == 0
    assert ok > 0 and failed == 0
    assert isinstance(free_port(), int)
    with pytest.raises(TimeoutError, match="nothing answered 200"):
        wait_first_200(free_port(), 0.2)
    with pytest.raises(ValueError, match="must be positive"):
        run_load_processes(port, 0, 1, 0.0, 1.0)


# -- starting and stopping a server --------------------------------------------------------------------
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', "
    "'import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nprint(1, flush=True)\\ntime.sleep(60)'],"
    " stdout=subprocess.PIPE)\n"
    "child.stdout.readline()\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_stopped_server_leaves_no_process_even_one_that_ignores_sigterm(tmp_path):
    from benchmarks.servers import Running, spawn

    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        leader = spawn([sys.executable, "-c", STUBBORN], dict(os.environ), tmp_path, out)
    server = Running("stubborn", 0, log, [leader])
    deadline = time.monotonic() + 30
    while b"ready" not in log.read_bytes():
        assert time.monotonic() < deadline and leader.poll() is None, server.log_tail()
        time.sleep(0.05)
    everyone = server.server_pids()
    assert len(everyone) == 2 and server.alive()
    assert server.cpu_seconds() > 0 and server.pss_bytes() > 0
    server.stop(timeout=0.5)  # the child ignores SIGTERM: it is SIGKILLed once the 0.5 s are up
    assert not server.alive() and server.server_pids() == []
    for pid in everyone:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
