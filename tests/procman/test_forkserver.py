"""Workers forked from a preloaded zygote (``procman run --preload``, the default): real
supervisor, real zygote, real workers, real HTTP. See :mod:`procman.forkserver`."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import psutil
import pytest

from procman import exitcodes
from procman.forkserver import ForkedProcess, forkable

from .procs import HELLOSITE, Site, http_get, processes_by_role, unique_prefix, wait_for


@pytest.fixture
def site(tmp_path):
    sites: list[Site] = []

    def start(*args: str, cwd=HELLOSITE, env=None) -> Site:
        s = Site(["run", "--bind", "127.0.0.1:0", *args], cwd, unique_prefix("fs"), tmp_path / "ctl", env)
        sites.append(s)
        return s

    yield start
    for s in sites:
        s.close()


def zygotes(s: Site) -> list[psutil.Process]:
    """The supervisor's fork servers: its children running ``procman.forkserver`` that are not workers."""
    workers = {p.pid for procs in processes_by_role(s).values() for p in procs}
    found = []
    for proc in psutil.Process(s.process.pid).children():
        try:
            if "procman.forkserver" in proc.cmdline() and proc.pid not in workers:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def forked_workers(s: Site) -> list[psutil.Process]:
    workers = processes_by_role(s).get("worker", [])
    for proc in workers:
        assert "procman.forkserver" in proc.cmdline(), f"worker {proc.pid} was not forked: {proc.cmdline()}"
        assert proc.ppid() == s.process.pid, f"worker {proc.pid} is not the supervisor's child"
    return workers


