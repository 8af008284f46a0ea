"""The supervisor's decisions (procman.policy) driven in memory: a fake clock, fake pids, no processes."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procman import exitcodes, policy
from procman.arbiter import _HANDLED_SIGNALS
from procman.policy import (
    AllReady, Exit, Log, MeasureMemory, Policy, ReleaseOutput, Role, SendSignal, Spawn,
)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Site:
    """Carries out the policy's actions the way the arbiter does, in memory.

    Spawns get consecutive fake pids; ``rss`` answers memory samples; everything else is recorded.
    """

    def __init__(self, *roles: Role, jitter: float = 0.0, **options) -> None:
        self.clock = Clock()
        self.policy = Policy(list(roles), clock=self.clock, jitter=lambda: jitter, **options)
        self.next_pid = 100
        self.logs: list[str] = []
        self.signals: list[tuple[int, int]] = []
        self.released: list[tuple[int, bool]] = []
        self.measured: list[int] = []
        self.rss: dict[int, int] = {}
        self.all_ready = 0
        self.exit: int | None = None
        self.fail_spawns = False
        self.apply(self.policy.start())

    def apply(self, actions: list[policy.Action]) -> list[policy.Action]:
        for action in actions:
            if isinstance(action, Spawn):
                if self.policy.stopping:
                    continue
                if self.fail_spawns:
                    self.apply(self.policy.spawn_failed(action.role, action.index, "[Errno 12] no memory"))
                    continue
                self.next_pid += 1
                self.apply(self.policy.spawned(action.role, action.index, self.next_pid))
            elif isinstance(action, Log):
                self.logs.append(action.text)
            elif isinstance(action, SendSignal):
                self.signals.append((action.pid, action.signum))
            elif isinstance(action, ReleaseOutput):
                self.released.append((action.pid, action.show))
            elif isinstance(action, MeasureMemory):
                self.measured.append(action.pid)
                if action.pid in self.rss:
                    self.apply(self.policy.memory_sample(action.pid, self.rss[action.pid]))
            elif isinstance(action, AllReady):
                self.all_ready += 1
            elif isinstance(action, Exit):
                self.exit = action.code
            else:
                raise AssertionError(f"unexpected action {action!r}")
        return actions

    # ---- events, as the arbiter reports them
    def tick(self, seconds: float = 0.0) -> list[policy.Action]:
        self.clock.now += seconds
        return self.apply(self.policy.tick())

    def on_signal(self, name: str) -> list[policy.Action]:
        return self.apply(self.policy.signal(name))

    def ready(self, *pids: int) -> None:
        for pid in pids or self.pids():
            self.apply(self.policy.ready_reported(pid))

    def exit_child(self, pid: int, code: int) -> list[policy.Action]:
        return self.apply(self.policy.exited(pid, code))

    def exit_signalled(self, signum: int = signal.SIGTERM) -> None:
        """Every child that was sent ``signum`` exits of it."""
        for pid in [p for p, s in self.signals if s == signum and p in self.policy.children]:
            self.exit_child(pid, -signum)

    # ---- what it looks like
    def pids(self, role: str | None = None, state: str | None = None) -> list[int]:
        return [c.pid for c in self.policy.children.values()
                if (role is None or c.role.name == role) and (state is None or c.state == state)]

    def names(self) -> list[str]:
        return [c.name for c in self.policy.children.values()]

    def sent(self, signum: int) -> set[int]:
        return {pid for pid, s in self.signals if s == signum}

    def log_with(self, text: str) -> list[str]:
        return [line for line in self.logs if text in line]


def worker(count: int = 1, **kw) -> Role:
    return Role("worker", ["w"], count=count, reload=True, scalable=True, recyclable=True, stop_order=1, **kw)


def interface(count: int = 1, **kw) -> Role:
    return Role("interface", ["i"], count=count, hup_on_reload=True, stop_order=0, **kw)


def test_start_spawns_every_slot_and_reports_ready_once_all_are():
    site = Site(interface(1), worker(2))
    assert site.names() == ["interface.1", "worker.1", "worker.2"]
    assert all(c.state == "booting" and c.generation == 1 for c in site.policy.children.values())
    site.tick(0.5)
    assert site.all_ready == 0 and site.names() == ["interface.1", "worker.1", "worker.2"], "no double spawn"
    site.ready(*site.pids("worker"))
    site.tick()
    assert site.all_ready == 0, "the interface is not ready yet"
    site.ready(*site.pids("interface"))
    assert {pid for pid, show in site.released if show} == set(site.pids()), "ready releases held output"
    site.tick()
    site.tick(5)
    assert site.all_ready == 1 and site.policy.ready


def test_a_role_without_heartbeat_is_ready_when_spawned_and_never_aborted():
    site = Site(Role("link", ["l"], heartbeat=False), heartbeat_timeout=5)
    [pid] = site.pids()
    assert site.released == [(pid, True)]
    site.tick()
    assert site.all_ready == 1
    site.tick(60)
    assert site.signals == [] and site.policy.children[pid].state == "ready"


def test_crash_restarts_with_exponential_backoff_capped():
    site = Site(worker())
    delays = []
    for _ in range(12):
        [pid] = site.pids()
        site.ready(pid)
        site.exit_child(pid, -signal.SIGKILL)
        assert site.pids() == []
        delay = site.policy.timeout()
        delays.append(round(delay, 3))
        site.tick(delay * 0.99 if delay < 1 else 0.5)
        assert site.pids() == [], "no restart before the backoff has elapsed"
        site.clock.now = site.policy.slots[("worker", 1)].not_before
        site.tick()
        assert len(site.pids()) == 1
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[4:] == [1.0] * 8, "the loop never sleeps longer than a TICK"
    logged = [float(line.rsplit("restarting in ", 1)[1].split()[0]) for line in site.log_with("restarting in")]
    assert logged == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0]
    assert site.log_with("died: killed by SIGKILL")
    assert site.policy.slots[("worker", 1)].restarts == 12
    assert site.log_with("started worker.1 (pid ")[-1].endswith("restart #12)")


def test_backoff_starts_afresh_after_a_stable_run_and_jitter_stays_under_ten_percent():
    site = Site(worker(), jitter=0.999)
    for _ in range(3):
        [pid] = site.pids()
        site.ready(pid)
        site.exit_child(pid, 1)
        site.tick(40)
    slot = site.policy.slots[("worker", 1)]
    assert slot.failures == 3
    [pid] = site.pids()
    site.ready(pid)
    site.tick(policy.STABLE_AFTER)
    site.exit_child(pid, 1)
    assert slot.failures == 1 and slot.restarts == 4
    assert slot.not_before - site.clock.now == pytest.approx(policy.BACKOFF_START * 1.0999)
    assert site.logs[-1].endswith("died: exit code 1; restarting in 0.1 s")


def test_a_crash_before_ready_without_the_boot_error_code_is_restarted():
    site = Site(worker())
    [pid] = site.pids()
    site.exit_child(pid, 1)
    assert site.released == [(pid, True)], "its output is shown"
    assert site.policy.exit_code == exitcodes.OK and not site.policy.stopping
    site.tick(1)
    assert len(site.pids()) == 1


def test_boot_error_after_ready_is_a_crash():
    site = Site(worker())
    [pid] = site.pids()
    site.ready(pid)
    site.exit_child(pid, exitcodes.BOOT_ERROR)
    assert not site.policy.stopping
    assert site.log_with("died: exit code 3 (failed to boot); restarting in")


def test_boot_failure_stops_the_run_with_exit_code_3_and_one_traceback():
    site = Site(interface(1), worker(3))
    i1, w1, w2, w3 = site.pids()
    site.ready(i1)
    for pid in (w1, w2):
        site.apply(site.policy.boot_error_reported(pid, "ImportError: no module named 'nosuch'"))
    site.apply(site.policy.boot_error_reported(w3, "OperationalError: no database"))
    site.exit_child(w1, exitcodes.BOOT_ERROR)
    assert site.log_with("worker.1 failed to boot: ImportError: no module named 'nosuch'")
    assert site.log_with("stopping: restarting it would fail the same way (exit code 3)")
    assert site.policy.stopping == "graceful" and site.policy.exit_code == exitcodes.BOOT_ERROR
    assert (w1, True) in site.released
    site.exit_child(w2, exitcodes.BOOT_ERROR)
    assert (w2, False) in site.released and site.log_with("worker.2 failed to boot the same way")
    site.exit_child(w3, exitcodes.BOOT_ERROR)
    assert (w3, True) in site.released, "a different boot error is shown"
    assert not site.log_with("worker.3 failed to boot the same way")
    site.tick()
    assert site.sent(signal.SIGTERM) == {i1}
    site.exit_signalled()
    site.tick()
    assert site.exit == exitcodes.BOOT_ERROR
    assert not site.log_with("restarting in"), "a boot failure is never retried"


def test_boot_failure_without_a_reported_reason_points_at_the_output():
    site = Site(worker())
    site.exit_child(site.pids()[0], exitcodes.BOOT_ERROR)
    assert site.log_with("worker.1 failed to boot: see its output above")


def test_hup_is_a_rolling_reload_new_before_old():
    site = Site(interface(1), worker(2))
    site.ready()
    site.tick()
    [i1], old = site.pids("interface"), site.pids("worker")
    site.on_signal("HUP")
    assert site.sent(signal.SIGHUP) == {i1}, "interfaces re-read their certificate instead"
    assert site.logs[-1] == "reload: replacing 2 process(es), new ones first (generation 2)"
    assert site.policy.reload_state == {"generation": 2, "state": "in progress", "message": ""}
    assert [site.policy.children[p].state for p in old] == ["retiring (reload)"] * 2
    site.tick()
    new = [pid for pid in site.pids("worker") if pid not in old]
    assert [site.policy.children[p].generation for p in new] == [2, 2]
    assert site.sent(signal.SIGTERM) == set(), "no old worker stops before its replacement is ready"
    site.ready(new[0])
    site.tick()
    assert site.sent(signal.SIGTERM) == {old[0]}
    site.ready(new[1])
    site.tick()
    assert site.sent(signal.SIGTERM) == set(old)
    assert site.policy.reload_state["state"] == "in progress", "not done while old ones still retire"
    site.exit_signalled()
    assert not site.log_with("restarting in"), "a retired child that stops is not restarted"
    site.tick()
    assert site.policy.reload_state == {"generation": 2, "state": "done", "message": "generation 2 serves"}
    assert site.logs[-1] == "reload done: every worker now runs generation 2"
    assert site.pids() == [i1, *new]
    assert not site.log_with("restarting in")


def test_a_stopped_child_exiting_is_logged_not_restarted():
    site = Site(worker(2))
    site.ready()
    site.on_signal("TTOU")
    site.tick()
    [surplus] = site.sent(signal.SIGTERM)
    site.exit_child(surplus, 0)
    assert site.logs[-1] == "worker.2 stopped (exit code 0)"
    site.tick(60)
    assert site.names() == ["worker.1"]


def test_reload_whose_new_child_cannot_boot_is_abandoned_and_keeps_the_old_ones():
    site = Site(worker(2))
    site.ready()
    site.tick()
    old = site.pids()
    site.on_signal("HUP")
    site.tick()
    bad, sibling = [pid for pid in site.pids() if pid not in old]
    site.apply(site.policy.boot_error_reported(bad, "SyntaxError: invalid syntax"))
    site.exit_child(bad, exitcodes.BOOT_ERROR)
    assert site.log_with("reload failed: new worker.1 could not boot: SyntaxError: invalid syntax")
    assert site.log_with("keeping the old processes; fix the error and reload again")
    assert site.policy.reload_state["state"] == "failed"
    assert "the old processes still serve" in site.policy.reload_state["message"]
    assert site.sent(signal.SIGTERM) == {sibling}, "the rest of the new generation is stopped"
    assert [site.policy.children[p].state for p in old] == ["ready", "ready"]
    assert not site.policy.stopping and site.policy.exit_code == exitcodes.OK
    site.exit_signalled()
    site.tick(60)
    assert sorted(site.pids()) == sorted(old), "nothing new is started: the old ones serve"


def test_second_reload_while_the_first_is_booting_stops_the_booting_children():
    site = Site(worker(1))
    site.ready()
    site.tick()
    [old] = site.pids()
    site.on_signal("HUP")
    site.tick()
    [booting] = [p for p in site.pids() if p != old]
    site.on_signal("HUP")
    assert site.sent(signal.SIGTERM) == {booting}
    assert site.logs[-1] == "reload: replacing 0 process(es), new ones first (generation 3)"
    site.exit_signalled()
    site.tick()
    [newest] = [p for p in site.pids() if p != old]
    assert site.policy.children[newest].generation == 3
    site.ready(newest)
    site.tick()
    site.exit_signalled()
    site.tick()
    assert site.policy.reload_state["state"] == "done" and site.policy.reload_state["generation"] == 3
    assert site.pids() == [newest]


def test_silent_child_is_aborted_then_killed_and_replaced():
    site = Site(worker(1), heartbeat_timeout=30)
    [pid] = site.pids()
    site.ready(pid)
    for _ in range(10):
        site.tick(20)
        site.apply(site.policy.beat(pid, requests=7))
    assert site.signals == [], "a child that beats is never aborted"
    assert site.policy.children[pid].requests == 7
    site.tick(30)
    assert site.signals == [], "exactly the timeout is not over it"
    site.tick(0.5)
    assert site.signals == [(pid, signal.SIGABRT)]
    assert site.logs[-1] == f"worker.1 (pid {pid}) sent no heartbeat for 30 s: aborting it (its stack follows if it can print one)"
    site.tick(policy.KILL_AFTER_ABORT - 0.5)
    assert site.sent(signal.SIGKILL) == set()
    site.tick(0.5)
    assert site.sent(signal.SIGKILL) == {pid}
    site.exit_child(pid, -signal.SIGKILL)
    assert site.logs[-1].startswith(f"worker.1 (pid {pid}) died: hung, killed; restarting in")
    site.tick(1)
    assert len(site.pids()) == 1 and site.pids() != [pid]


def test_child_not_ready_within_the_boot_timeout_is_aborted():
    site = Site(worker(1), heartbeat_timeout=30, boot_timeout=5)
    [pid] = site.pids()
    site.tick(5.5)
    assert site.signals == [(pid, signal.SIGABRT)]
    assert site.log_with("was not ready within 5 s")


def test_a_short_heartbeat_timeout_does_not_cut_a_slow_boot():
    site = Site(worker(1), heartbeat_timeout=2, boot_timeout=20)
    [pid] = site.pids()
    site.tick(10)
    assert site.signals == [], "still booting, within the boot timeout"
    site.ready()
    site.tick(2.5)
    assert site.signals == [(pid, signal.SIGABRT)]
    assert site.log_with("sent no heartbeat for 2 s")


def test_memory_is_sampled_every_two_seconds_and_an_over_limit_child_is_replaced_new_before_old():
    site = Site(interface(1), worker(2), max_memory=64 * 2**20)
    site.tick()
    assert site.measured == [], "booting children are not measured"
    site.ready()
    site.tick(policy.MEMORY_CHECK_EVERY)
    w1, w2 = site.pids("worker")
    assert site.measured == [w1, w2], "only recyclable ready children"
    site.tick(1)
    assert site.measured == [w1, w2], "not again before MEMORY_CHECK_EVERY"
    site.rss = {w1: 200 * 2**20, w2: 64 * 2**20}
    site.tick(1)
    assert site.measured == [w1, w2, w1, w2]
    assert site.logs[-1] == "worker.1 retiring (RSS 200 MiB over --max-memory 64 MiB); starting its replacement"
    assert site.policy.children[w2].retiring is None, "exactly the limit is not over it"
    site.tick()
    [new] = [p for p in site.pids("worker") if p not in (w1, w2)]
    assert site.sent(signal.SIGTERM) == set()
    site.ready(new)
    site.tick()
    assert site.sent(signal.SIGTERM) == {w1}


def test_without_max_memory_nothing_is_measured():
    site = Site(worker(2))
    site.ready()
    site.tick(60)
    assert site.measured == []
    assert site.policy.memory_sample(site.pids()[0], 2**40) == []


def test_retire_request_is_honoured_for_recyclable_roles_only():
    site = Site(interface(1), worker(1))
    site.ready()
    i1, w1 = site.pids()
    assert site.apply(site.policy.retire_requested(i1, "max-requests 3")) == []
    site.apply(site.policy.retire_requested(w1, "max-requests 3"))
    assert site.logs[-1] == "worker.1 retiring (max-requests 3); starting its replacement"
    assert site.apply(site.policy.retire_requested(w1, "again")) == [], "asked twice, retired once"
    site.tick()
    [new] = [p for p in site.pids("worker") if p != w1]
    site.exit_child(w1, 1)
    assert site.logs[-1] == f"retiring worker.1 (pid {w1}) exited early: exit code 1"
    site.tick(60)
    assert site.pids("worker") == [new], "its replacement was already on the way"


def test_graceful_stop_goes_in_stop_order_and_is_bounded():
    site = Site(interface(2), worker(2), graceful_timeout=30)
    site.ready()
    site.tick()
    interfaces, workers = site.pids("interface"), site.pids("worker")
    site.on_signal("TERM")
    assert site.logs[-1] == "graceful stop (up to 30 s; Ctrl-C again to force)"
    assert site.policy.timeout() == policy.STOP_POLL
    site.tick()
    assert site.sent(signal.SIGTERM) == set(interfaces), "interfaces first: in-flight requests still find workers"
    site.on_signal("TERM")
    assert site.policy.stopping == "graceful", "a second TERM changes nothing"
    site.exit_signalled()
    site.tick()
    assert site.sent(signal.SIGTERM) == set(interfaces + workers)
    site.exit_child(workers[0], 0)
    assert not site.log_with("stopped ("), "no line per child during a stop"
    site.tick(29)
    assert site.sent(signal.SIGKILL) == set()
    site.tick(1)
    assert site.logs[-1] == "graceful stop timed out; killing worker.2"
    assert site.sent(signal.SIGKILL) == {workers[1]} and site.policy.stopping == "fast"
    assert site.exit is None
    site.exit_child(workers[1], -signal.SIGKILL)
    site.tick()
    assert site.exit == exitcodes.OK
    assert not site.log_with("restarting")


def test_interrupt_twice_is_a_fast_stop_and_quit_is_one_at_once():
    site = Site(worker(2))
    site.ready()
    site.on_signal("INT")
    assert site.policy.stopping == "graceful"
    site.on_signal("INT")
    assert site.policy.stopping == "fast"
    assert site.log_with("fast stop: killing all processes")
    assert site.sent(signal.SIGKILL) == set(site.pids())

    site = Site(worker(2))
    site.on_signal("QUIT")
    assert site.sent(signal.SIGKILL) == set(site.pids())
    site.on_signal("TERM")
    assert site.policy.stopping == "fast", "nothing slows a fast stop down"
    for pid in site.pids():
        site.exit_child(pid, -signal.SIGKILL)
    site.tick()
    assert site.exit == exitcodes.OK


def test_reload_while_stopping_does_nothing():
    site = Site(worker(1))
    site.ready()
    site.on_signal("TERM")
    assert site.on_signal("HUP") == []
    assert site.policy.generation == 1
    assert site.policy.control({"command": "reload"}) == ({"ok": False, "error": "the site is stopping"}, [])


def test_a_stop_ends_a_reload_in_progress_as_failed():
    site = Site(worker(1))
    site.ready()
    site.on_signal("HUP")
    site.on_signal("TERM")
    assert site.policy.reload_state["state"] == "failed"
    assert site.policy.reload_state["message"] == "the site is stopping"


def test_ttin_and_ttou_scale_scalable_roles_never_below_one():
    site = Site(interface(1), worker(1))
    site.ready()
    site.on_signal("TTIN")
    assert site.logs[-1] == "scale: worker -> 2"
    assert site.policy.roles[0].count == 1, "interfaces are not scalable here"
    site.tick()
    assert site.names() == ["interface.1", "worker.1", "worker.2"]
    site.on_signal("TTOU")
    site.tick()
    [w2] = site.sent(signal.SIGTERM)
    assert site.policy.children[w2].name == "worker.2"
    site.exit_signalled()
    site.on_signal("TTOU")
    assert site.policy.roles[1].count == 1 and site.logs[-1] != "scale: worker -> 0"
    site.tick()
    assert site.names() == ["interface.1", "worker.1"]


def test_a_child_that_cannot_be_spawned_stops_everything_fast_with_exit_code_1():
    site = Site(worker(1))
    site.ready()
    site.fail_spawns = True
    site.on_signal("TTIN")
    site.on_signal("TTIN")
    site.tick()
    assert site.log_with("cannot start worker.2: [Errno 12] no memory; stopping")
    assert not site.log_with("cannot start worker.3"), "nothing more is spawned once stopping"
    assert site.policy.stopping == "fast" and site.sent(signal.SIGKILL) == set(site.pids())
    for pid in site.pids():
        site.exit_child(pid, -signal.SIGKILL)
    site.tick()
    assert site.exit == exitcodes.FAILURE


def test_fail_stops_gracefully_with_the_given_code_once():
    site = Site(worker(1))
    site.apply(site.policy.fail("the layer segment was removed"))
    assert site.logs == ["error: the layer segment was removed",
                         "graceful stop (up to 30 s; Ctrl-C again to force)"]
    assert site.policy.stopping == "graceful" and site.policy.exit_code == exitcodes.FAILURE
    assert site.policy.fail("again", 7) == [] and site.policy.exit_code == exitcodes.FAILURE


def test_control_requests():
    site = Site(worker(1))
    site.ready()
    reply, actions = site.policy.control({"command": "reload"})
    assert reply["ok"] and reply["generation"] == 2 and site.policy.generation == 2
    assert Log("reload: replacing 1 process(es), new ones first (generation 2)") in actions
    assert site.policy.control({"command": "bogus"})[0] == {
        "ok": False, "error": "unknown command 'bogus'; use status, reload or stop"}
    reply, actions = site.policy.control({"command": "stop", "fast": True})
    assert reply == {"ok": True, "message": "stopping fast"} and site.policy.stopping == "fast"
    site = Site(worker(1))
    assert site.policy.control({"command": "stop"})[0] == {"ok": True, "message": "stopping"}
    assert site.policy.stopping == "graceful"


def test_unknown_request_is_logged_and_ignored():
    site = Site(worker(1))
    assert site.on_signal("USR1") == [Log("ignoring unknown request 'USR1'")]
    assert not site.policy.stopping


def test_every_signal_the_arbiter_catches_has_one_handler():
    site = Site(worker(1))
    for name in _HANDLED_SIGNALS:
        if name != "CHLD":  # only wakes the loop to reap
            assert callable(getattr(site.policy, f"handle_{name.lower()}")), name
            assert getattr(site.policy, f"handle_{name.lower()}").__doc__


def test_timeout_sleeps_until_the_next_restart_is_due():
    site = Site(worker(2))
    assert site.policy.timeout() == policy.TICK
    site.exit_child(site.pids()[0], 1)
    assert site.policy.timeout() == pytest.approx(policy.BACKOFF_START)
    site.tick(0.04)
    assert site.policy.timeout() == pytest.approx(policy.BACKOFF_START - 0.04)


def test_events_about_children_already_reaped_are_ignored():
    site = Site(worker(1))
    [pid] = site.pids()
    site.exit_child(pid, 1)
    assert site.policy.ready_reported(pid) == []
    assert site.policy.beat(pid, 3) == []
    assert site.policy.retire_requested(pid, "x") == []
    assert site.policy.boot_error_reported(pid, "x") == []
    assert site.policy.exited(pid, 1) == []
    assert site.policy.memory_sample(pid, 2**40) == []


def test_role_names_must_be_unique():
    with pytest.raises(ValueError, match="role names must be unique"):
        Policy([worker(), worker()])


# ---------------------------------------------------------------- any sequence of events ----------

EVENTS = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.05, 0.5, 2.0, 11.0, 31.0])),
    st.tuples(st.just("signal"), st.sampled_from(["HUP", "TTIN", "TTOU", "TERM", "INT", "QUIT", "USR1"])),
    st.tuples(st.sampled_from(["ready", "beat", "retire", "booterror"]), st.integers(0, 7)),
    st.tuples(st.just("exit"), st.integers(0, 7), st.sampled_from([0, 1, exitcodes.BOOT_ERROR, -9, -15])),
    st.tuples(st.just("memory"), st.integers(0, 7), st.sampled_from([2**20, 2**30])),
    st.tuples(st.just("fail"), st.just(0)),
)


class CheckedSite(Site):
    """A Site that checks, for every action, what must hold whatever happened before."""

    def apply(self, actions: list[policy.Action]) -> list[policy.Action]:
        if self.exit is not None:
            assert actions == [] or all(isinstance(a, (Exit, Log)) for a in actions)
        for action in actions:
            if isinstance(action, SendSignal):
                assert action.pid in self.policy.children, "signals only go to live children"
            if isinstance(action, Exit):
                assert self.policy.children == {} and action.code in (0, 1, 3)
        return super().apply(actions)

    def check(self, reconciled: bool) -> None:
        for role in self.policy.roles:
            assert role.count >= 1
            current = [c.index for c in self.policy.children.values()
                       if c.role is role and not c.retiring and c.stop_sent is None]
            assert len(current) == len(set(current)), "one serving child per slot"
            if reconciled and not self.policy.stopping:
                assert all(index <= role.count for index in current), "surplus children are stopped"


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENTS, max_size=60))
def test_any_sequence_of_events_keeps_the_invariants_and_a_stop_always_ends(events):
    site = CheckedSite(interface(1), worker(2), graceful_timeout=30, heartbeat_timeout=30, max_memory=2**29)
    for kind, *args in events:
        pids = site.pids()
        pid = pids[args[0] % len(pids)] if pids and kind not in ("tick", "signal", "fail") else None
        was_stopping = site.policy.stopping
        if kind == "tick":
            actions = site.tick(args[0])
            if was_stopping:
                assert not any(isinstance(a, Spawn) for a in actions), "nothing starts during a stop"
        elif kind == "signal":
            site.on_signal(args[0])
        elif kind == "fail":
            site.apply(site.policy.fail("health check"))
        elif pid is None:
            continue
        elif kind == "ready":
            site.ready(pid)
        elif kind == "beat":
            site.apply(site.policy.beat(pid, 1))
        elif kind == "retire":
            site.apply(site.policy.retire_requested(pid, "max-requests"))
        elif kind == "booterror":
            site.apply(site.policy.boot_error_reported(pid, "ImportError"))
        elif kind == "exit":
            site.exit_child(pid, args[1])
        elif kind == "memory":
            site.apply(site.policy.memory_sample(pid, args[1]))
        assert not was_stopping or site.policy.stopping, "a stop is never undone"
        if site.exit is not None:
            return
        site.check(reconciled=kind == "tick")
    # Whatever state it is in, TERM ends the run once the children die of SIGKILL (they may ignore TERM).
    site.on_signal("TERM")
    for _ in range(5):
        site.tick(31)
        site.exit_signalled(signal.SIGKILL)
        site.tick()
        if site.exit is not None:
            break
    assert site.exit is not None and site.policy.children == {}
