"""Chaos: random SIGKILLs of workers and interfaces of a ``procman run`` site under load.

Bounded and seeded: a site with 2 interfaces and 2 workers (the layer's default 5 s
``receive_timeout``, so a lost wake-up would show as a 5 s stall) serves keep-alive HTTP
clients (quick and 0.3 s views) and WebSocket clients in one broadcast room for ``LOAD_SECONDS``,
while a seeded killer SIGKILLs a random worker or interface every 1-2.5 s. Then:

- every HTTP request was answered within ``MAX_WAIT`` seconds (200, or 502 when its worker was
  killed under it), except those whose connection dropped because their interface was killed,
  and those too had not been waiting longer than that;
- no WebSocket client received a broadcast twice, and broadcasts kept flowing;
- after SIGTERM the supervisor exits cleanly, no process is left and the segment is gone.

The figures (max wait, counts) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import threading
import time
from urllib.parse import urlsplit

import psutil
import pytest

from procman import exitcodes

from .procs import HELLOSITE, Site, processes_by_role, unique_prefix, wait_for

SEED = int(os.environ.get("CHAOS_SEED", "14"))
LOAD_SECONDS = 10.0
MAX_WAIT = 5.0  # a request answered later than this was held up by something dead
HTTP_CLIENTS = 3
WS_CLIENTS = 6

websockets_sync = pytest.importorskip("websockets.sync.client")


def by_role(s: Site) -> dict[str, list[psutil.Process]]:
    return processes_by_role(s)


class Figures:
    """What the clients saw (appended from several threads; lists are thread-safe enough)."""

    def __init__(self) -> None:
        self.http: list[tuple[float, object]] = []  # (seconds waited, status or "dropped")
        self.ws_received = 0
        self.ws_duplicates = 0
        self.ws_drops = 0
        self.kills: list[str] = []


def http_client(url: str, stop: threading.Event, rng: random.Random, figures: Figures) -> None:
    parts = urlsplit(url)
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        path = "/slow?s=0.3" if rng.random() < 0.4 else "/"
        started = time.monotonic()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            figures.http.append((time.monotonic() - started, response.status))
            if response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            waited = time.monotonic() - started
            # a timeout is a stall, not a drop: report it as the wait it was
            figures.http.append((waited, "timeout" if isinstance(exc, TimeoutError) else "dropped"))
            conn.close()
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()


def ws_client(url: str, name: str, stop: threading.Event, figures: Figures) -> None:
    ws_url = url.replace("http://", "ws://") + "chaos/"
    seq = 0
    while not stop.is_set():
        seen: set[str] = set()
        try:
            with websockets_sync.connect(ws_url, open_timeout=5, close_timeout=1) as ws:
                next_send = 0.0
                while not stop.is_set():
                    now = time.monotonic()
                    if now >= next_send:
                        seq += 1
                        ws.send(f"{name}:{seq}")
                        next_send = now + 1.0
                    try:
                        text = ws.recv(timeout=max(0.01, next_send - time.monotonic()))
                    except TimeoutError:
                        continue
                    if text in seen:
                        figures.ws_duplicates += 1
                    seen.add(text)
                    figures.ws_received += 1
        except Exception:  # noqa: BLE001 - its interface was killed (or not up yet): reconnect
            figures.ws_drops += 1
            time.sleep(0.1)


def _in_view(proc: psutil.Process) -> bool:
    """Whether a worker sleeps inside the slow view (not in the layer's poll)."""
    try:
        with open(f"/proc/{proc.pid}/wchan") as f:
            return "nanosleep" in f.read()
    except OSError:
        return False


def killer(s: Site, stop: threading.Event, rng: random.Random, figures: Figures) -> None:
    """Every 1-2.5 s, SIGKILL a random interface or worker; a worker preferably mid-request."""
    while not stop.wait(rng.uniform(1.0, 2.5)):
        role = rng.choice(["worker", "interface"])
        procs = sorted(by_role(s).get(role, []), key=lambda p: p.pid)
        if role == "worker":  # up to 1 s for one to be inside a view
            for _ in range(50):
                busy = [p for p in procs if _in_view(p)]
                if busy:
                    procs = busy
                    break
                time.sleep(0.02)
        if not procs:
            continue
        proc = rng.choice(procs)
        try:
            proc.kill()
            figures.kills.append(role)
        except psutil.Error:
            pass


def test_random_kills_under_load(tmp_path):
    rng = random.Random(SEED)
    s = Site(["run", "--bind", "127.0.0.1:0", "--interfaces", "2", "--workers", "2"], HELLOSITE,
             unique_prefix("chaos"), tmp_path / "ctl",
             env={"HELLOSITE_ROUTING": "hellosite.chaos_routing.channel_routing",
                  "HELLOSITE_RECEIVE_TIMEOUT": "5.0"})
    figures = Figures()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        url = s.wait_ready()
        url = url if url.endswith("/") else url + "/"
        for i in range(HTTP_CLIENTS):
            threads.append(threading.Thread(target=http_client, daemon=True,
                                            args=(url, stop, random.Random(rng.random()), figures)))
        for i in range(WS_CLIENTS):
            threads.append(threading.Thread(target=ws_client, args=(url, f"c{i}", stop, figures),
                                            daemon=True))
        for thread in threads:
            thread.start()
        wait_for(lambda: figures.http and figures.ws_received, 30, "load to run before the first kill")
        chaos = threading.Thread(target=killer, args=(s, stop, rng, figures), daemon=True)
        chaos.start()
        time.sleep(LOAD_SECONDS)
        stop.set()
        chaos.join(5)
        for thread in threads:
            thread.join(35)
        children = s.descendants()
        s.signal(signal.SIGTERM)
        code = s.wait(60)
        psutil.wait_procs(children, timeout=10)
    finally:
        stop.set()
        s.close()

    answered = [(w, st) for w, st in figures.http if isinstance(st, int)]
    stalled = [(w, st) for w, st in figures.http if st == "timeout"]
    dropped = [w for w, st in figures.http if st == "dropped"]
    max_wait = max((w for w, _ in answered), default=0.0)
    # a request dropped with its interface was still waiting when the interface died: it must
    # not have been waiting for longer than MAX_WAIT either (e.g. for a dead worker's answer)
    max_dropped_wait = max(dropped, default=0.0)
    statuses: dict[object, int] = {}
    for _, st in figures.http:
        statuses[st] = statuses.get(st, 0) + 1
    print(f"\nchaos seed {SEED}: {len(figures.kills)} kills "
          f"({figures.kills.count('worker')} workers, {figures.kills.count('interface')} interfaces); "
          f"{len(figures.http)} HTTP requests {statuses}; max wait of an answered request "
          f"{max_wait:.2f} s; {len(dropped)} dropped with their interface (after up to "
          f"{max_dropped_wait:.2f} s); WebSocket: "
          f"{figures.ws_received} broadcasts received, {figures.ws_duplicates} duplicates, "
          f"{figures.ws_drops} reconnects; exit code {code}; slowest answers "
          f"{sorted(answered, key=lambda a: a[0], reverse=True)[:3]}")
    assert len(figures.kills) >= 4, "the killer hardly ran: the test proved nothing"
    assert len(answered) > 50 and figures.ws_received > 50, "the site hardly served"
    assert not stalled, f"{len(stalled)} requests got no answer in 30 s"
    assert max_wait <= MAX_WAIT, f"a request waited {max_wait:.1f} s for its answer"
    assert max_dropped_wait <= MAX_WAIT, f"a request waited {max_dropped_wait:.1f} s, then dropped"
    assert figures.ws_duplicates == 0
    assert set(statuses) <= {200, 502, "dropped"}, statuses
    assert code == exitcodes.OK
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert not s.segment_exists(), "the segment is left after TERM"