def test_forked_workers_serve_are_the_supervisors_children_and_are_reaped_by_it(site):
    s = site("--workers", "2")
    url = s.wait_ready()
    assert len(zygotes(s)) == 1
    first = forked_workers(s)
    assert len(first) == 2
    pids = {int(http_get(url + "pid")[1]) for _ in range(12)}
    assert pids <= {p.pid for p in first} and pids, pids
    victim = first[0]
    victim.kill()
    s.wait_line("died: killed by SIGKILL; restarting in")
    # Reaped by the supervisor (a child of anyone else would stay a zombie of ours, or be
    # re-parented elsewhere), and replaced by a new forked worker that serves.
    wait_for(lambda: not psutil.pid_exists(victim.pid) or psutil.Process(victim.pid).ppid() != s.process.pid,
             what="the killed worker to be reaped")
    wait_for(lambda: len(w := processes_by_role(s).get("worker", [])) == 2 and victim.pid not in {p.pid for p in w},
             what="a forked replacement")
    forked_workers(s)
    children = s.descendants()
    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK
    psutil.wait_procs(children, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert not s.segment_exists()


def test_forked_worker_recycles_after_max_requests(site):
    s = site("--workers", "1", "--max-requests", "5", "--max-requests-jitter", "0")
    url = s.wait_ready()
    (first,) = forked_workers(s)
    for _ in range(8):  # the worker keeps serving until its replacement is ready
        assert http_get(url)[0] == 200
    s.wait_line("handled 5 messages, --max-requests", timeout=30)
    wait_for(lambda: (w := processes_by_role(s).get("worker", [])) and first.pid not in {p.pid for p in w},
             timeout=60, what="the recycled worker's replacement")
    forked_workers(s)
    assert http_get(url)[0] == 200


def test_reload_forks_new_code_from_a_new_zygote(site, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(HELLOSITE, project, ignore=shutil.ignore_patterns("__pycache__"))
    s = site("--workers", "2", cwd=project)
    url = s.wait_ready()
    assert http_get(url)[1].decode().startswith("hello from")
    (old_zygote,) = zygotes(s)
    views = project / "hellosite" / "views.py"
    views.write_text(views.read_text().replace('f"hello from', 'f"reloaded code, hello from'))
    shutil.rmtree(project / "hellosite" / "__pycache__", ignore_errors=True)
    mark = len(s.lines)
    s.signal(signal.SIGHUP)
    s.wait_line("reload done", after=mark, timeout=60)
    for _ in range(6):  # both new workers run the new code
        assert http_get(url)[1].decode().startswith("reloaded code, hello from")
    forked_workers(s)
    wait_for(lambda: not old_zygote.is_running() or old_zygote.status() == psutil.STATUS_ZOMBIE,
             what="the old zygote to exit")
    assert [z.pid for z in zygotes(s)] != [old_zygote.pid]


def test_zygote_killed_is_replaced_without_losing_the_site(site):
    s = site("--workers", "2")
    url = s.wait_ready()
    (zygote,) = zygotes(s)
    workers = forked_workers(s)
    zygote.kill()
    for _ in range(10):  # its workers are not its children: they go on serving
        assert http_get(url)[0] == 200
    assert all(p.is_running() for p in workers)
    workers[0].kill()  # the next worker needs a zygote: a new one is started
    s.wait_line("fork server (pid", timeout=30)
    assert "exited (killed by SIGKILL); starting a new one" in s.output
    wait_for(lambda: len(w := processes_by_role(s).get("worker", [])) == 2 and workers[0].pid not in {p.pid for p in w},
             what="a replacement worker from the new zygote")
    forked_workers(s)
    (new_zygote,) = zygotes(s)
    assert new_zygote.pid != zygote.pid
    for _ in range(10):
        assert http_get(url)[0] == 200


def test_status_names_the_zygote(site):
    s = site("--workers", "1")
    s.wait_ready()
    (zygote,) = zygotes(s)
    result = s.cli("status", "--json", "--name", s.prefix)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fork_server"] == {"pid": zygote.pid, "generation": 1,
                                                        "preload_failed_generation": None}


def test_a_project_the_zygote_cannot_preload_fails_to_boot_as_without_it(site):
    s = site("--workers", "2", env={"HELLOSITE_ROUTING": "hellosite.no_such_routing.channel_routing"})
    assert s.wait(90) == exitcodes.BOOT_ERROR
    assert "fork server could not preload hellosite.settings (ModuleNotFoundError)" in s.output
    # Then the workers, started with Popen, fail as they always did: one traceback, one summary.
    assert "failed to boot: ImproperlyConfigured: cannot import routing" in s.output
    assert s.output.count("ModuleNotFoundError: No module named 'hellosite.no_such_routing'") == 1, s.output
    assert "restarting in" not in s.output
    assert not s.segment_exists()


def test_no_preload_starts_workers_as_their_own_interpreters(site):
    s = site("--workers", "1", "--no-preload")
    url = s.wait_ready()
    assert http_get(url)[0] == 200
    assert zygotes(s) == []
    (worker,) = processes_by_role(s)["worker"]
    assert worker.cmdline()[1:4] == ["-m", "procman.boot", "worker"]


def test_only_procman_workers_of_this_interpreter_are_forkable():
    assert forkable([sys.executable, "-m", "procman.boot", "worker", "--settings", "x"]) == "worker"
    assert forkable([sys.executable, "-m", "procman.boot", "interface", "--settings", "x"]) is None
    assert forkable(["/other/python", "-m", "procman.boot", "worker"]) is None
    assert forkable([sys.executable, "-m", "django", "rundelay"]) is None


def test_forked_process_reports_exit_like_popen():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE)
    import os

    process = ForkedProcess(child.pid, os.dup(child.stdout.fileno()))
    child.stdout.close()
    try:
        assert process.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == -signal.SIGTERM
        process.kill()  # reaped: no signal goes to a pid that may be reused
        assert process.poll() == -signal.SIGTERM
    finally:
        process.stdout.close()
        if child.poll() is None:
            child.kill()


def test_a_process_a_dead_worker_left_behind_is_reaped_when_it_ends(site):
    # The supervisor is a subreaper for forked workers, so their orphans become its children.
    s = site("--workers", "1")
    url = s.wait_ready()
    (worker,) = forked_workers(s)
    status, body = http_get(url + "leave-child?s=2")
    assert status == 200
    orphan = psutil.Process(int(body))
    assert orphan.ppid() == worker.pid
    worker.send_signal(signal.SIGKILL)
    wait_for(lambda: orphan.ppid() == s.process.pid, 10, "the orphan was not re-parented to the supervisor")

    def gone() -> bool:  # reaped: no process, not even a zombie
        try:
            return orphan.status() != psutil.STATUS_ZOMBIE and not orphan.is_running()
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 15, "the orphan stayed a zombie of the supervisor after it ended")
    wait_for(lambda: len(processes_by_role(s).get("worker", [])) == 1, 30, "the killed worker was not replaced")
    assert http_get(url)[0] == 200
