"""``procman doctor`` through the real command line, and the diagnostics it presents."""

import os
import signal
import subprocess
import sys
import time

from procman import doctor

from .procs import HELLOSITE, REPO, python, remove_segment, unique_prefix


def run_cli(*args, cwd=REPO, env=None):
    full = dict(os.environ, NO_COLOR="1", **(env or {}))
    return subprocess.run([python(), "-m", "procman", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=60)


def test_doctor_finds_and_cleans_a_stale_segment(tmp_path):
    prefix = unique_prefix("doc")
    creator = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom asgi_ipc import IPCChannelLayer\n"
         f"l = IPCChannelLayer(prefix={prefix!r}, create=True, message_memory=4 * 2**20)\n"
         "print('up', flush=True)\ntime.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert creator.stdout.readline().strip() == "up"
        creator.send_signal(signal.SIGKILL)
        creator.wait(10)
        path = f"/dev/shm/asgi_ipc.{prefix}"
        assert os.path.exists(path)
        past = time.time() - 3600
        os.utime(path, (past, past))  # as if the crash happened an hour ago
        report = run_cli("doctor", "--settings", "hellosite.settings", cwd=HELLOSITE, env={"HELLOSITE_PREFIX": prefix})
        assert f"WARN segments   asgi_ipc.{prefix}" in report.stdout and "stale: creator pid" in report.stdout
        assert "ok   settings   hellosite.settings imports; layer prefix" in report.stdout
        assert report.returncode == 0
        # Only this test's site: a bare --clean would also remove other tests' stale segments
        # (other xdist workers leave some on purpose, for their own doctor checks).
        cleaned = run_cli("doctor", "--clean", "--name", prefix)
        assert f"asgi_ipc.{prefix}" in cleaned.stdout and "removed (stale" in cleaned.stdout
        assert not os.path.exists(path)
    finally:
        creator.kill()
        creator.wait(10)
        remove_segment(prefix)


def test_doctor_fails_on_busy_port_and_broken_settings(tmp_path):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    (tmp_path / "bad_settings.py").write_text("raise RuntimeError('boom')\n")
    try:
        port = holder.getsockname()[1]
        report = run_cli("doctor", "--bind", f"127.0.0.1:{port}", "--settings", "bad_settings", cwd=tmp_path)
    finally:
        holder.close()
    assert report.returncode == 1
    assert f"FAIL ports      cannot listen on 127.0.0.1:{port}: address already in use" in report.stdout
    assert "FAIL settings   cannot import settings module 'bad_settings' (RuntimeError: boom)" in report.stdout


def test_remove_ipc_is_only_a_concern_where_systemd_runs():
    from asgi_ipc.diagnostics import removeipc_warning

    assert "RemoveIPC=yes" in removeipc_warning(1000, 999, systemd=True, remove_ipc=True, in_session=True)
    assert removeipc_warning(1000, 999, systemd=False, remove_ipc=True, in_session=True) is None
    assert removeipc_warning(1000, 999, systemd=True, remove_ipc=False, in_session=True) is None
    assert removeipc_warning(998, 999, systemd=True, remove_ipc=True, in_session=False) is None


def test_machine_findings_come_from_the_shared_survey():
    from asgi_ipc.diagnostics import survey

    data = survey(prefixes=["nosuchprefix"])
    findings = doctor.check_machine(data)
    (shm,) = [f for f in findings if f.check == "shm"]
    assert shm.level == "ok" and "free" in shm.message
    (fast,) = [f for f in findings if f.check == "fastpath"]
    assert fast.level == ("ok" if data["fastpath"]["active"] else "warn")
    assert [f.message for f in findings if f.check == "machine"] == data["warnings"]


def test_status_without_a_running_site_says_so(tmp_path):
    result = run_cli("status", env={"PROCMAN_CONTROL_DIR": str(tmp_path / "ctl")})
    assert result.returncode == 1 and "no running procman site found" in result.stderr


def test_run_outside_a_project_is_a_usage_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([python(), "-m", "procman", "run"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "no Django project found" in result.stderr


def test_every_executable_answers_version():
    from procman.cli import _version

    for argv, name in ((["-m", "procman", "--version"], "procman"),
                       (["-m", "procman", "interface", "--version"], "procman interface"),
                       (["-m", "asgi_ipc", "--version"], "asgi-ipc")):
        done = subprocess.run([python(), *argv], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0 and done.stdout.strip() == f"{name} {_version()}", done.stdout + done.stderr


def test_license_is_the_one_the_metadata_names():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "the asgi_ipc authors" in text
    assert "license = BSD-3-Clause" in (REPO / "setup.cfg").read_text()
