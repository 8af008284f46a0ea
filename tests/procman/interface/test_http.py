"""HTTP through a real interface process: real sockets and clients, the test plays the app."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import threading

import pytest

from tests.procman.interface.conftest import HTTPReader, assert_closed, read_http_response


def _client(interface, timeout: float = 10.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", interface.port, timeout=timeout)


def test_request_message_has_every_field(layer, app, start_interface):
    interface = start_interface(layer, "--root-path", "/site")
    sock = interface.connect()
    sock.sendall(
        b"GET /caf%C3%A9/x?a=1&b=%20 HTTP/1.1\r\nHost: example.com\r\n"
        b"X-Dup: one\r\nX-Dup: two\r\nX_Spoofed: evil\r\nUser-Agent: Test\r\n\r\n"
    )
    request = app.request()
    assert request["method"] == "GET"
    assert request["http_version"] == "1.1"
    assert request["path"] == "/café/x"
    assert request["query_string"] == b"a=1&b=%20"
    assert request["root_path"] == "/site"
    assert request["scheme"] == "http"
    assert request["body"] == b""
    assert "body_channel" not in request
    assert request["client"] == ["127.0.0.1", sock.getsockname()[1]]
    assert request["server"] == ["127.0.0.1", interface.port]
    assert [b"x-dup", b"one"] in request["headers"] and [b"x-dup", b"two"] in request["headers"]
    assert [b"user-agent", b"Test"] in request["headers"]
    assert not any(name == b"x_spoofed" for name, _ in request["headers"])
    process_channel, _, local = request["reply_channel"].partition("!")
    assert process_channel.startswith("ifc.") and local
    app.respond(request, 201, b"made", headers=[[b"X-App", b"yes"], [b"Set-Cookie", b"a=1"], [b"Set-Cookie", b"b=2"]])
    reader = HTTPReader(sock)
    status, headers, body = reader.response()
    assert (status, body) == (201, b"made")
    assert headers[b"x-app"] == b"yes"
    assert reader.buffer == b""
    sock.close()


def test_small_body_is_inline(served):
    interface, app = served
    conn = _client(interface)
    conn.request("POST", "/form", body=b"x=1&y=2", headers={"Content-Type": "application/x-www-form-urlencoded"})
    request = app.request()
    assert request["body"] == b"x=1&y=2"
    assert "body_channel" not in request
    app.respond(request)
    assert conn.getresponse().status == 200
    conn.close()


def _read_body(app, request) -> bytes:
    body = request["body"]
    while True:
        _, chunk = app.receive(request["body_channel"])
        assert not chunk.get("closed")
        body += chunk.get("content", b"")
        if not chunk.get("more_content"):
            return body


def test_large_chunked_body_streams_through_a_full_body_channel(make_layer, start_interface):
    # Capacity 2 on body channels: the interface must wait and retry (with the socket paused)
    # instead of dropping chunks or buffering the whole upload.
    layer = make_layer(channel_capacity={"http.request.body*": 2})
    from tests.procman.interface.conftest import Application

    app = Application(layer)
    interface = start_interface(layer)
    payload = bytes(range(256)) * (4 * 4096 + 7)  # ~4 MB, not a multiple of the chunk size
    results: dict = {}

    def upload() -> None:
        conn = _client(interface, timeout=30)

        def pieces():
            for start in range(0, len(payload), 100_000):
                yield payload[start : start + 100_000]

        conn.request("PUT", "/upload", body=pieces(), encode_chunked=True)
        response = conn.getresponse()
        results["status"] = response.status
        results["body"] = response.read()
        conn.close()

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    request = app.request()
    assert "body_channel" in request and request["body_channel"].startswith("http.request.body?")
    assert _read_body(app, request) == payload
    app.respond(request, content=b"got it")
    thread.join(timeout=30)
    assert results == {"status": 200, "body": b"got it"}


def test_chunked_body_over_the_limit_gets_413_and_closes_the_body_channel(make_layer, start_interface):
    layer = make_layer()
    from tests.procman.interface.conftest import Application

    app = Application(layer)
    interface = start_interface(layer, "--max-request-body", "600K")
    sock = interface.connect()
    sock.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(8):
        sock.sendall(b"%x\r\n%s\r\n" % (100_000, b"b" * 100_000))
    status, _, _ = read_http_response(sock)
    assert status == 413
    request = app.request()  # the first 256 KiB had been streamed already
    body = request["body"]
    while True:
        _, chunk = app.receive(request["body_channel"])
        if chunk.get("closed"):
            break
        body += chunk["content"]
    assert len(body) <= 600 * 1024
    _, disconnect = app.receive("http.disconnect")
    assert disconnect["reply_channel"] == request["reply_channel"]
    sock.close()


def test_streaming_response_is_chunked_and_written_as_it_arrives(served):
    interface, app = served
    sock = interface.connect()
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    app.send(request["reply_channel"], {"status": 200, "headers": [[b"content-type", b"text/plain"]], "content": b"first,", "more_content": True})
    sock.settimeout(10)
    head = b""
    while b"first," not in head:
        head += sock.recv(65536)  # arrives before the response is finished
    assert b"transfer-encoding: chunked" in head
    app.send(request["reply_channel"], {"content": b"second,", "more_content": True})
    app.send(request["reply_channel"], {"content": b"", "more_content": True})
    app.send(request["reply_channel"], {"content": b"third"})
    rest = b""
    while not rest.endswith(b"0\r\n\r\n"):
        rest += sock.recv(65536)
    assert rest == b"7\r\nsecond,\r\n5\r\nthird\r\n0\r\n\r\n"
    sock.close()


def test_streaming_response_to_http_10_is_close_delimited(served):
    interface, app = served
    sock = interface.connect()
    sock.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
    request = app.request()
    app.send(request["reply_channel"], {"status": 200, "content": b"a", "more_content": True})
    app.send(request["reply_channel"], {"content": b"b"})
    status, headers, body = read_http_response(sock)
    assert (status, body) == (200, b"ab")
    assert b"transfer-encoding" not in headers and headers[b"connection"] == b"close"


def test_head_response_has_no_body(served):
    interface, app = served
    conn = _client(interface)
    conn.request("HEAD", "/h")
    request = app.request()
    app.respond(request, content=b"12345")
    response = conn.getresponse()
    assert response.getheader("content-length") == "5"
    assert response.read() == b""
    conn.request("GET", "/after")  # the connection is still in sync
    app.respond(app.request(), content=b"fine")
    assert conn.getresponse().read() == b"fine"
    conn.close()


def test_second_status_is_logged_once_and_ignored(served):
    interface, app = served
    logged_before = len(interface.stderr)  # the process's stderr is shared with other tests
    conn = _client(interface)
    conn.request("GET", "/twice")
    request = app.request()
    channel = request["reply_channel"]
    app.send(channel, {"status": 200, "content": b"one,", "more_content": True})
    app.send(channel, {"status": 500, "content": b"BAD", "more_content": True})
    app.send(channel, {"status": 404, "content": b"BAD", "more_content": True})
    app.send(channel, {"content": b"two"})
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"one,two"
    conn.request("GET", "/next")
    app.respond(app.request(), content=b"still serving")
    assert conn.getresponse().read() == b"still serving"
    assert interface.stderr[logged_before:].count("second Response") == 1
    conn.close()


def test_chunk_before_response_is_a_500(served):
    interface, app = served
    conn = _client(interface)
    conn.request("GET", "/nostatus")
    request = app.request()
    app.send(request["reply_channel"], {"content": b"no status"})
    assert conn.getresponse().status == 500
    conn.close()


def test_header_injection_in_a_response_is_a_500(served):
    interface, app = served
    conn = _client(interface)
    conn.request("GET", "/inject")
    request = app.request()
    app.respond(request, headers=[[b"x-a", b"1\r\nSet-Cookie: evil=1"]])
    response = conn.getresponse()
    assert response.status == 500
    assert response.getheader("set-cookie") is None
    conn.close()


def test_http_disconnect_only_when_the_client_leaves_early(layer, app, start_interface):
    interface = start_interface(layer)
    conn = _client(interface)
    conn.request("GET", "/complete")
    app.respond(app.request())
    assert conn.getresponse().read() == b"ok"
    conn.close()

    sock = interface.connect()
    sock.sendall(b"GET /long-poll HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    sock.close()
    _, disconnect = app.receive("http.disconnect")
    assert disconnect == {"reply_channel": request["reply_channel"], "path": "/long-poll"}
    # The completed request above produced none (Daphne 1.x sent one after every response).
    app.receive_nothing("http.disconnect")


def test_http_timeout_gives_503_and_a_stalled_stream_cannot_stop_the_checks(layer, app, start_interface):
    interface = start_interface(layer, "--http-timeout", "1")
    # A streaming response that stalls past the timeout (this killed Daphne 1.x's checker)...
    streaming = interface.connect()
    streaming.sendall(b"GET /stalls HTTP/1.1\r\nHost: x\r\n\r\n")
    stalled = app.request()
    app.send(stalled["reply_channel"], {"status": 200, "content": b"partial", "more_content": True})
    # ...and two requests the application never answers, one after the other.
    for path in (b"/never-1", b"/never-2"):
        sock = interface.connect()
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        app.request()
        status, _, body = read_http_response(sock, timeout=15)
        assert status == 503
        assert b"time limit" in body
        sock.close()
    assert_closed(streaming, timeout=15)
    assert "stalled" in interface.stderr


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GET\r\n\r\n", 400),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
    ],
    ids=["request-line", "non-ascii-path", "header-line", "huge-header", "many-headers", "long-uri", "cl-and-te", "bad-length", "http2"],
)
def test_bad_requests_get_4xx_and_the_connection_closes(served, raw, status):
    interface, app = served
    sock = interface.connect()
    sock.sendall(raw)
    got, headers, _ = read_http_response(sock)
    assert got == status
    assert headers[b"connection"] == b"close"
    assert_closed(sock)
    app.receive_nothing("http.request")


def test_proxy_headers_are_used_only_when_enabled(served, layer, app, start_interface):
    forwarded = b"X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\n"
    plain, plain_app = served  # default options: no --proxy-headers
    sock = plain.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + forwarded + b"\r\n")
    request = plain_app.request()
    assert request["client"][0] == "127.0.0.1" and request["scheme"] == "http"
    plain_app.respond(request)
    read_http_response(sock)
    sock.close()

    trusting = start_interface(layer, "--proxy-headers")
    sock = trusting.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + forwarded + b"\r\n")
    request = app.request()
    assert request["client"] == ["203.0.113.9", 8443]
    assert request["scheme"] == "https"
    app.respond(request)
    read_http_response(sock)
    sock.close()


def test_proxy_headers_from_a_peer_not_in_forwarded_allow_ips_are_ignored(layer, app, start_interface):
    forwarded = b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
    untrusting = start_interface(layer, "--proxy-headers", "--forwarded-allow-ips", "192.0.2.1")
    sock = untrusting.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + forwarded + b"\r\n")
    request = app.request()
    assert request["client"][0] == "127.0.0.1" and request["scheme"] == "http"
    app.respond(request)
    read_http_response(sock)
    sock.close()


def test_access_log_has_one_line_per_request(served):
    interface, app = served
    conn = _client(interface)
    conn.request("GET", "/logged?q=1")
    app.respond(app.request(), status=404, content=b"nope")
    conn.getresponse().read()
    conn.close()
    log = interface.wait_for_log('"GET /logged" 404 4', source="access")
    assert log.count("/logged") == 1
    [line] = [line for line in log.splitlines() if "/logged" in line]  # the log is shared
    assert line.startswith("127.0.0.1:") and " - - [" in line


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_with_expect_100_continue(served, tmp_path):
    interface, app = served
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"z" * 1_500_000)
    curl = subprocess.Popen(
        ["curl", "-s", "-S", "--max-time", "30", "-H", "Expect: 100-continue",
         "--data-binary", f"@{upload}", f"http://127.0.0.1:{interface.port}/curl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        request = app.request(timeout=20)
        assert _read_body(app, request) == upload.read_bytes()
        app.respond(request, content=b"curl ok")
        out, err = curl.communicate(timeout=30)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    assert out == b"curl ok", err
