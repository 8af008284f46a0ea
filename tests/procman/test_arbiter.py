"""The supervisor loop end to end with real child processes (tests/procman/scripts/child.py), no Django.

The decisions themselves (backoff, boot failure, reload, timeouts, stop order, scaling) are tested in
memory in test_policy.py; these check that real signals, pipes, output and the control socket carry
them out.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from procman import control, exitcodes

from .procs import Supervised, python, wait_for

SCRIPTS = Path(__file__).with_name("scripts")


@pytest.fixture
def supervise(tmp_path):
    started: list[Supervised] = []

    def start(*roles: str, env: dict[str, str] | None = None) -> tuple[Supervised, Path, Path]:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        sock = tmp_path / "ctl" / "site.sock"
        sup = Supervised([python(), str(SCRIPTS / "supervise.py"), str(state), str(sock), *roles], env=env)
        started.append(sup)
        return sup, state, sock

    yield start
    for sup in started:
        sup.kill_everything()


def started(state: Path, name: str) -> list[Path]:
    return sorted(state.glob(f"{name}.*.started"), key=lambda p: p.stat().st_mtime_ns)


def pid_of(path: Path) -> int:
    return int(path.name.split(".")[2])


def test_starts_children_reports_ready_and_stops_cleanly_on_term(supervise):
    sup, state, sock = supervise("worker=ok:2")
    sup.wait_line("all processes ready")
    children = sup.descendants()
    assert len(children) == 2
    assert "worker.1 | child worker.1." in sup.output
    sup.signal(signal.SIGTERM)
    assert sup.wait() == exitcodes.OK
    assert len(list(state.glob("*.stopped"))) == 2, "children should have been stopped with TERM"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert not sock.exists(), "control socket must be removed on exit"




def test_boot_failure_stops_the_run_with_one_clear_error(supervise):
    sup, state, _ = supervise("interface=ok:1", "worker=boot-error:2")
    code = sup.wait()
    assert code == exitcodes.BOOT_ERROR
    assert "failed to boot: ImportError: no module named 'nosuch'" in sup.output
    assert "Traceback" in sup.output
    assert "restarting in" not in sup.output, "a boot failure must not be retried"
    assert sup.descendants() == []




def test_hup_is_a_rolling_reload_new_before_old(supervise):
    sup, state, _ = supervise("worker=ok:2")
    sup.wait_line("all processes ready")
    old = {pid_of(p) for p in started(state, "worker")}
    mark = len(sup.lines)
    sup.signal(signal.SIGHUP)
    sup.wait_line("reload: replacing 2 process(es)", after=mark)
    wait_for(lambda: len(list(state.glob("*.stopped"))) == 2, what="old workers stopped")
    new = {pid_of(p) for p in started(state, "worker")} - old
    assert len(new) == 2
    for pid in old:
        stopped = next(state.glob(f"worker.*.{pid}.stopped"))
        # Each old worker stopped only after a new worker had started (new before old).
        first_new = min(p.stat().st_mtime_ns for p in state.glob("*.started") if pid_of(p) in new)
        assert stopped.stat().st_mtime_ns >= first_new
    assert all(psutil.pid_exists(pid) for pid in new)
    sup.signal(signal.SIGTERM)
    assert sup.wait() == exitcodes.OK




def test_failed_reload_keeps_old_children(supervise):
    sup, state, sock = supervise("worker=breakable:2")
    sup.wait_line("all processes ready")
    old = {pid_of(p) for p in started(state, "worker")}
    (state / "broken").touch()  # the "new code" no longer boots
    sup.signal(signal.SIGHUP)
    sup.wait_line("reload failed: new worker.")
    sup.wait_line("keeping the old processes")
    status = control.request(sock, "status")
    assert {p["pid"] for p in status["processes"] if p["state"] == "ready"} == old
    assert sup.process.poll() is None
    sup.signal(signal.SIGTERM)
    assert sup.wait() == exitcodes.OK




def test_retire_request_replaces_child_new_before_old(supervise):
    sup, state, _ = supervise("worker=retire:1")
    sup.wait_line("worker.1 retiring (max-requests 3)")
    wait_for(lambda: len(list(state.glob("*.stopped"))) >= 1, what="the retired child to stop")
    assert len(started(state, "worker.1")) >= 2
    sup.signal(signal.SIGTERM)
    assert sup.wait() == exitcodes.OK




def test_second_interrupt_is_a_fast_stop(supervise):
    sup, state, _ = supervise("worker=slow-stop:1")
    sup.wait_line("all processes ready")
    sup.signal(signal.SIGINT)
    sup.wait_line("graceful stop")
    sup.signal(signal.SIGINT)
    sup.wait_line("fast stop: killing all processes")
    assert sup.wait() == exitcodes.OK
    assert sup.descendants() == []




def test_control_socket_status_reload_stop(supervise):
    sup, state, sock = supervise("worker=ok:2")
    sup.wait_line("all processes ready")
    status = control.request(sock, "status")
    assert status["ok"] and status["supervisor"]["ready"]
    assert [p["name"] for p in status["processes"]] == ["worker.1", "worker.2"]
    for proc in status["processes"]:
        assert proc["state"] == "ready" and proc["rss"] > 0 and proc["last_heartbeat"] < 3
    wait_for(lambda: all((p["requests"] or 0) > 0 for p in control.request(sock, "status")["processes"]),
             what="requests counters to move")
    assert control.request(sock, "bogus")["ok"] is False
    assert control.request(sock, "reload")["ok"]
    sup.wait_line("reload: replacing 2")
    assert control.request(sock, "stop")["ok"]
    assert sup.wait() == exitcodes.OK
    with pytest.raises(control.ControlError, match="no running procman"):
        control.request(sock, "status")


def test_child_over_max_memory_is_replaced_new_before_old(supervise):
    sup, state, _ = supervise("worker=hog:1", env={"SUPERVISE_MAX_MEMORY": str(64 * 2**20)})
    sup.wait_line("worker.1 retiring (RSS ")
    assert "over --max-memory 64 MiB" in sup.output
    wait_for(lambda: len(list(state.glob("worker.1.*.stopped"))) >= 1, what="the over-memory child to stop")
    assert len(started(state, "worker.1")) >= 2
    sup.signal(signal.SIGTERM)
    assert sup.wait() == exitcodes.OK
