"""``asgi_ipc.layer_settings``: the one reader of ``CHANNEL_LAYERS``, in memory (no Django, no
segment is created: building a layer is checked with a backend that only records its arguments)."""

from __future__ import annotations

import os

import pytest

from asgi_ipc import IPCChannelLayer
from asgi_ipc.cluster import ENV, ClusterMixin, cluster_env
from asgi_ipc.segment import segment_path
from asgi_ipc.layer_settings import DEFAULT_ALIAS, KNOWN_KEYS, LayerSettingsError, LayerSpec, read_layer

SHM = "asgi_ipc.IPCChannelLayer"
ROUTING = "mysite.routing.channel_routing"
SIZES = dict(message_memory=4 * 2**20, channels=256, groups=64, group_members=2048)


class Recorder:
    """A layer class that keeps its constructor arguments (``create`` among them)."""

    def __init__(self, prefix: str = "asgi", create: bool | None = None, **sizes: int) -> None:
        self.arguments = {"prefix": prefix, "create": create, **sizes}


class NoCreate:
    """A layer without segments (like the Redis layer): it takes no ``create``."""

    def __init__(self, hosts: list[str] | None = None) -> None:
        self.hosts = hosts


RECORDER = f"{__name__}.Recorder"
NO_CREATE = f"{__name__}.NoCreate"


def test_a_full_entry_is_read_into_a_spec_of_copies():
    config = {"prefix": "mysite"}
    layers = {"default": {"BACKEND": SHM, "CONFIG": config, "ROUTING": ROUTING, "TEST_CONFIG": {"channels": 64}}}
    spec = read_layer(layers, routing=True)
    assert spec == LayerSpec("default", SHM, {"prefix": "mysite"}, ROUTING, {"channels": 64}, "CHANNEL_LAYERS['default']")
    config["prefix"] = "changed"
    assert spec.config == {"prefix": "mysite"}  # a copy: callers may not change the settings


def test_optional_keys_default_and_other_aliases_are_read():
    spec = read_layer({"default": {"BACKEND": SHM}, "other": {"BACKEND": "x.Y", "ROUTING": []}}, "other")
    assert (spec.alias, spec.backend, spec.config, spec.routing, spec.test_config) == ("other", "x.Y", {}, [], None)
    assert read_layer({"default": {"BACKEND": SHM}}).config == {}
    assert DEFAULT_ALIAS == "default" and set(KNOWN_KEYS) == {"BACKEND", "CONFIG", "ROUTING", "TEST_CONFIG"}


