"""WebSocket features through the interface server: origin checks, binary frames, multiplexing."""
import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .e2e import TIMEOUT, recv

ROUTING = "tests.django_glue.project.routing.websocket_routing"


def open_ws(port, path, origin=None):
    return connect(f"ws://127.0.0.1:{port}{path}", origin=origin, open_timeout=TIMEOUT, close_timeout=5)


def test_allowed_hosts_only_rejects_foreign_origins(processes):
    processes.runworker(ROUTING)
    port = processes.interface()
    with pytest.raises(InvalidStatus) as rejected:
        open_ws(port, "/guarded/", origin="http://evil.example.com")
    assert rejected.value.response.status_code == 403
    with open_ws(port, "/guarded/", origin="http://localhost:8000") as ws:
        ws.send(b"\x01\x02\x03")
        assert recv(ws) == b"\x03\x02\x01"


def test_demultiplexer_streams(processes):
    processes.runworker(ROUTING)
    port = processes.interface()
    with open_ws(port, "/streams/") as ws:
        ws.send(json.dumps({"stream": "upper", "payload": {"text": "shout"}}))
        assert json.loads(recv(ws)) == {"stream": "upper", "payload": {"upper": "SHOUT"}}
