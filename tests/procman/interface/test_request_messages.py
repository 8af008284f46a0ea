"""Request target splitting: the plain fast path and the decoding path give the same answers."""

from __future__ import annotations

import pytest

from procman.interface.request_messages import split_target


@pytest.mark.parametrize("target, expected", [
    (b"/a/b?x=1&y=%20", ("/a/b", b"x=1&y=%20")),
    (b"/plain", ("/plain", b"")),
    (b"/caf%C3%A9/%2F?q", ("/caf\u00e9//", b"q")),
    (b"/bad%FF", ("/bad\ufffd", b"")),
    (b"http://example.com/p?q=1", ("/p", b"q=1")),
    (b"HTTPS://example.com", ("/", b"")),
    (b"*", ("*", b"")),
])
def test_split_target(target: bytes, expected: tuple[str, bytes]) -> None:
    assert split_target(target) == expected
