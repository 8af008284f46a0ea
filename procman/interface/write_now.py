"""Write to an idle socket at once instead of on the reactor's next turn.

Twisted's ``transport.write`` only queues: it registers the socket for writability (an
``epoll_ctl``), the next reactor turn sends (``doWrite``) and unregisters (another ``epoll_ctl``).
For a response or a broadcast frame that fits the kernel's send buffer - nearly always - that is
two system calls and a reactor dispatch per write spent on nothing. :func:`write_now` sends
directly when the transport has nothing queued, and hands whatever the kernel did not take to
``transport.write``, so ordering, buffering, producers and connection loss stay Twisted's.

Only plain socket transports (Twisted's ``FileDescriptor``: TCP, UNIX) take the shortcut; TLS and
anything else always go through ``transport.write``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor

__all__ = ["write_now"]


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sending immediately when the transport is idle."""
    if (
        isinstance(transport, FileDescriptor)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport.dataBuffer
        and not transport._tempDataLen
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int and sent > 0:
            if sent >= len(data):
                return
            data = data[sent:]
        # 0 (the kernel's buffer is full) or a lost connection: Twisted queues and finds out.
    transport.write(data)
