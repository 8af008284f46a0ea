"""What each worker is serving, kept where its supervisor can read it after a crash.

Theory of operation
-------------------
A request is lost when the worker running its view dies (delivery is at-most-once), but its
client should learn that at once, not after the interface's ``--http-timeout``. So a worker
records each HTTP request it takes on a bookkeeping channel of its own in the layer,
``procman.inflight.<pid>``: one small message before the consumer runs (the reply channel,
method and path) and taken back once it returns - two O(1) layer operations per request, and
the record lives in shared memory, so it outlives the worker. WebSocket messages are not
recorded: their socket stays open, and the consumer's next message is simply not answered.

When the supervisor reaps a child it calls :func:`child_exited`: every record left on the
child's channel is a request it had taken and not finished, and gets a ``502 Bad Gateway``
with a body saying why, sent to its reply channel like any response (the interface writes it
and logs the 502 in its access log; the supervisor's log names the request and the cause). Then
:meth:`IPCChannelLayer.forget_process` reclaims what the child left in the segment (its
``prefix!`` channels leave their groups, their messages are freed).

A worker killed between taking a request and recording it leaves no record (that request waits
for the interface's timeout); one killed after its response but before taking the record back
gets a 502 its interface drops (the request is finished there).
"""

from __future__ import annotations

import os
from typing import Any, Callable

__all__ = ["InflightLog", "child_exited", "channel_for"]

#: How long a record may wait in the layer (longer than any view should run).
RECORD_EXPIRY_NOTE = "records expire with the layer's message expiry"


def channel_for(pid: int) -> str:
    """The bookkeeping channel of worker ``pid``."""
    return f"procman.inflight.{pid}"


class InflightLog:
    """The worker's side: record the HTTP request being served (one at a time per process).

    :param layer: the channel layer (any object with ``send`` and ``receive``).
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel = channel_for(os.getpid())
        self.open = False

    def begin(self, channel: str, message: dict[str, Any]) -> None:
        """Record ``message`` if it is an HTTP request with a reply channel."""
        reply = message.get("reply_channel") if channel == "http.request" else None
        if not isinstance(reply, str):
            return
        try:
            self.layer.send(self.channel, {
                "reply_channel": reply,
                "method": str(message.get("method", "")),
                "path": str(message.get("path", "")),
            })
            self.open = True
        except Exception:  # noqa: BLE001 - bookkeeping must never fail a request
            self.open = False

    def end(self) -> None:
        """The request recorded by :meth:`begin` is finished: take its record back."""
        if self.open:
            self.open = False
            self.layer.receive([self.channel])

    def run(self, channel: str, message: dict[str, Any], handle: Callable[[str, dict], None]) -> None:
        """``handle(channel, message)`` between :meth:`begin` and :meth:`end`."""
        self.begin(channel, message)
        try:
            handle(channel, message)
        finally:
            self.end()


def _response(name: str, pid: int, why: str) -> dict[str, Any]:
    body = (f"502 Bad Gateway: the worker process handling this request ({name}, pid {pid}) "
            f"died ({why}) before it answered. The request may or may not have had an effect; "
            "retry if it is safe to.\n").encode()
    return {"status": 502, "headers": [[b"content-type", b"text/plain; charset=utf-8"]],
            "content": body}


def child_exited(layer: Any, log: Callable[[str], None], name: str, pid: int, why: str) -> int:
    """Fail the requests child ``pid`` left unfinished and reclaim what it left in the layer.

    Called by the supervisor for every child it reaps (``why`` describes the exit). Returns how
    many requests were answered with a 502. Never raises: a layer that misbehaves here must not
    take the supervisor down (the error is logged).
    """
    failed = 0
    try:
        channel = channel_for(pid)
        for _ in range(10000):
            got, record = layer.receive([channel])
            if got is None:
                break
            try:
                layer.send(record["reply_channel"], _response(name, pid, why))
            except Exception as exc:  # noqa: BLE001 - a full or bad reply channel: skip it
                log(f"{name} (pid {pid}) died while serving {record.get('method')} "
                    f"{record.get('path')}; its 502 could not be sent: {exc}")
                continue
            failed += 1
            log(f"{name} (pid {pid}) died while serving {record.get('method')} "
                f"{record.get('path')}: answered 502 ({why})")
        layer.forget_process(pid)
    except Exception as exc:  # noqa: BLE001
        log(f"could not reclaim what {name} (pid {pid}) left in the layer: "
            f"{type(exc).__name__}: {exc}")
    return failed
