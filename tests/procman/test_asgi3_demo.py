"""``procman demo --channels4`` end to end: the Channels tutorial's chat on several Daphne processes,
a message crossing processes, and two headless Chromium tabs served by different processes."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from procman import exitcodes

from .cdp import Browser, chromium_path
from .procs import REPO, Paused, Site, connect_one_per_server, http_get, unique_prefix

pytest.importorskip("daphne", reason="the Channels 4 demo needs Daphne (pip install 'asgi_ipc[channels4]')")
pytest.importorskip("channels", reason="the Channels 4 demo needs Channels 4 (pip install 'asgi_ipc[channels4]')")
websockets = pytest.importorskip("websockets")

@pytest.fixture
def demo(tmp_path):
    sites: list[Site] = []

    def start(*args: str) -> Site:
        prefix = unique_prefix("demo4")
        s = Site(["demo", "--channels4", "--bind", "127.0.0.1:0", *args], REPO, prefix, tmp_path / "ctl",
                 env={"PROCMAN_DEMO_PREFIX": prefix})
        sites.append(s)
        return s

    yield start
    for s in sites:
        s.close()


def test_tutorial_pages_and_a_message_across_processes_then_clean_stop(demo):
    s = demo("--interfaces", "2")
    url = s.wait_ready()
    assert "Channels 4 demo chat" in s.output and "2 daphne" in s.output
    status, body = http_get(url)
    assert status == 200 and b"What chat room would you like to enter?" in body
    status, body = http_get(url + "chat/lobby/")
    assert status == 200 and b'id="chat-log"' in body and b'"lobby"' in body
    origin = url.rstrip("/")

    async def chat() -> tuple[dict, list[dict]]:
        servers = await connect_one_per_server(url.replace("http://", "ws://") + "ws/chat/lobby/", 2, "server",
                                               origin=origin)
        try:
            assert len(servers) == 2, f"both sockets went to process {list(servers)}"
            first, second = servers.values()
            await first.send(json.dumps({"message": "hello from the tutorial"}))
            got = [json.loads(await asyncio.wait_for(sock.recv(), 10)) for sock in (first, second)]
            return servers, got
        finally:
            for sock in servers.values():
                await sock.close()

    servers, got = asyncio.run(chat())
    assert [g["message"] for g in got] == ["hello from the tutorial"] * 2
    assert {g["to"] for g in got} == set(servers) and len({g["via"] for g in got}) == 1
    s.signal(signal.SIGTERM)
    assert s.wait(60) == exitcodes.OK
    assert not s.segment_exists()


async def open_isolated_tab(browser: Browser, url: str) -> str:
    """A tab in a browser context of its own: its own connection pool, so its page and WebSocket
    never reuse a keep-alive connection of the other tab (to a server paused right now)."""
    context = await browser.call("Target.createBrowserContext")
    target = await browser.call("Target.createTarget", url=url, browserContextId=context["browserContextId"])
    attached = await browser.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
    return attached["sessionId"]


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_message_typed_in_a_tab_of_one_process_appears_in_a_tab_of_another(demo, tmp_path):
    s = demo("--interfaces", "2")
    browser = Browser(tmp_path / "profile")  # Chromium starts while the site boots

    async def drive() -> tuple[str, str, str]:
        try:
            await browser.connect()
            tabs: dict[str, str] = {}  # Daphne pid serving the tab's WebSocket -> tab
            with Paused() as paused:  # tab A's server is paused while tab B loads: B gets the other
                for _ in range(2):
                    tab = await open_isolated_tab(browser, room)
                    pid = await browser.wait_js(
                        tab, "(() => { const p = document.getElementById('server-pid');"
                             " return p && /^[0-9]+$/.test(p.textContent) ? p.textContent : null; })()", 30)
                    tabs[pid] = tab
                    if len(tabs) == 1:
                        paused.pause(int(pid))
            assert len(tabs) == 2, f"both tabs were served by process {list(tabs)}"
            (pid_a, tab_a), (pid_b, tab_b) = tabs.items()
            await browser.evaluate(tab_a, """
                (() => { document.querySelector('#chat-message-input').value = 'typed in tab A';
                  document.querySelector('#chat-message-submit').click(); return true; })()""")
            text = await browser.wait_js(
                tab_b, "(() => { const t = document.querySelector('#chat-log').value;"
                       " return t.includes('typed in tab A') ? t : null; })()", 20)
            return pid_a, pid_b, text
        finally:
            await browser.close()
            browser.kill()

    try:
        room = s.wait_ready() + "chat/browsers/"
    except BaseException:
        browser.kill()
        raise
    pid_a, pid_b, text = asyncio.run(drive())
    assert pid_a != pid_b
    # the message was received by tab A's process and delivered by tab B's
    assert f"typed in tab A    (received by process {pid_a}, delivered by {pid_b})" in text
