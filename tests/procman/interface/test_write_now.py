"""write_now over a real socket pair: an idle socket sends at once, anything the kernel does not
take (or anything behind queued bytes) goes through Twisted's own buffering, in order."""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from procman.interface.write_now import write_now


class _Reactor:
    """Records which descriptors asked to be watched for writability (no loop runs here)."""

    def __init__(self) -> None:
        self.writers: set = set()

    def addWriter(self, fd) -> None:
        self.writers.add(fd)

    def removeWriter(self, fd) -> None:
        self.writers.discard(fd)

    def addReader(self, fd) -> None:
        pass

    def removeReader(self, fd) -> None:
        pass


def _transport():
    ours, peer = socket.socketpair()
    reactor = _Reactor()
    transport = tcp.Connection(ours, Protocol(), reactor)
    transport.connected = True
    return transport, peer, reactor


def _read(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(5)
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, "the peer saw the socket close"
        data += chunk
    return data


def test_idle_socket_sends_at_once_without_registering_a_writer():
    transport, peer, reactor = _transport()
    try:
        write_now(transport, b"HTTP/1.1 200 OK\r\n\r\nhello")
        assert not reactor.writers and not transport._tempDataLen
        assert _read(peer, 24) == b"HTTP/1.1 200 OK\r\n\r\nhello"
    finally:
        transport.socket.close()
        peer.close()


def test_what_the_kernel_does_not_take_is_queued_in_order():
    transport, peer, reactor = _transport()
    try:
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(256)) * 4096  # 1 MiB: more than the kernel buffers
        write_now(transport, big)
        assert reactor.writers == {transport}  # the rest waits for doWrite, as with write()
        queued = transport._tempDataLen
        assert 0 < queued < len(big)
        write_now(transport, b"tail")  # bytes are queued: this must not jump ahead of them
        assert transport._tempDataLen == queued + 4
        received = _read(peer, len(big) - queued)
        while transport.dataBuffer or transport._tempDataLen:
            transport.doWrite()
            received += peer.recv(1 << 20)
        received += _read(peer, len(big) + 4 - len(received))
        assert received == big + b"tail"
    finally:
        transport.socket.close()
        peer.close()


def test_a_closed_peer_leaves_the_bytes_to_twisted():
    transport, peer, reactor = _transport()
    peer.close()
    try:
        write_now(transport, b"x" * 100)  # EPIPE: queued; Twisted's doWrite reports the loss
        assert transport._tempDataLen == 100 and reactor.writers == {transport}
    finally:
        transport.socket.close()


def test_other_transports_use_write():
    transport = StringTransport()
    write_now(transport, b"abc")
    assert transport.value() == b"abc"
