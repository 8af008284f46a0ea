"""Doorbells: how a sender wakes a process blocked on the layer, without polling.

Each waiting thread (or event loop) owns a UNIX datagram socket bound in Linux's *abstract*
namespace, so it has no file to leak when the process is killed. Its address is derived from
the segment, the pid and a random nonce, all of which the waiter publishes in its waiter slot.
A sender rings by sending one byte; a full socket buffer means a ring is already pending, and a
refused send means the process is gone (the sender then reclaims its slot). The socket's fd is
what ``select``/``poll``, Twisted's reactor and asyncio's loop wait on.

Credentials: the abstract namespace has no permissions, so any local user could send to a
doorbell. Doorbells set ``SO_PASSCRED``, so the kernel attaches the sender's (unforgeable)
uid to every datagram; a ring from another uid than this process's (which is the segment
owner's: attaching checks it) is swallowed without waking anyone and counted in ``foreign``.

A process may ring its own doorbells (``IPCChannelLayer.wake``, from a signal handler) to end
its blocking receives at once.
"""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import struct
import time
import zlib

__all__ = ["Doorbell", "Ringer", "doorbell_address", "doorbell_prefix", "STOP_AT_RING"]

#: Test hook: a process started with this variable set to 1 stops itself (SIGSTOP) just before
#: every ring, in the Python and the C path, so a test can kill a sender exactly there.
STOP_AT_RING = "ASGI_IPC_TEST_STOP_AT_RING"

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_CMSG_SPACE = socket.CMSG_SPACE(_UCRED.size)


def doorbell_prefix(segment: str) -> bytes:
    """The part of every doorbell address of ``segment`` that precedes the pid."""
    return b"\0asgi_ipc/%08x/" % (zlib.crc32(segment.encode()) & 0xFFFFFFFF)


def doorbell_address(segment: str, pid: int, nonce: int) -> bytes:
    """The abstract socket address of a waiter's doorbell."""
    return doorbell_prefix(segment) + b"%d/%08x" % (pid, nonce)


class Doorbell:
    """A waiter's end: a bound, non-blocking datagram socket."""

    def __init__(self, segment: str) -> None:
        self.pid = os.getpid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.uid = os.getuid()
        self.foreign = 0  # rings from other users, swallowed
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

    def drain(self) -> int:
        """Swallow pending rings; return how many came from this process's own user."""
        genuine = 0
        try:
            while True:
                _data, ancdata, _flags, _addr = self.sock.recvmsg(64, _CMSG_SPACE)
                uid = -1
                for level, kind, data in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        uid = _UCRED.unpack_from(data)[1]
                if uid == self.uid:
                    genuine += 1
                else:
                    self.foreign += 1
        except (BlockingIOError, InterruptedError):
            pass
        return genuine

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a genuine ring; return whether one came."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock.fileno(), select.POLLIN)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            ready = self._poller.poll(max(0.0, deadline - time.monotonic()) * 1000.0)
            if not ready:
                return False
            if self.drain():
                return True

    def ring_self(self) -> None:
        """Ring this doorbell from its own process (signal-handler safe: one ``sendto``)."""
        try:
            self.sock.sendto(b"!", self.sock.getsockname())
        except OSError:  # full (a ring is pending) or closed: nothing to do
            pass

    def close(self) -> None:
        self.sock.close()


class Ringer:
    """A sender's end: one unbound socket per process."""

    def __init__(self, segment: str) -> None:
        self.segment = segment
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self.stop_at_ring = os.environ.get(STOP_AT_RING) == "1"

    def ring(self, pid: int, nonce: int) -> bool:
        """Wake the waiter ``(pid, nonce)``; return False if its doorbell is gone."""
        if self.stop_at_ring:
            os.kill(os.getpid(), signal.SIGSTOP)
        try:
            self.sock.sendto(b"!", doorbell_address(self.segment, pid, nonce))
        except (BlockingIOError, InterruptedError):
            return True  # its buffer is full: a ring is already pending
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()
