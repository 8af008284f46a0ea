"""One process's attachment to a segment: the mapping and everything bound to it.

An ``IPCChannelLayer`` keeps one ``Attachment`` per process: the mapped ``Segment``, the pure
views over it (``Store``, ``Groups``, ``Waiters``), the robust lock, the optional C fast path,
the sender's ringer and the per-thread doorbells. After ``fork`` the layer makes a new one in the
child, because sockets, thread-bound doorbells and the fast path's pid must not be shared.
"""

from __future__ import annotations

import os
import struct
import threading
import weakref

import msgpack

from .doorbell import Doorbell, Ringer, doorbell_prefix
from .groups import Groups
from .layout import (
    H_MUTEX_AT,
    LAYOUT_VERSION,
    MSG_FANOUT,
    W_FREE,
    W_WAITING,
    WAIT_CHANNELS,
    WAITER,
    WAITER_SIZE,
)
from .lock import RobustMutex, init_mutex
from .native import fastpath
from .recovery import rebuild
from .segment import Segment, is_alive
from .store import Store
from .waiters import Waiters

__all__ = ["Attachment", "SLOW", "OWNERDEAD", "TIMEOUT"]

def _make_fastpath(segment: Segment, lock_timeout: float):
    """The C fast path for this mapping, or None (see ``native.fastpath`` for when)."""
    module, _why = fastpath()
    if module is None:
        return None
    layout = segment.layout
    sizes = layout.sizes
    return module.FastPath(
        segment.mm, LAYOUT_VERSION, H_MUTEX_AT, lock_timeout, sizes.channels,
        layout.channel_index_slots, sizes.unit_count, sizes.max_order, sizes.waiters, WAITER_SIZE,
        os.getpid(), layout.channels_at, layout.channel_index_at, layout.arena_at,
        layout.blockmap_at, layout.waiters_at)


SLOW, OWNERDEAD, TIMEOUT = -1, -2, -3  # codes of the C fast path


class Attachment:
    """Everything bound to one process's mapping of the segment."""

    def __init__(self, layer, create: bool | None) -> None:
        """Map the segment of ``layer.prefix`` (creating it per ``create``) for this process."""
        self.pid = os.getpid()
        # Two switches a layer class may set (the ASGI 1 layer sets neither): a lifetime owned
        # by no single process (``Segment(shared=True)``), and Channels 4's rule that a member
        # whose message expired stays in its groups (ASGI 1: it leaves them).
        shared = getattr(layer, "shared_lifetime", False)
        self.segment = Segment(layer.prefix, layer.sizes, create=create, shared=shared)
        buf = self.segment.mm
        layout = self.segment.layout
        self.store = Store(buf, layout)
        self.groups = Groups(buf, layout)
        self.waiters = Waiters(buf, layout, self.store)
        if getattr(layer, "expired_members_leave_groups", True):
            self.store.on_expired = self._on_expired
        self.lock = RobustMutex(buf, self.segment.address(), self._repair, layer.lock_timeout)
        if self.segment.owner:
            init_mutex(self.segment.mutex_address())
            self.store.reset()
            self.groups.reset_free_lists()
            self.waiters.reset_free_list()
            self.segment.mark_ready()
        self.ringer = Ringer(self.segment.name)
        self.fast = _make_fastpath(self.segment, layer.lock_timeout)
        if self.fast is not None:
            self.fast.bind_ringer(self.ringer.sock.fileno(), doorbell_prefix(self.segment.name))
        self.fast_sends = 0
        self.local = threading.local()  # per-thread doorbell for blocking receive
        self.bells: weakref.WeakSet = weakref.WeakSet()

    def _repair(self) -> None:
        """Crash repair, under the lock: rebuild, then ring every live waiter, since the dead
        holder may have queued a message or marked a waiter notified without ringing it (the
        ring, a syscall, is cheap next to a repair; a spurious one costs a receiver one take)."""
        buf, layout = self.segment.mm, self.segment.layout
        rebuild(buf, layout, is_alive)
        for wid in range(self.waiters.count):
            state, pid, nonce, _count, _nxt = WAITER.unpack_from(buf, layout.waiter(wid))
            if state != W_FREE and not self.ringer.ring(pid, nonce):
                self.waiters.free(wid)
    def _on_expired(self, name: bytes, extra: bytes, kind: int) -> None:
        """A message expired unread: its channel(s) leave their groups (ASGI 1 spec)."""
        if kind == MSG_FANOUT:
            for local in msgpack.unpackb(extra, raw=True):
                self.groups.drop_channel(name + local)
        else:
            self.groups.drop_channel(name)

    def waiter_state(self, wid: int) -> int:
        """State of a waiter slot, read without the lock (a hint: only its owner registers it)."""
        return WAITER.unpack_from(self.segment.mm, self.segment.layout.waiter(wid))[0]

    def stalled(self, wid: int) -> bool:
        """Whether a receiver asleep on slot ``wid`` should take again now (checked every
        ``layer.CHECK_INTERVAL``, read without the lock: a hint). Its slot was notified (the
        ring may have died with its sender), the lock is taken (a holder may have died inside:
        taking it repairs), or a channel it waits on holds messages (whatever went wrong)."""
        if wid < 0:
            return False
        buf, at = self.segment.mm, self.segment.layout.waiter(wid)
        state, _pid, _nonce, count, _nxt = WAITER.unpack_from(buf, at)
        if state != W_WAITING or self.lock.looks_taken():
            return True
        if count > WAIT_CHANNELS:  # registered for "any": the lock and slot checks must do
            return False
        return any(cid < self.store.channel_count and self.store.depth(cid)
                   for cid in struct.unpack_from(f"<{count}I", buf, at + WAITER.size))

    def doorbell(self) -> Doorbell:
        """This thread's doorbell; its waiter slot is kept for the doorbell's lifetime and
        given back when the thread ends or the layer closes."""
        bell = getattr(self.local, "bell", None)
        if bell is None:
            bell = self.local.bell = Doorbell(self.segment.name)
            with self.lock:
                bell.wid = self.waiters.alloc(bell.pid, bell.nonce, is_alive)
            self.bells.add(bell)
            weakref.finalize(bell, self._free_slot, bell.wid, bell.sock)
        return bell

    def _free_slot(self, wid: int, sock) -> None:
        sock.close()
        if self.segment.mm is None or self.pid != os.getpid():
            return
        try:
            with self.lock:
                self.waiters.free(wid)
        except Exception:  # best effort at thread exit; recovery reclaims dead slots anyway
            pass

    def close(self, unlink: bool) -> None:
        for bell in list(self.bells):
            self._free_slot(bell.wid, bell.sock)
        self.bells.clear()
        self.ringer.close()
        if self.fast is not None:
            self.fast.release()
            self.fast = None
        self.segment.close(unlink=unlink)
