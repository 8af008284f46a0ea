"""The interface benchmark still runs end to end (a very short run; the numbers are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_runs_and_writes_its_json():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "interface", "--seconds", "0.3", "--connections", "2",
         "--ws-connections", "2", "--members", "20", "--warmup", "0.1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = [line.split("JSON: ", 1)[1] for line in result.stdout.splitlines() if line.startswith("JSON: ")]
    assert len(written) == 1, result.stdout[-2000:]
    output = Path(written[0])
    try:
        report = json.loads(output.read_text())
    finally:
        output.unlink()
    assert report["suite"] == "interface" and report["machine"]["load_average_start"]
    for case in ("http_keepalive", "websocket_echo"):
        row = report["results"][case]
        assert row["count"] > 0  # requests really went through interface, layer and consumer
        assert set(row) >= {"per_second", "p50_ms", "p99_ms", "interface_cpu_share"}
    broadcast = report["results"]["websocket_broadcast"]
    assert broadcast["broadcasts"] > 0 and broadcast["count"] == broadcast["broadcasts"] * 20
    assert broadcast["lost"] == 0 and broadcast["unfinished_sockets"] == 0
    assert broadcast["interface_cpu_us_per_frame"] >= 0  # CPU clocks tick in 10 ms: a smoke run may show 0
    assert "HTTP requests" in result.stdout and "WS messages" in result.stdout
