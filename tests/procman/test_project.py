"""``procman.project.load_project`` in Channels 1 mode: the supervisor's reading of ``CHANNEL_LAYERS``
(the rules are :mod:`asgi_ipc.layer_settings`'; here, what the supervisor adds and how it reports)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asgi_ipc import IPCChannelLayer
from procman.project import ProjectError, load_project, uses_database


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    """A directory on ``sys.path``; the settings modules imported from it are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m, module in list(sys.modules.items())
                 if str(tmp_path) in str(getattr(module, "__file__", None) or "")]:
        del sys.modules[name]


def settings_module(directory: Path, name: str, layers: str) -> str:
    package = directory / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(f"SECRET_KEY = 'x'\nCHANNEL_LAYERS = {layers}\n")
    return f"{name}.settings"


def test_a_shared_memory_site_without_routing_loads(project_dir):
    module = settings_module(project_dir, "c1p_ok", "{'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', "
                                                    "'CONFIG': {'prefix': 'c1pok'}}}")
    project = load_project(module, project_dir)
    assert project.backend is IPCChannelLayer and project.layer_config == {"prefix": "c1pok"}
    assert project.prefix == "c1pok" and project.alias == "default"


@pytest.mark.parametrize(("name", "layers", "message"), [
    ("c1p_unknown", "{'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', 'ROUTNIG': 'x.y'}}",
     "c1p_unknown.settings.CHANNEL_LAYERS['default'] has unknown key(s) ['ROUTNIG']"),
    ("c1p_alias", "{'other': {'BACKEND': 'asgi_ipc.IPCChannelLayer'}}",
     "c1p_alias.settings.CHANNEL_LAYERS has no 'default' entry (defined: 'other')"),
    ("c1p_config", "{'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', 'CONFIG': 'prefix=x'}}",
     "c1p_config.settings.CHANNEL_LAYERS['default']['CONFIG'] must be a dict of layer constructor arguments, not str"),
    ("c1p_import", "{'default': {'BACKEND': 'c1p_nothing.Layer'}}",
     "c1p_import.settings.CHANNEL_LAYERS['default']['BACKEND'] = 'c1p_nothing.Layer' cannot be imported"),
    ("c1p_redis", "{'default': {'BACKEND': 'asgi_ipc.redis.RedisChannelLayer'}}",
     "['BACKEND'] is 'asgi_ipc.redis.RedisChannelLayer', but procman runs a site on the shared-memory layer "
     "'asgi_ipc.IPCChannelLayer' (it creates the segment)"),
], ids=["unknown-key", "missing-alias", "config", "unimportable", "not-shared-memory"])
def test_the_supervisor_refuses_what_it_cannot_run_with_the_readers_message(project_dir, name, layers, message):
    if name == "c1p_redis":
        pytest.importorskip("redis", reason="the Redis layer needs redis-py")
    module = settings_module(project_dir, name, layers)
    with pytest.raises(ProjectError) as caught:
        load_project(module, project_dir)
    assert message in str(caught.value)


@pytest.mark.parametrize("databases, expected", [
    ({}, False),  # Django's default: no database, so `procman run` starts no migration check
    ({"default": {}}, False),
    ({"default": {"ENGINE": "django.db.backends.dummy"}}, False),
    ({"other": {"ENGINE": "django.db.backends.sqlite3"}}, False),  # only the default is checked
    ({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}, True),
    ({"default": {"ENGINE": "django.db.backends.postgresql"}}, True),
    ("not a dict", True),  # Django reports that when it sets up; the check must run to say so
])
def test_uses_database_is_the_one_no_database_rule(databases, expected):
    assert uses_database(databases) is expected

