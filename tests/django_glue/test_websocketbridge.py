"""The JavaScript WebSocketBridge in headless Chromium against a real site (interface server +
runworker on a real layer): binding updates reaching the page, inbound create from the page, and
reconnection after the site restarts."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.django_glue.bindingsite.run import SiteProcesses, manage, site, site_db_template  # noqa: F401 (fixtures)
from tests.django_glue.conftest import stop_process
from tests.django_glue.e2e import http_request
from tests.procman.cdp import Browser, chromium_path

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (apt-get install -y chromium)")

SETUP = """
(() => {
  window.got = []; window.echoes = []; window.plain = []; window.opens = 0; window.closes = 0;
  const bridge = new channels.WebSocketBridge({minReconnectionDelay: 200, maxReconnectionDelay: 1000});
  bridge.connect("/things/lobby/");
  bridge.socket.addEventListener("open", () => { window.opens += 1; });
  bridge.socket.addEventListener("close", () => { window.closes += 1; });
  bridge.listen((message, stream) => window.plain.push([message, stream]));
  bridge.demultiplex("things", (payload, stream) => window.got.push(payload));
  bridge.demultiplex("echo", (payload, stream) => window.echoes.push([payload, stream]));
  window.bridge = bridge;
  return true;
})()
"""

CHANGES = """
from tests.django_glue.bindingsite.things.models import Thing
one = Thing.objects.create(room="lobby", name="one", value=1)
one.value = 2
one.save()
two = Thing.objects.create(room="attic", name="two", value=0)  # not seen by the lobby
two.room = "lobby"
two.save()                                                     # moved in: a create for the lobby
one.delete()
"""


def rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT room, name, value FROM things_thing ORDER BY id").fetchall()


def start_site(site: SiteProcesses, port: int = 0) -> int:
    sock = site.listen(port)
    site.runworker("--threads", "2", debug=True)
    site.interface_on(sock)
    return sock.getsockname()[1]


def test_bridge_binding_inbound_and_reconnect(site: SiteProcesses, tmp_path: Path) -> None:
    port = start_site(site)
    # Served by staticfiles under the name Channels 1 used, so {% static %} in templates works.
    status, _, body = http_request(port, "GET", "/static/channels/js/websocketbridge.js")
    assert status == 200 and b"WebSocketBridge" in body, body[:300]
    status, _, body = http_request(port, "GET", "/bridge/")
    assert status == 200 and b'src="/static/channels/js/websocketbridge.js"' in body
    page = f"http://127.0.0.1:{port}/bridge/"

    async def drive() -> dict[str, Any]:
        browser = Browser(tmp_path / "profile")
        results: dict[str, Any] = {}
        try:
            await browser.connect()
            tab = await browser.open_tab(page)
            await browser.wait_js(tab, "typeof channels !== 'undefined'", 30)
            # The pure parts: backoff policy, URL resolution, mistakes reported clearly.
            results["delays"] = await browser.evaluate(tab, """[0, 1, 2, 10].map(a =>
                channels.WebSocketBridge.reconnectDelay(a, {minReconnectionDelay: 100,
                    reconnectionDelayGrowFactor: 2, maxReconnectionDelay: 500}))""")
            results["url"] = await browser.evaluate(
                tab, "['/x/', 'y/', 'wss://elsewhere/z'].map(channels.WebSocketBridge.resolveUrl)")
            results["errors"] = await browser.evaluate(tab, """(() => {
                const out = [];
                const warn = console.warn;
                console.warn = (text) => out.push(text);
                try { new channels.WebSocketBridge({retries: 3}); } finally { console.warn = warn; }
                try { new channels.WebSocketBridge().send({}); } catch (e) { out.push(e.message); }
                return out; })()""")

            await browser.evaluate(tab, SETUP)
            await browser.wait_js(tab, "window.opens === 1", 30)
            await browser.evaluate(tab, "bridge.stream('echo').send({hello: 1}), true")
            results["echo"] = await browser.wait_js(tab, "window.echoes.length && window.echoes[0]", 20)

            # Frames that are not multiplexed go to listen() with stream null; one that is not
            # JSON is reported on the console and skipped.
            await browser.evaluate(tab, """(() => {
                window.plainBridge = new channels.WebSocketBridge();
                plainBridge.connect("/plain/");
                plainBridge.listen((message, stream) => window.plain.push([message, stream]));
                plainBridge.send({ping: 1});      // queued until the socket opens
                return true; })()""")
            results["plain"] = await browser.wait_js(tab, "window.plain.length >= 2 && window.plain", 20)

            # ORM changes in another process reach the page as binding frames.
            done = await asyncio.to_thread(manage, site.prefix, site.db, "shell", "-c", CHANGES)
            assert done.returncode == 0, done.stderr
            results["outbound"] = await browser.wait_js(
                tab, "window.got.length >= 4 && window.got.map(p => [p.action, p.data.name, p.data.value, p.model])", 20)

            # Inbound: a create sent by the page is saved and comes back to it through the binding;
            # a delete is refused by has_permission.
            await browser.evaluate(tab, """bridge.stream('things').send(
                {action: 'create', data: {room: 'lobby', name: 'from page', value: 7}}), true""")
            results["inbound"] = await browser.wait_js(
                tab, "(window.got.find(p => p.data.name === 'from page') || null)", 20)
            await browser.evaluate(tab, f"""bridge.stream('things').send(
                {{action: 'delete', pk: {json.dumps(results['inbound']['pk'])}}}), true""")
            await browser.evaluate(tab, "bridge.stream('echo').send({after: 'delete'}), true")
            await browser.wait_js(tab, "window.echoes.length === 2", 20)

            # refresh(): a new connection at once (no backoff wait).
            await browser.evaluate(tab, "bridge.socket.refresh(), true")
            await browser.wait_js(tab, "window.opens === 2", 20)

            # The site restarts: the socket closes, reconnection attempts are refused for a while
            # (the port is closed), then the new site accepts one and everything works again.
            for proc in list(site.started):
                await asyncio.to_thread(stop_process, proc)
            for sock in site.sockets:
                sock.close()
            site.sockets.clear()
            await browser.wait_js(tab, "window.closes >= 1 && bridge.socket.readyState !== 1", 20)
            await browser.wait_js(tab, "bridge.socket.attempts >= 2", 20)  # refused, backing off
            await asyncio.to_thread(start_site, site, port)
            await browser.wait_js(tab, "window.opens === 3", 30)
            results["reconnects"] = await browser.evaluate(tab, "bridge.socket.reconnects")
            await browser.evaluate(tab, "bridge.stream('echo').send({again: true}), true")
            results["echo_again"] = await browser.wait_js(tab, "window.echoes.length === 3 && window.echoes[2]", 20)
            results["plain_total"] = await browser.evaluate(tab, "window.plain.length")
            return results
        finally:
            await browser.close()
            browser.kill()

    results = asyncio.run(drive())
    assert results["delays"] == [100, 200, 400, 500]
    assert results["url"] == [f"ws://127.0.0.1:{port}/x/", f"ws://127.0.0.1:{port}/bridge/y/", "wss://elsewhere/z"]
    assert results["errors"][0].startswith('WebSocketBridge: unknown option "retries" ignored; known options: min')
    assert "call connect() before send()" in results["errors"][1]
    assert results["echo"] == [{"echo": {"hello": 1}}, "echo"]
    assert results["outbound"] == [
        ["create", "one", 1, "things.thing"],
        ["update", "one", 2, "things.thing"],
        ["create", "two", 0, "things.thing"],
        ["delete", "one", 2, "things.thing"],
    ]
    assert results["inbound"]["action"] == "create" and results["inbound"]["data"]["value"] == 7
    assert rows(site.db) == [("lobby", "two", 0), ("lobby", "from page", 7)]  # the delete was refused
    assert results["reconnects"] == 2
    assert results["echo_again"] == [{"echo": {"again": True}}, "echo"]
    assert results["plain"] == [[{"echo": {"ping": 1}}, None], [["done"], None]]
    assert results["plain_total"] == 2  # the multiplexed frames never reached listen()
