"""Settings and the layer manager: aliases, TEST_CONFIG, clear ImproperlyConfigured errors."""
import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_glue.asgi import ChannelLayerManager, channel_layers, layer_settings
from django_glue.exceptions import InvalidChannelLayerError
from django_glue.test import isolated_layer

ROUTING = "tests.django_glue.project.routing.channel_routing"


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "CHANNEL_LAYERS is not set"),
        ([], "must be a dict of alias"),
        ({"other": {}}, r"has no 'default' entry \(defined: 'other'\)"),
        ({"default": "asgi_ipc"}, r"CHANNEL_LAYERS\['default'\] must be a dict"),
        ({"default": {"ROUTING": ROUTING}}, "BACKEND'] must be the dotted path"),
        ({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer"}}, "ROUTING'] is required"),
        ({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "ROUTING": ROUTING, "CONFIG": []}}, "CONFIG'] must be a dict"),
        ({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "ROUTING": ROUTING, "TEST_CONFIG": 1}}, "TEST_CONFIG'] must be a dict"),
        ({"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "ROUTING": ROUTING, "OPTIONS": {}}}, "unknown key"),
    ],
)
def test_malformed_settings_raise_improperly_configured(value, message):
    with override_settings(CHANNEL_LAYERS=value):
        with pytest.raises(ImproperlyConfigured, match=message):
            layer_settings("default")


def test_unimportable_backend_and_bad_config():
    manager = ChannelLayerManager()
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "nope.Layer", "ROUTING": ROUTING}}):
        with pytest.raises(InvalidChannelLayerError, match="cannot be imported"):
            manager["default"]
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "ROUTING": ROUTING, "CONFIG": {"bogus": 1}}}):
        with pytest.raises(InvalidChannelLayerError, match="rejected its CONFIG"):
            manager["default"]


def test_system_check_reports_broken_alias():
    broken = {"default": {"BACKEND": "asgi_ipc.IPCChannelLayer", "ROUTING": "tests.nope.routing"}}
    with override_settings(CHANNEL_LAYERS=broken):
        errors = checks.run_checks(tags=["django_glue"])
    assert [e.id for e in errors] == ["django_glue.E001"]
    assert "cannot import routing" in errors[0].msg
    assert checks.run_checks(tags=["django_glue"]) == []


def test_aliases_are_separate_layers_and_wrapper_proxies_the_layer():
    default, other = isolated_layer("default"), isolated_layer("other")
    try:
        assert default.alias == "default" and other.alias == "other"
        assert other.router.channels == {"other.work"}
        default.send("x", {"a": 1})
        assert other.receive(["x"], block=False) == (None, None)
        assert default.receive(["x"], block=False) == ("x", {"a": 1})
        assert default.ChannelFull is default.channel_layer.ChannelFull
        assert "groups" in default.extensions
    finally:
        default.channel_layer.close()
        other.channel_layer.close()


def test_manager_set_returns_previous_and_contains_checks_settings():
    manager = ChannelLayerManager()
    layer = isolated_layer()
    try:
        assert manager.set("default", layer) is None
        assert manager["default"] is layer
        assert manager.set("default", None) is layer
        assert "default" in manager and "other" in manager and "missing" not in manager
    finally:
        layer.channel_layer.close()


def test_get_channel_layer_returns_raw_layer(monkeypatch):
    from django_glue.asgi import get_channel_layer

    layer = isolated_layer()
    previous = channel_layers.set("default", layer)
    try:
        assert get_channel_layer() is layer.channel_layer
    finally:
        channel_layers.set("default", previous)
        layer.channel_layer.close()
