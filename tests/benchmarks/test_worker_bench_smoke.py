"""The worker benchmark's in-process cases run end to end on a tiny budget (no timing asserted).

Each case checks every reply it gets (status 200, body ``hello``) and raises otherwise, so a
ratio is never reported for a path that stopped answering; the dispatch case's segment is
removed when the child ends.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_in_process_cases_answer_and_report_a_ratio() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker_bench", "--in-process", "wsgi,asgi,dispatch", "--seconds", "0.2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    try:
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == {"wsgi", "asgi", "dispatch"}
    for kind, row in result.items():
        assert row["rounds"] >= 1 and row["requests"] == 100 * row["rounds"], (kind, row)
        assert row["cpu_ms_per_request"] > 0 and row["x_wsgi_cpu"] > 0, (kind, row)
    assert result["wsgi"]["x_wsgi_cpu"] == 1.0
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(f"asgi_ipc.wbenchin{child.pid}_")]
    assert not leftovers, leftovers
