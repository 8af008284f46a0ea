"""``--cluster`` settings (flags and procman.toml) and the ``cluster`` row of ``procman status``."""

from __future__ import annotations

import json

import pytest

from asgi_ipc.cluster import ENV
from procman.cluster_link import link_role, read_status, site_env, status_path
from procman.config import ConfigError, resolve
from procman.project import Project
from procman.status import format_status


def test_procman_toml_sets_the_cluster(tmp_path):
    (tmp_path / "procman.toml").write_text(
        'cluster = "redis://:secret@10.0.0.5:6379/0"\ncluster-shared = ["thumbnail", "mail.*"]\n'
        'cluster-name = "shop"\ncluster-credit = 4\n')
    config = resolve({}, tmp_path)
    assert (config.cluster, config.cluster_shared, config.cluster_name, config.cluster_credit) == (
        "redis://:secret@10.0.0.5:6379/0", ["thumbnail", "mail.*"], "shop", 4)
    flagged = resolve({"cluster": "rediss://r:6380/1", "cluster_shared": ["x"]}, tmp_path)
    assert flagged.cluster == "rediss://r:6380/1" and flagged.cluster_shared == ["x"]


@pytest.mark.parametrize("setting, value, message", [
    ("cluster", "http://r:6379", "must be a Redis URL such as redis://"),
    ("cluster_shared", ["ifc!"], "'ifc!' is not allowed"),
    ("cluster_name", "a b", "cluster_name must be 1-64 letters"),
    ("cluster_credit", 0, "cluster_credit must be at least 1"),
])
def test_bad_cluster_settings_are_named(tmp_path, setting, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve({setting: value}, tmp_path)


def test_children_get_cluster_mode_and_one_link_role(tmp_path):
    config = resolve({"cluster": "redis://127.0.0.1:1/0", "cluster_shared": ["thumbnail"]}, tmp_path)
    assert json.loads(site_env(config)[ENV]) == {"shared": ["thumbnail"]}
    project = Project("mysite.settings", tmp_path, "default", object, {"prefix": "p"})
    role = link_role(config, project)
    assert role.name == "cluster" and role.count == 1 and role.stop_order == 2
    assert role.argv[role.argv.index("--url") + 1] == "redis://127.0.0.1:1/0"
    assert ENV not in role.env  # the link itself uses the plain shared-memory layer
    assert site_env(resolve({}, tmp_path)) == {}
    with pytest.raises(ValueError, match="--cluster-shared needs --cluster"):
        site_env(resolve({"cluster_shared": ["thumbnail"]}, tmp_path))


def test_status_row(tmp_path, monkeypatch):
    monkeypatch.setenv("PROCMAN_CONTROL_DIR", str(tmp_path))
    assert read_status("p") == {"cluster": {"state": "starting"}}
    row = {"state": "disconnected", "url": "redis://:***@r:6379/0", "origin": "m1", "machines": 3, "relayed_out": 5,
           "relayed_in": 7, "drops": 2, "lag": {"out": {"p50": 0.001, "p99": 0.004}, "in": None},
           "last_error": "ConnectionError: refused", "written": 0}
    status_path("p").write_text(json.dumps(row))
    text = format_status({"supervisor": {"pid": 1}, **read_status("p")})
    assert "cluster: disconnected (stale: the link has not reported for" in text
    assert "as m1, 3 machine(s) seen, relayed out 5, in 7, drops 2, lag p50/p99 out 1.0/4.0 ms, in -" in text
    assert "cluster: last error: ConnectionError: refused" in text


def test_export_systemd_keeps_the_cluster_flags(tmp_path, monkeypatch, capsys):
    from procman.cli import main

    from .procs import HELLOSITE

    monkeypatch.chdir(HELLOSITE)
    monkeypatch.setenv("HELLOSITE_PREFIX", "exported")
    assert main(["export", "systemd", "--cluster", "redis://r:6379/0", "--cluster-shared", "thumbnail",
                 "--cluster-name", "shop"]) == 0
    service = capsys.readouterr().out
    for flag in ("--cluster=redis://r:6379/0", "--cluster-shared=thumbnail", "--cluster-name=shop"):
        assert flag in service, service
