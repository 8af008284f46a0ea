"""Helpers for the end-to-end tests: real HTTP and WebSocket clients against the interface."""
from __future__ import annotations

import http.client
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .conftest import REPO, process_env

TIMEOUT = 15


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def cookies_from(headers: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            key, _, rest = value.partition("=")
            found[key.strip()] = rest.split(";")[0]
    return found


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def login(port: int, username: str, password: str) -> dict[str, str]:
    """Log in through the admin login form (CSRF and all); returns the browser's cookies."""
    status, headers, body = http_request(port, "GET", "/admin/login/")
    assert status == 200, body[:500]
    cookies = cookies_from(headers)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = f"username={username}&password={password}&next=/whoami/&csrfmiddlewaretoken={token}"
    status, headers, body = http_request(
        port, "POST", "/admin/login/", form.encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie_header(cookies)},
    )
    assert status == 302, body[:500]
    cookies.update(cookies_from(headers))
    return cookies


def websocket(port: int, path: str, cookies: dict[str, str] | None = None) -> ClientConnection:
    headers = {"Cookie": cookie_header(cookies)} if cookies else None
    return connect(f"ws://127.0.0.1:{port}{path}", open_timeout=TIMEOUT, close_timeout=5,
                   additional_headers=headers)


def recv(ws: ClientConnection) -> Any:
    return ws.recv(timeout=TIMEOUT)


def create_users(db: Path, prefix: str, passwords: dict[str, str]) -> None:
    """Create (staff, so the admin login form accepts them) users, username -> password, in the
    processes' database: one ``manage.py shell`` for all of them (each Django start costs ~1 s)."""
    code = (
        "from django.contrib.auth.models import User\n"
        f"for username, password in {passwords!r}.items():\n"
        "    User.objects.create_user(username, password=password, is_staff=True)\n"
    )
    subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", code],
        cwd=REPO, env=process_env(prefix, "tests.django_glue.project.routing.channel_routing", db),
        check=True, timeout=60, capture_output=True,
    )


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()
