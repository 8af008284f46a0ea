"""``procman demo`` end to end: pages, WebSocket chat between clients, and two Chromium tabs."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import websockets

from procman import exitcodes

from .cdp import Browser, chromium_path
from .procs import REPO, Site, http_get, unique_prefix


def start_demo(directory: Path, *args: str) -> Site:
    """``procman demo`` with its control socket and its data (SQLite) under ``directory``."""
    prefix = unique_prefix("demo")
    return Site(["demo", "--bind", "127.0.0.1:0", "--workers", "2", *args], REPO, prefix, directory / "ctl",
                env={"PROCMAN_DEMO_PREFIX": prefix, "PROCMAN_DEMO_DATA_DIR": str(directory / "data")})


@pytest.fixture
def demo(tmp_path):
    sites: list[Site] = []

    def start(*args: str) -> Site:
        s = start_demo(tmp_path, *args)
        sites.append(s)
        return s

    yield start
    for s in sites:
        s.close()


@pytest.fixture(scope="module")
def shared_demo(tmp_path_factory):
    """One demo site for the tests that only talk to it, each in its own chat room (``lobby``,
    ``browsers``): sharing is safe because none of them kills, reloads or stops it, or reads a
    room or group another test writes to."""
    s = start_demo(tmp_path_factory.mktemp("shared_demo"))
    try:
        s.url = s.wait_ready()
        yield s
    finally:
        s.close()


def test_demo_migrates_and_serves_pages_then_stops_clean(demo, tmp_path):
    s = demo()
    url = s.wait_ready()
    assert (tmp_path / "data" / "demo.sqlite3").exists()
    assert "demo chat: open the URL above" in s.output
    status, body = http_get(url)
    assert status == 200 and b"Chat rooms" in body and b"Channel layer, live" in body
    status, body = http_get(url + "room/lobby/")
    assert status == 200 and b"No messages yet" in body
    assert http_get(url + "room/no%20such/")[0] == 404
    stats = json.loads(http_get(url + "stats.json")[1])
    assert stats["global"]["messages_count"] >= 3
    assert "http.request" in {c["name"] for c in stats["channels"]}
    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK
    assert not s.segment_exists()


def test_chat_message_reaches_the_other_socket_and_the_history(shared_demo):
    url = shared_demo.url
    ws_url = url.replace("http://", "ws://") + "chat/lobby/"

    async def chat() -> tuple[dict, dict, dict]:
        async with websockets.connect(ws_url) as alice, websockets.connect(ws_url) as bob:
            for _ in range(50):  # both joined the group once the handshakes were accepted
                if json.loads(http_get(url + "stats.json")[1])["groups"].get("chat-lobby") == 2:
                    break
                await asyncio.sleep(0.1)
            await alice.send(json.dumps({"handle": "alice", "text": "hello <b>bob</b>"}))
            got_bob = json.loads(await asyncio.wait_for(bob.recv(), 10))
            got_alice = json.loads(await asyncio.wait_for(alice.recv(), 10))
            await bob.send("not json")
            error = json.loads(await asyncio.wait_for(bob.recv(), 10))
            return got_bob, got_alice, error

    got_bob, got_alice, error = asyncio.run(chat())
    assert got_bob["handle"] == "alice" and got_bob["text"] == "hello <b>bob</b>" and got_alice == got_bob
    assert "error" in error
    page = http_get(url + "room/lobby/")[1].decode()
    assert "hello &lt;b&gt;bob&lt;/b&gt;" in page  # stored, rendered, escaped
    assert "lobby" in http_get(url)[1].decode()


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_message_typed_in_one_chromium_tab_appears_in_another(shared_demo, tmp_path):
    url = shared_demo.url
    room = url + "room/browsers/"

    async def drive() -> str:
        browser = Browser(tmp_path / "profile")
        try:
            await browser.connect()
            tab_a, tab_b = await browser.open_tab(room), await browser.open_tab(room)
            for tab in (tab_a, tab_b):
                await browser.wait_js(tab, "document.getElementById('conn') && "
                                           "document.getElementById('conn').textContent === 'live'", 30)
            await browser.evaluate(tab_a, """
                (() => { const f = document.getElementById('send');
                  f.elements.handle.value = 'tab-a'; f.elements.text.value = 'typed in tab A';
                  f.requestSubmit(); return true; })()""")
            return await browser.wait_js(
                tab_b, "(() => { const t = document.getElementById('log').innerText;"
                       " return t.includes('typed in tab A') ? t : null; })()", 20)
        finally:
            await browser.close()
            browser.kill()

    text = asyncio.run(drive())
    assert "tab-a" in text and "typed in tab A" in text


def test_migration_runs_once_and_again_when_the_database_is_gone(tmp_path, monkeypatch):
    from procman.demo import setup

    monkeypatch.setenv("PROCMAN_DEMO_DATA_DIR", str(tmp_path / "data"))
    directory, flags, banner = setup.prepare_demo({"settings": None, "workers": 3})
    assert flags == {"settings": "procman.demo.settings", "workers": 3} and str(directory) in banner
    database = directory / "demo.sqlite3"
    assert database.exists() and (directory / ".migrated").exists()
    before = database.stat().st_mtime_ns
    setup.prepare_demo({})
    assert database.stat().st_mtime_ns == before  # up to date: not touched
    database.unlink()
    setup.prepare_demo({})
    assert database.exists()


def test_demo_refuses_other_settings(tmp_path, monkeypatch):
    from procman.demo import setup

    monkeypatch.setenv("PROCMAN_DEMO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(setup.DemoError, match="runs its own settings"):
        setup.prepare_demo({"settings": "mysite.settings"})
