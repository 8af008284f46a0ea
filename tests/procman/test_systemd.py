"""``procman export systemd``: units that systemd accepts, carrying every ``run`` flag.

Checked with the real ``systemd-analyze verify`` and started for real with
``systemd-socket-activate`` (both from the Debian package ``systemd``), which binds the
``.socket`` unit's address and execs the service's ``ExecStart`` with ``LISTEN_FDS`` the way
systemd does.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from procman import exitcodes
from procman.cli import build_parser, run_flag_actions
from procman.systemd import quote
from tests.children import end_with_parent

from .procs import HELLOSITE, REPO, http_get, python, remove_segment, unique_prefix, wait_for

ANALYZE = shutil.which("systemd-analyze")
ACTIVATE = shutil.which("systemd-socket-activate")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
needs_activate = pytest.mark.skipif(ACTIVATE is None,
                                    reason="systemd-socket-activate is not installed (apt-get install systemd)")


def export(tmp_path: Path, *flags: str, prefix: str = "hello", cwd: Path = HELLOSITE) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", HELLOSITE_PREFIX=prefix)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([python(), "-m", "procman", "export", "systemd", "--output", str(tmp_path), *flags],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def verify(*units: Path) -> None:
    """``systemd-analyze verify`` must accept the units without a single complaint (it only warns,
    with exit code 0, about a ListenStream it ignores - so its output must be empty too)."""
    done = subprocess.run([ANALYZE, "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


def unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def exec_start(service: str) -> list[str]:
    """The ExecStart words (our quoting is a subset of what shlex reads; %% and $$ unescaped)."""
    (line,) = unit_values(service, "ExecStart")
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(line)]


@needs_analyze
@pytest.mark.parametrize("binds, streams", [
    (["127.0.0.1:8123"], ["127.0.0.1:8123"]),
    (["[::1]:8123"], ["[::1]:8123"]),
    (["8123"], ["127.0.0.1:8123"]),
    (["unix:/run/hello/http.sock"], ["/run/hello/http.sock"]),
    (["unix:/run/hello/http.sock", "0.0.0.0:8123", "[::]:8124"], ["/run/hello/http.sock", "0.0.0.0:8123", "[::]:8124"]),
])
def test_every_bind_form_gives_units_systemd_accepts(tmp_path, binds, streams):
    flags = [arg for spec in binds for arg in ("--bind", spec)]
    result = export(tmp_path, *flags, "--user", "www-site", "--socket-group", "www-data")
    assert result.returncode == 0, result.stderr
    service, sock = (tmp_path / "hello.service").read_text(), (tmp_path / "hello.socket").read_text()
    assert unit_values(sock, "ListenStream") == streams
    if any(s.startswith("/") for s in streams):
        assert unit_values(sock, "SocketUser") == ["www-site"] and unit_values(sock, "SocketGroup") == ["www-data"]
        assert unit_values(sock, "SocketMode") == ["0660"]
    else:
        assert not unit_values(sock, "SocketUser")
    # The control socket's directory is the service's own; the listening socket is not in it.
    assert unit_values(service, "RuntimeDirectory") == ["hello/control"]
    assert "PROCMAN_CONTROL_DIR=/run/hello/control" in unit_values(service, "Environment")
    assert "--bind" not in " ".join(exec_start(service))  # the .socket unit binds
    verify(tmp_path / "hello.socket", tmp_path / "hello.service")


def _sample(action: argparse.Action, tmp_path: Path) -> tuple[list[str], object]:
    """Command-line words for ``action`` and the value ``run`` must parse back from ExecStart."""
    flag = max(action.option_strings, key=len)
    special = {
        "settings": (["hellosite.settings"], "hellosite.settings"),
        "pools": (["thumb=1:thumb*"], ["thumb=1:thumb*"]),
        "max_memory": (["512M"], "512M"),
        "only_channels": (["http.*"], ["http.*"]),
        "exclude_channels": (["slow"], ["slow"]),
        "access_log": ([str(tmp_path / "access 100%.log")], str(tmp_path / "access 100%.log")),
        "root_path": (["/app"], "/app"),
        "http": (["h11"], "h11"),
        "forwarded_allow_ips": (["10.0.0.1,unix"], "10.0.0.1,unix"),
        "cluster": (["redis://10.0.0.5:6379/0"], "redis://10.0.0.5:6379/0"),
        "cluster_shared": (["thumbnail"], ["thumbnail"]),
        "cluster_name": (["shop"], "shop"),
        "certfile": (["/etc/ssl/site.pem"], "/etc/ssl/site.pem"),
        "keyfile": (["/etc/ssl/site.key"], "/etc/ssl/site.key"),
    }
    if action.dest in special:
        words, value = special[action.dest]
        return [flag, *words], value
    if isinstance(action, argparse._StoreConstAction):
        return [flag], action.const
    if action.choices:
        choice = sorted(action.choices)[-1]
        return [flag, str(choice)], choice
    if action.type in (int, float):
        return [flag, "3"], action.type("3")
    if action.nargs in ("+", "*") or isinstance(action, (argparse._AppendAction, argparse._ExtendAction)):
        return [flag, "chat"], ["chat"]
    if action.type is not None and action.type is not str:  # sizes
        return [flag, "2M"], 2 * 2**20
    return [flag, "x"], "x"


@needs_analyze
def test_every_run_flag_and_the_config_file_reach_exec_start(tmp_path):
    """Each option of `procman run` (from its own argparse definition, interface options included)
    is given once; `run` parses the exported ExecStart back to the same values."""
    config = tmp_path / "site.toml"
    config.write_text("workers = 2\n")
    words: list[str] = ["--config", str(config), "--bind", "127.0.0.1:8123"]
    expected: dict[str, object] = {"config": config}
    for action in run_flag_actions():
        if action.dest in ("bind", "config") or (action.dest == "colour" and action.const is True):
            continue
        if action.dest in ("asgi", "worker"):  # the ASGI 3 mode's own (test_asgi3_run exports them)
            continue
        sample, value = _sample(action, tmp_path)
        words += sample
        expected[action.dest] = value
    result = export(tmp_path, *words)
    assert result.returncode == 0, result.stderr
    service = (tmp_path / "hello.service").read_text()
    command = exec_start(service)
    assert command[0] == str(Path(sys.executable).with_name("procman")) and command[1] == "run"
    parsed = build_parser().parse_args(command[1:])
    for dest, value in expected.items():
        got = getattr(parsed, dest)
        if dest == "max_memory":
            got, value = str(got), str(value)
        assert got == value, f"{dest}: exported {got!r}, given {value!r}\n{service}"
    verify(tmp_path / "hello.socket", tmp_path / "hello.service")


@pytest.mark.parametrize("flags, message", [
    (["--bind", "fd://3"], "a systemd unit cannot inherit fd://"),
    (["--bind", "127.0.0.1:0"], "systemd needs a fixed port"),
    (["--bind", "unix:/run/hello/control/http.sock"], "is the service's RuntimeDirectory"),
    (["--socket-mode", "rw"], "must be an octal mode"),
    (["--proxy-headers", "--http-timeout", "soon"], "invalid float value"),
])
def test_what_systemd_cannot_do_is_refused_with_a_clear_error(tmp_path, flags, message):
    result = export(tmp_path, *flags)
    assert result.returncode == exitcodes.USAGE and message in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


def test_quoting_escapes_specifiers_and_variables():
    assert quote("plain/path_1.2") == "plain/path_1.2"
    assert quote("50%") == "50%%" and quote("$HOME") == '"$$HOME"'
    assert quote('a "b" c') == '"a \\"b\\" c"'
    assert shlex.split(quote("two words")) == ["two words"]


def _activate(tmp_path: Path, service: str, addresses: list[str], prefix: str) -> subprocess.Popen:
    """Run the unit's ExecStart the way systemd would, behind systemd-socket-activate (which, like
    systemd, hands the command only the environment it is told: the unit's Environment= lines)."""
    env = {"HELLOSITE_PREFIX": prefix, "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
    for assignment in unit_values(service, "Environment"):
        key, _, value = shlex.split(assignment)[0].partition("=")
        env[key] = value
    env["PROCMAN_CONTROL_DIR"] = str(tmp_path / "ctl")  # /run/NAME/control is systemd's to create
    (workdir,) = unit_values(service, "WorkingDirectory")
    setenv = [f"--setenv={key}={value}" for key, value in env.items()]
    listen = [f"--listen={address}" for address in addresses]
    return subprocess.Popen([ACTIVATE, *listen, *setenv, *exec_start(service)], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=end_with_parent())


def _stop(proc: subprocess.Popen, prefix: str) -> str:
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        return out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        remove_segment(prefix)


@needs_activate
def test_exported_units_serve_over_tcp_and_a_unix_socket_when_socket_activated(tmp_path):
    """One unit with both kinds of address (one activation: a boot and a stop is most of the time)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    prefix = unique_prefix("sdt")
    path = tmp_path / "run" / "http.sock"
    path.parent.mkdir()
    result = export(tmp_path, "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{path}", "--workers", "1", prefix=prefix)
    assert result.returncode == 0, result.stderr
    service = (tmp_path / f"{prefix}.service").read_text()
    streams = unit_values((tmp_path / f"{prefix}.socket").read_text(), "ListenStream")
    assert streams == [f"127.0.0.1:{port}", str(path)]
    proc = _activate(tmp_path, service, streams, prefix)
    try:
        # The first connection makes systemd-socket-activate exec procman, which adopts the sockets.
        status, body = wait_for(lambda: _try_get(f"http://127.0.0.1:{port}/"), 60, "the activated site")
        assert status == 200 and body.decode() == f"hello from {prefix}\n"
        answer = _unix_get(path)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(f"hello from {prefix}\n".encode())
        # `systemctl reload` runs ExecReload with the unit's environment: it waits for the new workers.
        (reload_line,) = unit_values(service, "ExecReload")
        reload = subprocess.run(shlex.split(reload_line), capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, PROCMAN_CONTROL_DIR=str(tmp_path / "ctl")))
        assert reload.returncode == 0 and "reload done" in reload.stdout, reload.stderr
    finally:
        out = _stop(proc, prefix)
    assert proc.returncode == exitcodes.OK, out
    assert "using 2 socket(s) from systemd socket activation" in out and "stopped (exit code 0)" in out
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")


def _try_get(url: str):
    try:
        return http_get(url, timeout=30)
    except OSError:
        return None


def _unix_get(path: Path) -> bytes:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(60)
    client.connect(str(path))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    return answer


def test_deploy_units_are_what_export_writes(tmp_path):
    """deploy/systemd/ (copied into docs/deploying.md) is the exporter's output for the example
    project, with the example's paths: regenerate it if this fails."""
    deploy = REPO / "deploy" / "systemd"
    result = export(tmp_path, "--unit", "mysite", "--user", "mysite", "--socket-group", "www-data",
                    "--bind", "unix:/run/mysite/http.sock", "--workers", "4", "--proxy-headers")
    assert result.returncode == 0, result.stderr
    program = str(Path(sys.executable).with_name("procman"))
    for suffix in ("service", "socket"):
        ours = (tmp_path / f"mysite.{suffix}").read_text()
        ours = ours.replace(program, "/srv/mysite/.venv/bin/procman").replace(str(HELLOSITE), "/srv/mysite")
        ours = re.sub(r"--settings=\S+", "--settings=mysite.settings", ours)
        assert (deploy / f"mysite.{suffix}").read_text() == ours
