"""A pytest killed with SIGKILL (no finalizer runs) leaves no ``procman run`` site behind: the test
helpers start long-lived processes with ``tests.children.end_with_parent``, so the kernel sends the
site SIGTERM and it stops cleanly, segment included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil

from .procs import REPO, unique_prefix, wait_dead, wait_for

INNER_TEST = textwrap.dedent("""
    import json, os, time
    from pathlib import Path

    from tests.procman.procs import HELLOSITE, Site


    def test_starts_a_site_and_waits_to_be_killed(tmp_path):
        site = Site(["run", "--bind", "127.0.0.1:0", "--workers", "1"], HELLOSITE, os.environ["INNER_PREFIX"],
                    tmp_path / "ctl")
        site.wait_ready()
        pids = [site.process.pid] + [p.pid for p in site.descendants()]
        Path(os.environ["INNER_REPORT"]).write_text(json.dumps(pids))
        time.sleep(120)  # the outer test kills this pytest long before
""")


def test_sigkilled_pytest_leaves_no_site_and_no_segment(tmp_path):
    prefix = unique_prefix("orphan")
    report = tmp_path / "pids.json"
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = dict(os.environ, INNER_PREFIX=prefix, INNER_REPORT=str(report),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    inner = subprocess.Popen(
        # Without the plugins the inner test does not use (hypothesis' alone costs seconds to import).
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:timeout",
         "-p", "no:hypothesispytest", "-o", "addopts=", f"--rootdir={tmp_path}", str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    segment = f"/dev/shm/asgi_ipc.{prefix}"
    pids: list[int] = []
    try:
        wait_for(lambda: report.exists() and report.read_text() or inner.poll() is not None, 120,
                 "the inner pytest to start its site")
        assert inner.poll() is None, inner.communicate()[0].decode(errors="replace")
        pids = json.loads(report.read_text())
        assert len(pids) >= 3 and os.path.exists(segment)  # supervisor, interface, worker
        inner.kill()
        inner.wait(10)
        procs = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
        alive = wait_dead(procs, timeout=60)
        assert not alive, f"still running after the pytest that started them was killed: {alive}"
        assert not os.path.exists(segment), "the site's segment outlived it"
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait(10)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if os.path.exists(segment):
            os.unlink(segment)
