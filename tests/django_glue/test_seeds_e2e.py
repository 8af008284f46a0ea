"""The Channels 1 documentation examples, unchanged but for the import path, end to end.

Each test serves one example (``project/seeds/``) with real ``runworker`` processes and the real
interface server (``python -m procman.interface``), and drives it with real WebSocket and HTTP
clients.
"""
from .conftest import wait_for
from .e2e import create_users, http_request, login, query, recv, websocket

SEEDS = "tests.django_glue.project.seeds."


def test_echo(processes):
    processes.runworker(SEEDS + "echo.channel_routing")
    port = processes.interface()
    with websocket(port, "/") as one, websocket(port, "/anything/") as two:
        one.send("hello")
        two.send("world")
        assert recv(one) == "hello"
        assert recv(two) == "world"


def test_chat_with_group(processes, ipc_layer):
    processes.runworker(SEEDS + "chat_group.channel_routing")
    port = processes.interface()
    with websocket(port, "/") as alice:
        with websocket(port, "/") as bob:
            wait_for(lambda: len(ipc_layer.group_channels("chat")) == 2)
            alice.send("hi all")
            assert recv(alice) == "[user] hi all"
            assert recv(bob) == "[user] hi all"
        wait_for(lambda: len(ipc_layer.group_channels("chat")) == 1)  # bob's disconnect ran
        alice.send("alone")
        assert recv(alice) == "[user] alone"


def test_rooms_in_channel_session(processes, db_file):
    processes.runworker(SEEDS + "rooms.channel_routing")
    port = processes.interface()
    with websocket(port, "/lobby/") as a, websocket(port, "/lobby/") as b, websocket(port, "/kitchen/") as c:
        a.send("lobby news")
        assert recv(a) == "lobby news"
        assert recv(b) == "lobby news"
        c.send("kitchen news")
        assert recv(c) == "kitchen news"  # the lobby message (sent earlier) never reached c
    # every socket's channel session row is gone once its disconnect ran
    wait_for(lambda: query(db_file, "select count(*) from django_session where session_key like 'chn%'") == [(0,)])


def test_auth_from_http_session(processes, ipc_layer, db_file):
    create_users(db_file, ipc_layer.prefix, {"alice": "pw-a", "bob": "pw-b"})
    processes.runworker(SEEDS + "auth_chat.channel_routing")
    port = processes.interface()
    alice_cookies = login(port, "alice", "pw-a")
    assert http_request(port, "GET", "/whoami/", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in alice_cookies.items())})[2] == b"alice"
    bob_cookies = login(port, "bob", "pw-b")
    with websocket(port, "/", alice_cookies) as alice, websocket(port, "/", alice_cookies) as alice2, \
            websocket(port, "/", bob_cookies) as bob:
        wait_for(lambda: len(ipc_layer.group_channels("chat-a")) == 2 and len(ipc_layer.group_channels("chat-b")) == 1)
        alice.send("for the a-group")
        assert recv(alice) == "for the a-group"
        assert recv(alice2) == "for the a-group"
        bob.send("for the b-group")
        assert recv(bob) == "for the b-group"


def test_routing_with_include_and_kwargs(processes):
    processes.runworker(SEEDS + "routing_include.channel_routing")
    port = processes.interface()
    with websocket(port, "/chat/lobby/") as ws:
        assert recv(ws) == "joined lobby"
    assert http_request(port, "POST", "/poll/", b"")[2] == b"polled"
    # not matched by the example's routes: the default routes (Django views) take them
    status, _, body = http_request(port, "GET", "/hello/")
    assert (status, body) == (200, b"hello")
    assert http_request(port, "GET", "/poll/")[0] == 404


def test_model_backed_chat_messages_channel(processes, db_file):
    processes.runworker(SEEDS + "chat_messages.channel_routing")
    processes.runworker(SEEDS + "chat_messages.channel_routing", "--only-channels", "chat-messages")
    port = processes.interface()
    with websocket(port, "/garden/") as a, websocket(port, "/garden/") as b:
        a.send("saved and broadcast")
        assert recv(a) == "saved and broadcast"
        assert recv(b) == "saved and broadcast"
    assert query(db_file, "select room, message from chat_chatmessage") == [("garden", "saved and broadcast")]


def test_enforce_ordering_with_concurrent_workers(processes):
    processes.runworker(SEEDS + "ordering.channel_routing", "--threads", "3")
    processes.runworker(SEEDS + "ordering.channel_routing", "--threads", "3")
    port = processes.interface()
    count = 30
    with websocket(port, "/") as ws:
        for i in range(count):
            ws.send(f"m{i}")
        received = [recv(ws) for _ in range(count)]
    # every frame was counted in its order, and the replies left in that order too
    assert received == [f"{i + 1}: m{i}" for i in range(count)]
