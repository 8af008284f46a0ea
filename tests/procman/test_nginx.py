"""The nginx recipe of docs/deploying.md (deploy/nginx/mysite.conf), with a real nginx in front of
``procman run``: on a UNIX socket and on TCP, HTTP, WebSocket upgrade, the client's address reaching
``request.META['REMOTE_ADDR']`` through ``X-Forwarded-For``, and static files served by nginx.

nginx runs as a foreground process of the test's own (``daemon off; master_process off``, so it
needs no root and no user switch), with its own prefix directory and a free port, and is stopped
after.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from procman import exitcodes

from .procs import REPO, Site, unique_prefix, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
RECIPE = REPO / "deploy" / "nginx" / "mysite.conf"
DEPLOYSITE = Path(__file__).with_name("sites") / "deploysite"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1 (nginx listens on both)."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe6 = socket.socket(socket.AF_INET6)
        try:
            probe6.bind(("::1", port))
            return port
        except OSError:
            continue
        finally:
            probe.close()
            probe6.close()
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


class Nginx:
    """The recipe, its paths replaced by the test's, run in the foreground."""

    def __init__(self, root: Path, upstream: str, static: Path) -> None:
        self.port = free_port()
        recipe = RECIPE.read_text()
        for old, new in (("listen 80;", f"listen 127.0.0.1:{self.port};\n    listen [::1]:{self.port};"),
                         ("server unix:/run/mysite/http.sock;", f"server {upstream};"),
                         ("alias /srv/mysite/static/;", f"alias {static}/;")):
            assert old in recipe, f"the recipe no longer contains {old!r}"
            recipe = recipe.replace(old, new)
        for name in ("logs", "temp"):
            (root / name).mkdir(parents=True, exist_ok=True)
        temp = root / "temp"
        (root / "nginx.conf").write_text(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {root}/nginx.pid;\nerror_log {root}/logs/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    access_log {root}/logs/access.log;\n"
            + "".join(f"    {kind}_temp_path {temp}/{kind};\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + recipe + "\n}\n"
        )
        test = subprocess.run([NGINX, "-t", "-p", str(root), "-c", str(root / "nginx.conf"), "-e", "stderr"],
                              capture_output=True, text=True, timeout=30)
        assert test.returncode == 0, test.stderr
        self.process = subprocess.Popen([NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", "stderr"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.root = root
        wait_for(self._answers, 20, "nginx to listen")

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.process.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def url(self, path: str, host: str = "[::1]") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def websocket_echo(url: str) -> str:
    from websockets.sync.client import connect

    with connect(url, open_timeout=30, close_timeout=5) as ws:
        ws.send("through nginx")
        return ws.recv(timeout=30)


def _start_nginx(root: Path, upstream: str) -> Nginx:
    """nginx in front of ``upstream``, its static directory holding ``app.css``."""
    static = root / "static"
    static.mkdir(exist_ok=True)
    (static / "app.css").write_text("body { color: teal }\n")
    return Nginx(root / "nginx", upstream, static)


def _free_tcp_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _start_site(binds: list[str], flags: list[str], control_dir: Path, started: list) -> Site:
    """``procman run`` on ``binds`` (added to ``started`` at once, for the finalizer), once ready."""
    prefix = unique_prefix("ngx")
    site = Site(["run", *(arg for bind in binds for arg in ("--bind", bind)), "--workers", "1", *flags],
                DEPLOYSITE, prefix, control_dir, env={"DEPLOYSITE_PREFIX": prefix})
    started.append(site)
    site.wait_line("ready at", 60)
    return site


def _stop_all(started: list) -> None:
    for thing in reversed(started):
        if isinstance(thing, Nginx):
            thing.stop()
        else:
            thing.close()


@pytest.fixture
def stack(tmp_path):
    """Start procman (``--bind`` given) and nginx in front of it; both stopped afterwards."""
    started: list = []

    def start(bind: str, upstream: str, *flags: str) -> tuple[Site, Nginx]:
        site = _start_site([bind], list(flags), tmp_path / "ctl", started)
        proxy = _start_nginx(tmp_path, upstream)
        started.append(proxy)
        return site, proxy

    yield start
    _stop_all(started)


@pytest.fixture(scope="module")
def plain_site(tmp_path_factory):
    """``(site, tcp_upstream, unix_upstream)``: one site without ``--proxy-headers``, bound to a TCP
    port and a UNIX socket, shared by the tests that check what such a site reports as the client's
    address (each puts its own nginx in front). Sharing is safe: they only send it requests and
    read the answers; none signals, reloads or stops it."""
    root = tmp_path_factory.mktemp("ngx")
    path = root / "run" / "http.sock"
    path.parent.mkdir()
    port = _free_tcp_port()
    started: list = []
    try:
        site = _start_site([f"127.0.0.1:{port}", f"unix:{path}"], [], root / "ctl", started)
        yield site, f"127.0.0.1:{port}", f"unix:{path}"
    finally:
        _stop_all(started)


@pytest.fixture
def proxy_to(tmp_path):
    """Start nginx in front of an upstream (``host:port`` or ``unix:PATH``); stopped afterwards."""
    started: list[Nginx] = []

    def start(upstream: str) -> Nginx:
        started.append(_start_nginx(tmp_path, upstream))
        return started[-1]

    yield start
    _stop_all(started)


def check_stack(site: Site, proxy: Nginx) -> None:
    status, body = get(proxy.url("/"))
    assert status == 200 and body.decode().startswith(f"hello from {site.prefix}")
    # The client's own address (IPv6 to nginx, while nginx reaches procman another way), even when
    # the client tries to claim another one: the recipe replaces X-Forwarded-For.
    status, body = get(proxy.url("/meta"), {"X-Forwarded-For": "203.0.113.9"})
    assert status == 200 and json.loads(body)["remote_addr"] == "::1", body
    status, body = get(proxy.url("/meta", "127.0.0.1"))
    assert json.loads(body)["remote_addr"] == "127.0.0.1"
    assert websocket_echo(f"ws://[::1]:{proxy.port}/ws/") == "echo: through nginx"
    status, body = get(proxy.url("/static/app.css"))
    assert status == 200 and body == b"body { color: teal }\n"
    assert get(proxy.url("/static/missing.css"))[0] == 404  # nginx's answer, not a request to Django


def test_nginx_in_front_of_a_unix_socket(stack, tmp_path):
    path = tmp_path / "run" / "http.sock"
    path.parent.mkdir()
    site, proxy = stack(f"unix:{path}", f"unix:{path}", "--proxy-headers")
    check_stack(site, proxy)
    # Requests went through the UNIX socket (nginx logged them, procman's access log too).
    assert "GET /meta" in (proxy.root / "logs" / "access.log").read_text()
    site.signal(15)
    assert site.wait(60) == exitcodes.OK and not path.exists()


def test_nginx_in_front_of_tcp(stack):
    port = _free_tcp_port()
    site, proxy = stack(f"127.0.0.1:{port}", f"127.0.0.1:{port}", "--proxy-headers")
    check_stack(site, proxy)


def test_without_proxy_headers_the_forwarded_address_is_ignored(plain_site, proxy_to):
    _site, tcp, _unix = plain_site
    proxy = proxy_to(tcp)
    status, body = get(proxy.url("/meta"))
    assert status == 200 and json.loads(body)["remote_addr"] == "127.0.0.1"  # nginx's, not ::1


def test_unix_socket_without_proxy_headers_still_has_a_remote_addr(plain_site, proxy_to):
    _site, _tcp, unix = plain_site
    proxy = proxy_to(unix)
    status, body = get(proxy.url("/meta"))
    assert status == 200 and json.loads(body)["remote_addr"] == "127.0.0.1", body
