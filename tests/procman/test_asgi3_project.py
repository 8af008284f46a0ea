"""The ASGI 3 mode's supervisor-side rules, without processes: which projects are ASGI 3 ones,
application paths, worker pools, roles, and the flags each mode refuses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from procman import asgi3
from procman.config import ConfigError, resolve
from procman.project import ProjectError, load_project
from procman.site import SiteError, _check_mode

pytest.importorskip("channels", reason="the ASGI 3 mode needs Channels 4")


def settings_module(tmp_path: Path, name: str, text: str) -> str:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(text)
    return f"{name}.settings"


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("a3p_")]:
        del sys.modules[name]


def test_asgi_application_selects_the_mode_and_any_layer_is_accepted(project_dir):
    module = settings_module(project_dir, "a3p_redis", "ASGI_APPLICATION = 'mysite.asgi.application'\n"
                             "CHANNEL_LAYERS = {'default': {'BACKEND': 'channels_redis.core.RedisChannelLayer',"
                             " 'CONFIG': {'hosts': [('127.0.0.1', 6379)]}}}\n")
    project = load_project(module, project_dir)
    assert project.asgi_application == "mysite.asgi:application"
    assert project.backend is None and project.backend_path == "channels_redis.core.RedisChannelLayer"
    assert project.prefix == "a3p_redis"  # no segment: named after the settings package
    assert not asgi3.uses_shared_memory(project.backend_path)


def test_no_layer_at_all_is_fine_and_the_flag_wins(project_dir):
    module = settings_module(project_dir, "a3p_plain", "SECRET_KEY = 'x'\n")
    with pytest.raises(ProjectError, match="has no 'default' entry"):
        load_project(module, project_dir)  # neither ASGI_APPLICATION nor --asgi: a Channels 1 project
    project = load_project(module, project_dir, asgi="a3p_plain.asgi:app")
    assert project.asgi_application == "a3p_plain.asgi:app" and project.backend_path == ""


def test_shared_memory_layer_names_the_site_by_its_prefix(project_dir):
    module = settings_module(project_dir, "a3p_shm", "ASGI_APPLICATION = 'a3p_shm.asgi.application'\n"
                             "CHANNEL_LAYERS = {'default': {'BACKEND': 'asgi_ipc.channels.IPCChannelLayer',"
                             " 'CONFIG': {'prefix': 'shmsite'}}}\n")
    project = load_project(module, project_dir)
    assert project.prefix == "shmsite" and asgi3.uses_shared_memory(project.backend_path)


@pytest.mark.parametrize("bad", ["mysite", "mysite.asgi:", "my site.asgi:app", ":app", "mysite.asgi:app:x"])
def test_bad_application_paths_say_what_to_write(bad):
    with pytest.raises(ProjectError, match="is not an application path; use 'mysite.asgi:application'"):
        asgi3.normalise_application(bad, "--asgi")


def test_malformed_layer_entry_is_refused(project_dir):
    module = settings_module(project_dir, "a3p_bad", "ASGI_APPLICATION = 'x.asgi.application'\n"
                             "CHANNEL_LAYERS = {'default': {'CONFIG': {}}}\n")
    with pytest.raises(ProjectError, match=r"CHANNEL_LAYERS\['default'\]\['BACKEND'\] must be the dotted path of a layer class"):
        load_project(module, project_dir)


def test_worker_pools_from_flags_and_pools_with_channels_own_name_rule(tmp_path):
    config = resolve({"worker": [["thumbnails"], ["email", "sms"]], "pools": ["heavy=3:reports"]}, tmp_path)
    pools = asgi3.worker_pools(config)
    assert [(p.name, p.count, p.channels) for p in pools] == [
        ("thumbnails", 1, ["thumbnails"]), ("email-sms", 1, ["email", "sms"]), ("heavy", 3, ["reports"])]
    with pytest.raises(ConfigError, match="Channels 4 workers listen on channel names, not patterns"):
        asgi3.worker_pools(resolve({"pools": ["x=1:thumb*"]}, tmp_path))
    with pytest.raises(ConfigError, match="worker pool names must be unique"):
        asgi3.worker_pools(resolve({"worker": [["a"], ["a"]]}, tmp_path))


def test_roles_run_daphne_on_the_inherited_sockets_and_reload_them(tmp_path):
    from procman.project import Project
    from procman.sockets import bind, close_all

    config = resolve({"worker": [["tasks"]], "graceful_timeout": 7}, tmp_path)
    project = Project("mysite.settings", tmp_path, "default", None, {}, "mysite.asgi:application", "")
    listeners = [bind("127.0.0.1:0")]
    try:
        server, worker = asgi3.build_asgi3_roles(config, project, listeners)
        fd = listeners[0].fileno()
        assert server.name == "daphne" and server.pass_fds == (fd,) and server.reload and server.scalable
        assert f"fd:fileno={fd}:domain=INET" in server.argv and "mysite.asgi:application" in server.argv
        assert server.count == asgi3.server_count(config)  # one per core unless --interfaces
        assert worker.name == "worker-tasks" and worker.argv[-1] == "tasks" and worker.reload
        assert worker.stop_order > server.stop_order
        assert asgi3.server_count(resolve({"interfaces": 3}, tmp_path)) == 3
    finally:
        close_all(listeners)


def test_each_mode_refuses_the_other_modes_flags(tmp_path):
    from procman.project import Project

    channels1 = Project("mysite.settings", tmp_path, "default", object, {})
    with pytest.raises(ConfigError, match="--worker runs Channels 4 background workers"):
        _check_mode(resolve({"worker": [["tasks"]]}, tmp_path), channels1)
    asgi = Project("mysite.settings", tmp_path, "default", None, {}, "mysite.asgi:application", "")
    with pytest.raises(ConfigError, match="--only-channels: Channels 1 worker options"):
        _check_mode(resolve({"only_channels": ["http.*"]}, tmp_path), asgi)
    with pytest.raises(ConfigError, match=r"--workers \(from command line\): Channels 1 worker options"):
        _check_mode(resolve({"workers": 3}, tmp_path), asgi)


def test_missing_packages_are_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "daphne", None)  # find_spec() then reports it missing
    with pytest.raises(ProjectError, match=r"daphne is not installed; install with: pip install 'asgi_ipc\[channels4\]'"):
        asgi3.require_channels4()


def test_adopted_endpoint_honours_the_address_family():
    import socket

    from procman.asgi3_server import adopted_endpoint

    # No reactor is needed (or installed in the test process) until the endpoint listens.
    endpoint = adopted_endpoint(None, "fd:fileno=7:domain=INET6")
    assert endpoint.fileno == 7 and endpoint.addressFamily == socket.AF_INET6
    assert adopted_endpoint(None, "fd:fileno=5:domain=UNIX").addressFamily == socket.AF_UNIX
    with pytest.raises(ValueError, match="use fd:fileno=N:domain=INET"):
        adopted_endpoint(None, "fd:fileno=x")
    with pytest.raises(ValueError, match="use fd:fileno=N:domain=INET"):
        adopted_endpoint(None, "fd:fileno=3:domain=APPLETALK")
