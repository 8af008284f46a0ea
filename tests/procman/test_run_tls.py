"""``procman run --certfile --keyfile``: HTTPS, HTTP/2 and wss from the supervisor, checked with curl,
websockets, h2load and headless Chromium against a real Django site; certificates re-read on reload."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme
import websockets

from .cdp import Browser, chromium_path
from .procs import HELLOSITE, Site, unique_prefix, wait_for


def _issue(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost signed by ``ca``, written to ``directory``."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = directory / "site.crt", directory / "site.key"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def _start(directory: Path, certfile: Path, keyfile: Path, sites: list[Site]) -> tuple[Site, str]:
    """Start a TLS site (added to ``sites`` at once, for the finalizer to close) and wait for it."""
    s = Site(["run", "--bind", "127.0.0.1:0", "--workers", "1", "--certfile", str(certfile),
              "--keyfile", str(keyfile)], HELLOSITE, unique_prefix("tls"), directory / "ctl")
    sites.append(s)
    url = s.wait_ready()
    assert url.startswith("https://127.0.0.1:"), url
    return s, url


@pytest.fixture
def tls(tmp_path):
    ca = trustme.CA()
    return (ca, *_issue(ca, tmp_path))


@pytest.fixture
def https_site(tmp_path, tls):
    """A TLS site of the test's own (for a test that changes it: reload)."""
    sites: list[Site] = []
    _, certfile, keyfile = tls

    def start() -> tuple[Site, str]:
        return _start(tmp_path, certfile, keyfile, sites)

    yield start
    for s in sites:
        s.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(site, url, ca)``: one TLS site shared by the tests that only send it requests (curl,
    websockets, h2load, Chromium). Sharing is safe: none of them reloads, signals or stops it, and
    each request is answered on its own (the site keeps no state between them)."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    sites: list[Site] = []
    try:
        yield (*_start(directory, *_issue(ca, directory), sites), ca)
    finally:
        for s in sites:
            s.close()


def _curl(url: str, *args: str) -> tuple[str, str]:
    done = subprocess.run(["curl", "-sk", "-m", "20", "-w", "\n%{http_version}", *args, url],
                          capture_output=True, text=True, timeout=30)
    body, _, version = done.stdout.rpartition("\n")
    return body, version


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (apt-get install curl)")
def test_run_serves_https_http2_and_wss(served):
    s, url, ca = served
    expected = f"hello from {s.prefix}\n"
    assert _curl(url) == (expected, "2")
    assert _curl(url, "--http2") == (expected, "2")
    assert _curl(url, "--http1.1") == (expected, "1.1")
    assert _curl(url.replace("https://", "http://"))[0] == ""  # plain HTTP on the TLS port gets nothing

    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def echo() -> str:
        async with websockets.connect(url.replace("https://", "wss://") + "ws", ssl=context, open_timeout=20) as ws:
            await ws.send("over wss")
            return await asyncio.wait_for(ws.recv(), 20)

    assert asyncio.run(echo()) == "over wss"


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed (apt-get install nghttp2-client)")
def test_h2load_bounded_run_has_no_failed_request(served):
    _, url, _ = served
    # 10 connections x 10 streams keep 100 requests in flight from the first moment: that is the
    # load; the total only sets how long it lasts (500: each stream carries 5 requests in turn).
    done = subprocess.run(["h2load", "-n", "500", "-c", "10", "-m", "10", url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Application protocol: h2" in done.stdout
    match = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                      done.stdout)
    assert match, done.stdout
    total, finished, succeeded, failed, errored = map(int, match.groups())
    assert (total, finished, succeeded, failed, errored) == (500, 500, 500, 0, 0), done.stdout
    assert "status codes: 500 2xx" in done.stdout


def _served_certificate(url: str) -> bytes:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            return sock.getpeercert(binary_form=True)


def test_reload_serves_a_renewed_certificate(https_site, tls, tmp_path):
    ca, certfile, keyfile = tls
    s, url = https_site()
    old = _served_certificate(url)
    renewed = ca.issue_cert("127.0.0.1", "localhost")
    renewed.cert_chain_pems[0].write_to_path(certfile)
    renewed.private_key_pem.write_to_path(keyfile)
    new = ssl.PEM_cert_to_DER_cert(certfile.read_text())
    assert new != old
    reload = s.cli("reload", "--name", s.prefix)
    assert reload.returncode == 0, reload.stderr
    wait_for(lambda: _served_certificate(url) == new, timeout=60, what="the renewed certificate")


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_chromium_loads_a_page_over_http2_and_opens_a_websocket(served, tmp_path):
    s, url, _ = served

    async def drive() -> tuple[str, str, str]:
        browser = Browser(tmp_path / "profile", extra_flags=["--ignore-certificate-errors"])
        try:
            await browser.connect()
            tab = await browser.open_tab(url)
            text = await browser.wait_js(tab, "document.body && document.body.innerText.includes('hello from')"
                                              " && document.body.innerText", 30)
            protocol = await browser.evaluate(tab, "performance.getEntriesByType('navigation')[0].nextHopProtocol")
            echoed = await browser.evaluate(tab, """
                new Promise((resolve, reject) => {
                  const ws = new WebSocket(location.origin.replace('https:', 'wss:') + '/ws');
                  ws.onopen = () => ws.send('from chromium');
                  ws.onmessage = (e) => { resolve(e.data); ws.close(); };
                  ws.onerror = () => reject(new Error('websocket failed'));
                  setTimeout(() => reject(new Error('websocket timed out')), 20000);
                })""")
            return text, protocol, echoed
        finally:
            await browser.close()
            browser.kill()

    text, protocol, echoed = asyncio.run(drive())
    assert text.strip() == f"hello from {s.prefix}"
    assert protocol == "h2"
    assert echoed == "from chromium"
