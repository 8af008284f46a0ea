"""TLS through a ``-e ssl:...`` Twisted endpoint: https and wss schemes reach the application, ALPN
chooses HTTP/2 or HTTP/1.1."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from tests.procman.interface.conftest import Application, SharedInterface, read_http_response, shared_interface

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """One self-signed RSA key and certificate for the module: the tests only read the two files
    (the one that needs a broken certificate writes its own copy), so sharing them is safe."""
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, cert


@pytest.fixture(scope="module")
def _shared_tls(certificate, tmp_path_factory) -> Iterator[SharedInterface]:
    key, cert = certificate
    with shared_interface(
        tmp_path_factory, "-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", listen=None
    ) as served:
        yield served


@pytest.fixture
def served_tls(_shared_tls: SharedInterface) -> Iterator[tuple[Any, Application]]:
    """``(interface, app)``: one process serving an ``ssl:`` endpoint with the module's
    certificate, for the tests that only make requests on connections of their own. Sharing is
    safe: no test using it signals or stops the process, each reads the messages of its own
    connections, and the layer's channels are drained around each test."""
    with _shared_tls.for_test() as pair:
        yield pair


def test_https_and_wss(served_tls, certificate):
    key, cert = certificate
    interface, app = served_tls
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", interface.port, timeout=20, context=context)
    conn.request("GET", "/secure")
    request = app.request()
    assert request["scheme"] == "https"
    app.respond(request, content=b"over tls")
    assert conn.getresponse().read() == b"over tls"
    conn.close()

    # Server-side closes must complete the TLS shutdown: HTTP/1.0, close-delimited stream.
    raw = context.wrap_socket(interface.connect(), server_hostname="localhost")
    raw.sendall(b"GET /tls-stream HTTP/1.0\r\n\r\n")
    request = app.request()
    app.send(request["reply_channel"], {"status": 200, "content": b"part1,", "more_content": True})
    app.send(request["reply_channel"], {"content": b"part2"})
    status, headers, body = read_http_response(raw)
    assert (status, body) == (200, b"part1,part2")  # read to EOF: the server closed
    raw.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(
            connect, f"wss://127.0.0.1:{interface.port}/secure-ws", ssl=context, open_timeout=20, legacy=True
        )
        _, message = app.receive("websocket.connect")
        assert message["scheme"] == "wss"
        app.send(message["reply_channel"], {"text": "tls frame"})
        ws = future.result(timeout=20)
    assert ws.recv(timeout=10) == "tls frame"
    ws.close()
    assert app.receive_from("websocket.disconnect", message["reply_channel"])["code"] == 1000


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize(
    "curl_args, alpn, version",
    [([], "h2", "2"), (["--http1.1"], "http/1.1", "1.1"), (["--http2"], "h2", "2")],
    ids=["default-alpn", "http1.1", "http2-offered"],
)
def test_curl_gets_the_protocol_it_offers_first(served_tls, curl_args, alpn, version):
    interface, app = served_tls
    curl = subprocess.Popen(
        ["curl", "-sk", "-v", "-m", "20", *curl_args, f"https://127.0.0.1:{interface.port}/alpn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        request = app.request(timeout=20)
        assert request["scheme"] == "https" and request["http_version"] == version
        app.respond(request, content=b"alpn ok")
        out, err = curl.communicate(timeout=20)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait(timeout=5)
    assert out == "alpn ok"
    assert f"ALPN: server accepted {alpn}" in err


def test_python_ssl_offering_http11_by_alpn_negotiates_it(served_tls, certificate):
    _, cert = certificate
    interface, app = served_tls
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    context.set_alpn_protocols(["http/1.1"])
    sock = context.wrap_socket(interface.connect(), server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "http/1.1"
    sock.sendall(b"GET /py HTTP/1.1\r\nHost: x\r\n\r\n")
    app.respond(app.request(), content=b"py ok")
    assert read_http_response(sock)[2] == b"py ok"
    sock.close()


def test_bad_key_or_certificate_is_a_clear_start_up_error(layer, start_interface, certificate, tmp_path):
    key, cert = certificate
    broken = tmp_path / "broken.pem"
    broken.write_text(cert.read_text()[:200])
    for spec, detail in [
        (f"privateKey={tmp_path / 'missing.pem'}:certKey={cert}", "No such file"),
        (f"privateKey={key}:certKey={broken}", "Error"),
    ]:
        interface = start_interface(layer, "-e", f"ssl:0:interface=127.0.0.1:{spec}", listen=None, wait_ready=False)
        assert interface.wait() == 2
        assert detail in interface.stderr
        assert "privateKey= and certKey= must name readable PEM files" in interface.stderr
