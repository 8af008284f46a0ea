"""Response framing (status line, header block, chunks)."""

from procman.interface.http_response import chunk, response_head


def test_response_framing():
    assert response_head(200, [(b"content-length", b"2")], "1.1") == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    )
    assert response_head(599, [], "1.0").startswith(b"HTTP/1.0 599 Unknown\r\n")
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"") == b""  # an empty piece must not end a chunked body early
