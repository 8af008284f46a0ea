"""WebSocket features through the interface server: origin checks, binary frames, multiplexing."""
import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .e2e import TIMEOUT, recv

ROUTING = "tests.django_glue.project.routing.websocket_routing"


def open_ws(port, path, origin=None):
    return connect(f"ws://127.0.0.1:{port}{path}", origin=origin, open_timeout=TIMEOUT, close_timeout=5)


@pytest.fixture(scope="module")
def site(module_processes):
    """One worker and one interface server for the module (4 process starts fewer): every test
    opens its own WebSockets (own reply channels) and none stops or kills them. The interface
    server never times a handshake out, so a 403 can only be a worker's reject."""
    worker = module_processes.runworker(ROUTING)
    return worker, module_processes.interface("--websocket-connect-timeout", "-1")


def test_allowed_hosts_only_rejects_foreign_origins(site):
    _, port = site
    with pytest.raises(InvalidStatus) as rejected:
        open_ws(port, "/guarded/", origin="http://evil.example.com")
    assert rejected.value.response.status_code == 403
    with open_ws(port, "/guarded/", origin="http://localhost:8000") as ws:
        ws.send(b"\x01\x02\x03")
        assert recv(ws) == b"\x03\x02\x01"


def test_demultiplexer_streams(site):
    _, port = site
    with open_ws(port, "/streams/") as ws:
        ws.send(json.dumps({"stream": "upper", "payload": {"text": "shout"}}))
        assert json.loads(recv(ws)) == {"stream": "upper", "payload": {"upper": "SHOUT"}}


def test_connect_consumer_that_raises_rejects_the_handshake_at_once(site):
    """Issue 11: the worker logs the traceback and rejects; the client does not wait for a timeout.

    The interface server is told never to time a handshake out, so the 403 can only be the
    worker's reject.
    """
    worker, port = site
    with pytest.raises(InvalidStatus) as rejected:
        open_ws(port, "/broken/")
    assert rejected.value.response.status_code == 403
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback (most recent call last)" in log and "deliberately broken connect consumer" in log