@pytest.mark.parametrize(("layers", "kwargs", "message"), [
    (None, {}, "CHANNEL_LAYERS is not set, so it has no 'default' entry; add e.g. CHANNEL_LAYERS = {'default': "),
    ([], {}, "CHANNEL_LAYERS must be a dict of alias -> layer entry, not list; e.g. CHANNEL_LAYERS = {"),
    ({"a": {}, "b": {}}, {}, "CHANNEL_LAYERS has no 'default' entry (defined: 'a', 'b'); add one, or name a defined alias"),
    ({}, {"alias": "x"}, "CHANNEL_LAYERS has no 'x' entry (defined: none)"),
    ({"default": "asgi_ipc"}, {}, "CHANNEL_LAYERS['default'] must be a dict with 'BACKEND', 'CONFIG' and 'ROUTING', not str"),
    ({"default": {"BACKEND": SHM, "ROUTNIG": ROUTING, "OPTIONS": {}}}, {},
     "CHANNEL_LAYERS['default'] has unknown key(s) ['OPTIONS', 'ROUTNIG']; allowed: ['BACKEND', 'CONFIG', 'ROUTING', 'TEST_CONFIG']"),
    ({"default": {"CONFIG": {}}}, {}, "CHANNEL_LAYERS['default']['BACKEND'] must be the dotted path of a layer class, "
                                      "e.g. 'asgi_ipc.IPCChannelLayer', not None"),
    ({"default": {"BACKEND": "IPCChannelLayer"}}, {}, "['BACKEND'] must be the dotted path of a layer class"),
    ({"default": {"BACKEND": ".asgi_ipc.X"}}, {}, "not '.asgi_ipc.X'"),
    ({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer "}}, {}, "not 'asgi_ipc.IPCChannelLayer '"),
    ({"default": {"BACKEND": SHM, "CONFIG": [("prefix", "x")]}}, {},
     "CHANNEL_LAYERS['default']['CONFIG'] must be a dict of layer constructor arguments, not list"),
    ({"default": {"BACKEND": SHM, "CONFIG": None}}, {}, "['CONFIG'] must be a dict of layer constructor arguments, not NoneType"),
    ({"default": {"BACKEND": SHM, "TEST_CONFIG": 1}}, {}, "['TEST_CONFIG'] must be a dict of layer constructor arguments, not int"),
    ({"default": {"BACKEND": SHM}}, {"routing": True},
     "CHANNEL_LAYERS['default']['ROUTING'] is required: the dotted path of your routing list "
     "(e.g. 'mysite.routing.channel_routing') or the list itself"),
    ({"default": {"BACKEND": SHM, "ROUTING": None}}, {"routing": True}, "['ROUTING'] is required"),
    ({"default": {"BACKEND": SHM}}, {"where": "mysite.settings.CHANNEL_LAYERS", "routing": True},
     "mysite.settings.CHANNEL_LAYERS['default']['ROUTING'] is required"),
], ids=["unset", "not-a-dict", "no-alias", "no-alias-empty", "entry-not-a-dict", "unknown-keys", "no-backend",
        "backend-not-dotted", "backend-relative", "backend-spaces", "config-list", "config-none", "test-config",
        "routing-required", "routing-none", "where"])
def test_every_malformed_setting_is_one_error_saying_what_to_write(layers, kwargs, message):
    with pytest.raises(LayerSettingsError) as caught:
        read_layer(layers, **kwargs)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_routing_is_only_required_when_asked_for():
    assert read_layer({"default": {"BACKEND": SHM}}).routing is None


def test_backend_class_imports_and_can_require_the_shared_memory_layer():
    assert read_layer({"default": {"BACKEND": SHM}}).backend_class(shared_memory=True) is IPCChannelLayer
    spec = read_layer({"default": {"BACKEND": "asgi_ipc.channels.IPCChannelLayer"}})
    assert spec.backend_class().__module__ == "asgi_ipc.channels"
    with pytest.raises(LayerSettingsError, match=r"\['BACKEND'\] is 'asgi_ipc.channels.IPCChannelLayer', but procman "
                                                 r"runs a site on the shared-memory layer 'asgi_ipc.IPCChannelLayer'"):
        spec.backend_class(shared_memory=True)
    with pytest.raises(LayerSettingsError, match=r"\['BACKEND'\] = 'nope_xyz.Layer' cannot be imported: No module"):
        read_layer({"default": {"BACKEND": "nope_xyz.Layer"}}).backend_class()
    with pytest.raises(LayerSettingsError, match="'asgi_ipc.Nothing' cannot be imported"):
        read_layer({"default": {"BACKEND": "asgi_ipc.Nothing"}}).backend_class()


def test_attach_config_never_creates_unless_config_says_so_and_never_when_supervised():
    spec = read_layer({"default": {"BACKEND": RECORDER, "CONFIG": {"prefix": "p"}}})
    assert spec.attach_config() == {"prefix": "p", "create": False}
    assert spec.attach_config({"prefix": "q"}) == {"prefix": "q", "create": False}
    explicit = read_layer({"default": {"BACKEND": RECORDER, "CONFIG": {"create": True}}})
    assert explicit.attach_config() == {"create": True}  # a stand-alone process: the user's choice
    assert explicit.attach_config(supervised=True) == {"create": False}  # the supervisor owns it
    assert spec.config == {"prefix": "p"}  # untouched


def test_a_layer_without_create_is_attached_with_its_config_unchanged():
    spec = read_layer({"default": {"BACKEND": NO_CREATE, "CONFIG": {"hosts": ["redis://127.0.0.1"]}}})
    assert spec.attach_config() == spec.attach_config(supervised=True) == {"hosts": ["redis://127.0.0.1"]}
    assert spec.build(spec.attach_config()).hosts == ["redis://127.0.0.1"]
    redis = read_layer({"default": {"BACKEND": "asgi_ipc.redis.RedisChannelLayer", "CONFIG": {"prefix": "p"}}})
    pytest.importorskip("redis", reason="the Redis layer needs redis-py")
    assert "create" not in redis.attach_config() and "create" not in redis.parameters()


def test_build_passes_the_config_and_refuses_bad_arguments_clearly():
    spec = read_layer({"default": {"BACKEND": RECORDER, "CONFIG": {"prefix": "p"}}})
    assert spec.build().arguments == {"prefix": "p", "create": None}
    assert spec.build({"prefix": "q", "create": False}).arguments["create"] is False
    strict = read_layer({"default": {"BACKEND": NO_CREATE}})
    with pytest.raises(LayerSettingsError, match=r"CHANNEL_LAYERS\['default'\]: .*NoCreate rejected its CONFIG "
                                                 r"\['bogus', 'hosts'\]: .*unexpected keyword argument 'bogus'"):
        strict.build({"hosts": [], "bogus": 1})


def test_build_uses_the_cluster_class_under_procman_run_cluster(monkeypatch, prefix):
    spec = read_layer({"default": {"BACKEND": SHM, "CONFIG": {"prefix": prefix, "create": True, **SIZES}}})
    monkeypatch.delenv(ENV, raising=False)
    plain = spec.build()
    try:
        assert type(plain) is IPCChannelLayer
    finally:
        plain.close()
    monkeypatch.setenv(ENV, cluster_env(["thumbnail"])[ENV])
    layer = spec.build()
    try:
        assert isinstance(layer, ClusterMixin) and isinstance(layer, IPCChannelLayer)
    finally:
        layer.close()
    assert not os.path.exists(segment_path(prefix))


def test_test_layers_use_test_config_or_else_config():
    both = read_layer({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "CONFIG": {"prefix": "site"},
                                   "TEST_CONFIG": {"message_memory": 1 << 20}}})
    assert both.test_arguments() == {"message_memory": 1 << 20}
    only_config = read_layer({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "CONFIG": {"prefix": "site"}}})
    arguments = only_config.test_arguments()
    arguments["prefix"] = "changed"  # a copy: the spec is not changed through it
    assert only_config.test_arguments() == {"prefix": "site"}
