"""An ordinary Django site through the interface server and runworker (real HTTP clients)."""
import hashlib
import json

import pytest

from tests.django_glue.project.views import FILE_SIZE

from .e2e import cookie_header, cookies_from, create_users, http_request, login

ROUTING = "tests.django_glue.project.routing.channel_routing"


@pytest.fixture(scope="module")
def site(module_processes):
    """One worker (2 threads) and one interface server for the tests below (4 process starts
    fewer): each makes its own requests on its own connections (own reply channels), logs in
    its own user, and none stops or kills them. The DEBUG one has a site of its own."""
    module_processes.runworker(ROUTING, "--threads", "2")
    return module_processes.interface()


def test_views_middleware_sessions_and_large_responses(site):
    port = site
    status, _, body = http_request(port, "GET", "/hello/")
    assert (status, body) == (200, b"hello")
    status, headers, body = http_request(port, "GET", "/big/")
    assert (status, len(body)) == (200, FILE_SIZE)
    status, headers, body = http_request(port, "GET", "/download/")
    expected = bytes(range(256)) * (FILE_SIZE // 256) + b"z" * (FILE_SIZE % 256)
    assert (status, hashlib.sha1(body).hexdigest()) == (200, hashlib.sha1(expected).hexdigest())
    assert http_request(port, "GET", "/stream/?parts=3")[2] == b"part0;part1;part2;"
    assert http_request(port, "GET", "/error/")[0] == 500
    status, headers, _ = http_request(port, "GET", "/session/")
    cookies = cookies_from(headers)
    assert http_request(port, "GET", "/session/", headers={"Cookie": cookie_header(cookies)})[2] == b"2"


def test_large_upload_streams_through_body_channel(site):
    port = site
    payload = b"u" * 3_000_000
    body = (b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"u.bin\"\r\n\r\n"
            + payload + b"\r\n--B--\r\n")
    status, _, response = http_request(port, "POST", "/echo/", body,
                                       {"Content-Type": "multipart/form-data; boundary=B"})
    assert status == 200, response[:300]
    assert json.loads(response)["files"] == {"f": len(payload)}


def test_form_csrf_and_admin_login(site, module_processes):
    create_users(module_processes.db, module_processes.prefix, {"ann": "secret"})
    port = site
    cookies = login(port, "ann", "secret")
    assert http_request(port, "GET", "/whoami/", headers={"Cookie": cookie_header(cookies)})[2] == b"ann"
    status, _, _ = http_request(port, "POST", "/form/", b"name=x",
                                {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403  # CSRF protection is active through the worker


def test_static_files_served_by_the_worker_when_debug(processes):
    processes.runworker(ROUTING, debug=True)
    port = processes.interface()
    status, headers, body = http_request(port, "GET", "/static/css/site.css")
    assert (status, body) == (200, b"body { color: #123456; }\n")
    assert http_request(port, "GET", "/static/admin/css/base.css")[0] == 200
