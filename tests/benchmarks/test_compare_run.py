"""The site comparison end to end on a tiny budget: ours and gunicorn -w 2 really start, answer,
are measured (requests/s, CPU per request, idle PSS of the whole process tree) and stopped, and the
memory budget row gets a ratio of this run. No timing or budget verdict is asserted."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None,
                    reason="gunicorn is not installed: pip install -e '.[bench]'")
@pytest.mark.timeout(300)  # two real servers start under whatever else the machine runs
def test_compare_quick_measures_ours_and_gunicorn_and_leaves_nothing():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "compare", "--quick", "--parts", "http",
         "--contenders", "ours,gunicorn-w2", "--seconds", "0.3", "--warmup", "0.1", "--idle-settle", "0.1",
         "--connections", "2", "--load-processes", "1", "--no-json"],
        cwd=REPO, capture_output=True, text=True, timeout=270,
        env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # ours: supervisor + interface + the fork server (zygote) + 2 workers; gunicorn: master + 2
    for name, processes in (("ours", 5), ("gunicorn-w2", 3)):
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        rps, cpu_us, pss_mib, procs, failures = cells[1], cells[4], cells[6], cells[7], cells[8]
        assert float(rps.replace(",", "")) > 0, row
        assert float(cpu_us.replace(",", "")) > 0, row
        assert float(pss_mib) > 10, row  # a Django process tree is tens of MiB
        assert int(procs) == processes, row
        assert failures == "0", row  # gunicorn's Connection: close is a reconnect, not a failure
    pss_row = next(line for line in out.splitlines() if "`compare.pss_vs_gunicorn_w2`" in line)
    assert re.search(r"\| \d+\.\d\dx \| (PASS|FAIL) \|", pss_row), pss_row
    assert "| `compare.rps_vs_gunicorn_w4` |" in out and "n.a." in out  # gunicorn -w 4 was not chosen
    assert "LEFT IN /dev/shm" not in out
