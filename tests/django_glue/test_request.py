"""AsgiRequest built straight from messages: headers in every accepted form, GET and COOKIES."""
from __future__ import annotations

import re
from typing import Any

import pytest

from django_glue.headers import MalformedHeaders, iter_headers
from django_glue.message import Message
from django_glue.request import AsgiRequest


def build(headers: Any = (), query: bytes | str = b"") -> AsgiRequest:
    content = {"reply_channel": "req!1", "method": "get", "path": "/p/", "query_string": query,
               "headers": headers, "body": b"", "server": ["127.0.0.1", 80]}
    return AsgiRequest(Message(content, "http.request", object()))


def test_headers_as_bytes_text_or_a_dict() -> None:
    pairs = [[b"X-Bytes", b"caf\xe9"], ("x-text", "t"), [b"Cookie", "a=1"], [b"cookie", b"b=2"]]
    request = build(pairs)
    assert request.META["HTTP_X_BYTES"] == "café"  # latin-1, as WSGI servers decode
    assert request.META["HTTP_X_TEXT"] == "t"
    assert request.COOKIES == {"a": "1", "b": "2"}
    assert build({b"Host": b"example.com"}).META["HTTP_HOST"] == "example.com"
    assert list(iter_headers([(b"A", "b")])) == [("a", "b")]


@pytest.mark.parametrize("headers, wrong", [
    ([[b"host"]], "[b'host'] is not a [name, value] pair"),
    (["ab"], "'ab' is not a [name, value] pair"),
    ([[b"host", 5]], "must be bytes or str, got 5"),
    ([[None, b"x"]], "must be bytes or str, got None"),
    (b"host: x", "must be a list of [name, value] pairs or a dict"),
])
def test_malformed_headers_say_what_is_wrong(headers: Any, wrong: str) -> None:
    with pytest.raises(MalformedHeaders, match=re.escape(wrong)):
        build(headers)


def test_get_is_parsed_when_read_and_again_after_an_encoding_change() -> None:
    request = build(query=b"q=caf%C3%A9&n=1&n=2")
    assert "GET" not in request.__dict__  # not parsed until a view reads it
    assert request.GET["q"] == "café" and request.GET.getlist("n") == ["1", "2"]
    request.encoding = "latin-1"
    assert request.GET["q"] == "cafÃ©"
    assert build(query="x=%20y").GET["x"] == " y"


def test_get_and_cookies_can_be_replaced() -> None:
    request = build([[b"cookie", b"a=1"]])
    request.COOKIES = {"b": "2"}
    request.GET = request.GET.copy()
    request.GET["x"] = "1"
    assert request.COOKIES == {"b": "2"} and request.GET["x"] == "1"
