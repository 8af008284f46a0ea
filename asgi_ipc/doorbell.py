"""Doorbells: how a sender wakes a process blocked on the layer, without polling.

Each waiting thread (or event loop) owns a UNIX datagram socket bound in Linux's *abstract*
namespace, so it has no file to leak when the process is killed. Its address is derived from
the segment, the pid and a random nonce, all of which the waiter publishes in its waiter slot.
A sender rings by sending one byte; a full socket buffer means a ring is already pending, and a
refused send means the process is gone (the sender then reclaims its slot). The socket's fd is
what ``select``/``poll``, Twisted's reactor and asyncio's loop wait on.
"""

from __future__ import annotations

import os
import random
import select
import socket
import zlib

__all__ = ["Doorbell", "Ringer", "doorbell_address"]


def doorbell_address(segment: str, pid: int, nonce: int) -> bytes:
    """The abstract socket address of a waiter's doorbell."""
    tag = zlib.crc32(segment.encode()) & 0xFFFFFFFF
    return b"\0asgi_ipc/%08x/%d/%08x" % (tag, pid, nonce)


class Doorbell:
    """A waiter's end: a bound, non-blocking datagram socket."""

    def __init__(self, segment: str) -> None:
        self.pid = os.getpid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        for _ in range(16):
            self.nonce = random.getrandbits(32)
            try:
                self.sock.bind(doorbell_address(segment, self.pid, self.nonce))
                break
            except OSError:
                continue
        else:  # pragma: no cover - 16 random collisions in a row
            raise OSError("cannot bind a doorbell socket")
        self.sock.setblocking(False)
        self.wid = -1  # the waiter slot this doorbell answers to
        self._poller = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> None:
        """Swallow pending rings."""
        try:
            while True:
                self.sock.recv(64)
        except (BlockingIOError, InterruptedError):
            pass

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a ring; return whether one came."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock.fileno(), select.POLLIN)
        ready = self._poller.poll(max(0.0, timeout) * 1000.0)
        if ready:
            self.drain()
        return bool(ready)

    def close(self) -> None:
        self.sock.close()


class Ringer:
    """A sender's end: one unbound socket per process."""

    def __init__(self, segment: str) -> None:
        self.segment = segment
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)

    def ring(self, pid: int, nonce: int) -> bool:
        """Wake the waiter ``(pid, nonce)``; return False if its doorbell is gone."""
        try:
            self.sock.sendto(b"!", doorbell_address(self.segment, pid, nonce))
        except (BlockingIOError, InterruptedError):
            return True  # its buffer is full: a ring is already pending
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()
