"""Routing: route filters, named groups, include chopping, dict/str forms, defaults order."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from django_glue.default_consumers import ViewConsumer, connect_accept, no_op
from django_glue.generic.websockets import WebsocketConsumer
from django_glue.message import Message
from django_glue.routing import Router, include, route, route_class

LAYER = object()  # routing never touches the layer; Message only stores it


def msg(channel, **content):
    return Message(content, channel, LAYER)


def consumer_a(message, **kwargs):
    pass


def consumer_b(message, **kwargs):
    pass


def test_route_matches_channel_and_filters_with_named_groups():
    r = route("websocket.connect", consumer_a, path=r"^/room/(?P<name>\w+)/$")
    assert r.match(msg("websocket.connect", path="/room/lobby/")) == (consumer_a, {"name": "lobby"})
    assert r.match(msg("websocket.connect", path="/other/")) is None
    assert r.match(msg("websocket.receive", path="/room/lobby/")) is None
    assert r.match(msg("websocket.connect")) is None  # filter key absent


def test_filters_are_anded_and_match_bytes_values():
    r = route("http.request", consumer_a, path=r"^/poll/$", method=r"^POST$")
    assert r.match(msg("http.request", path="/poll/", method="POST")) == (consumer_a, {})
    assert r.match(msg("http.request", path="/poll/", method="GET")) is None
    r2 = route("http.request", consumer_a, query_string=r"^a=(?P<a>\d+)")
    assert r2.match(msg("http.request", query_string=b"a=12")) == (consumer_a, {"a": "12"})


def test_positional_groups_are_refused():
    with pytest.raises(ValueError, match="named groups"):
        route("x", consumer_a, path=r"^/(\d+)/$")


def test_uncallable_consumer_and_bad_import_path():
    with pytest.raises(ValueError, match="not callable"):
        route("x", 42)
    with pytest.raises(ImproperlyConfigured, match="cannot import consumer"):
        route("x", "tests.django_glue.nope.consumer")


def test_string_consumer_path_is_imported():
    r = route("background", "tests.django_glue.project.routing.background_task")
    assert r.consumer.__name__ == "background_task"


def test_include_chops_prefix_and_merges_kwargs():
    inner = [route("websocket.connect", consumer_a, path=r"^/(?P<room_name>[a-z]+)/$")]
    r = include(inner, path=r"^/chat(?P<v>\d)")
    message = msg("websocket.connect", path="/chat2/lobby/")
    assert r.match(message) == (consumer_a, {"v": "2", "room_name": "lobby"})
    assert message["path"] == "/chat2/lobby/"  # the consumer sees the original message
    assert r.match(msg("websocket.connect", path="/lobby/")) is None


def test_inner_kwargs_win_over_include_kwargs():
    inner = [route("c", consumer_a, path=r"^(?P<x>b)")]
    assert include(inner, path=r"^(?P<x>a)").match(msg("c", path="ab")) == (consumer_a, {"x": "b"})


def test_first_match_wins_and_channel_names_union():
    router = Router([route("c", consumer_a, path=r"^/a"), route("c", consumer_b), [route("d", consumer_b)]])
    assert router.match(msg("c", path="/a")) == (consumer_a, {})
    assert router.match(msg("c", path="/b")) == (consumer_b, {})
    assert router.match(msg("d")) == (consumer_b, {})
    assert router.channels == {"c", "d"}


def test_dict_and_dotted_path_routings():
    assert Router({"x": consumer_a}).match(msg("x")) == (consumer_a, {})
    router = Router("tests.django_glue.project.routing.channel_routing")
    assert router.channels == {"background"}


def test_bad_routings_say_what_is_wrong():
    with pytest.raises(ImproperlyConfigured, match="not a route"):
        Router([consumer_a])
    with pytest.raises(ImproperlyConfigured, match="must be a list"):
        Router(42)
    with pytest.raises(ImproperlyConfigured, match="cannot import routing"):
        Router("tests.django_glue.project.routing.missing")


def test_route_class_uses_channel_names():
    r = route_class(WebsocketConsumer, path=r"^/ws/")
    assert r.channel_names() == {"websocket.connect", "websocket.receive", "websocket.disconnect"}
    with pytest.raises(ValueError, match="channel_names"):
        route_class(consumer_a)


def test_defaults_come_after_user_routes_and_are_added_once():
    router = Router([route("http.request", consumer_a, path=r"^/poll/$")])
    router.check_default()
    router.check_default()
    assert router.match(msg("http.request", path="/poll/")) == (consumer_a, {})
    consumer, _ = router.match(msg("http.request", path="/other/"))
    assert isinstance(consumer, ViewConsumer)
    assert router.match(msg("websocket.connect", path="/"))[0] is connect_accept
    assert router.match(msg("websocket.receive"))[0] is no_op
    assert router.match(msg("websocket.disconnect"))[0] is no_op
    assert router.match(msg("http.disconnect"))[0] is no_op
    assert len(router.root.routing) == 6
