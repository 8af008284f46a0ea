"""The segment lock: a process-shared, robust pthread mutex living in the segment.

Why this lock: a POSIX semaphore stays taken when its holder dies, which is how old layers
wedged until someone cleaned ``/dev/shm`` by hand. A *robust* mutex is released by the kernel
when its owner dies, and the next locker gets ``EOWNERDEAD``: it repairs the segment
(``recovery.rebuild``) and marks the mutex consistent. Uncontended locking never enters the
kernel (a futex), and ``ctypes`` releases the GIL while it waits.

If the repairing process itself dies before marking the mutex consistent, the next locker gets
``EOWNERDEAD`` again and repeats the repair, so a repair can be interrupted any number of times.

Threads of one process are serialised by the same mutex (ownership is per thread). After
``fork`` the child owns nothing, so a fork while another thread holds the lock is harmless.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import time
from typing import Callable

from .errors import SegmentError
from .layout import H_LOCKSTATE, H_LOCKSTATE_AT, H_MUTEX_AT

__all__ = ["RobustMutex", "init_mutex", "LockTimeout"]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1


_U32 = struct.Struct("<I")


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_lock = _libc.pthread_mutex_lock
_lock.argtypes = [ctypes.c_void_p]
_trylock = _libc.pthread_mutex_trylock
_trylock.argtypes = [ctypes.c_void_p]
_timedlock = _libc.pthread_mutex_timedlock
_timedlock.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Timespec)]
_unlock = _libc.pthread_mutex_unlock
_unlock.argtypes = [ctypes.c_void_p]
_consistent = _libc.pthread_mutex_consistent
_consistent.argtypes = [ctypes.c_void_p]


class LockTimeout(SegmentError):
    """The segment lock could not be taken in time: a live process holds it too long."""


def init_mutex(address: int) -> None:
    """Initialise a process-shared robust mutex at ``address`` (inside the mapped segment)."""
    attr = ctypes.create_string_buffer(64)
    for call, args in (
        (_libc.pthread_mutexattr_init, (attr,)),
        (_libc.pthread_mutexattr_setpshared, (attr, _PTHREAD_PROCESS_SHARED)),
        (_libc.pthread_mutexattr_setrobust, (attr, _PTHREAD_MUTEX_ROBUST)),
        (_libc.pthread_mutex_init, (ctypes.c_void_p(address), attr)),
    ):
        rc = call(*args)
        if rc:
            raise SegmentError(f"cannot initialise the segment lock: {os.strerror(rc)}")
    _libc.pthread_mutexattr_destroy(attr)


class RobustMutex:
    """Acquire/release the segment's mutex, repairing the segment after a holder's death.

    ``repair`` is called (with the lock held) whenever the previous holder died inside its
    critical section. ``timeout`` bounds how long ``acquire`` waits for a *live* holder.
    """

    def __init__(self, buf, base_address: int, repair: Callable[[], None],
                 timeout: float = 10.0) -> None:
        self.buf = buf
        self.ptr = ctypes.c_void_p(base_address + H_MUTEX_AT)
        self.repair = repair
        self.timeout = timeout
        self.pid = os.getpid()  # the lock object is made per process (see layer._a)

    def acquire(self) -> None:
        rc = _trylock(self.ptr)
        if rc == errno.EBUSY:
            deadline = time.time() + self.timeout
            ts = _Timespec(int(deadline), int((deadline % 1) * 1e9))
            rc = _timedlock(self.ptr, ctypes.byref(ts))
        if rc == 0:
            _U32.pack_into(self.buf, H_LOCKSTATE_AT, self.pid)  # holder, for diagnostics
            return
        if rc == errno.EOWNERDEAD:
            _holder, _dirty, recoveries = H_LOCKSTATE.unpack_from(self.buf, H_LOCKSTATE_AT)
            self._recover(recoveries)
            if _consistent(self.ptr):
                raise SegmentError("cannot mark the segment lock consistent after repair")
            return
        if rc == errno.ETIMEDOUT:
            holder = H_LOCKSTATE.unpack_from(self.buf, H_LOCKSTATE_AT)[0]
            raise LockTimeout(
                f"the segment lock has been held for over {self.timeout:.0f}s by pid {holder}; "
                "that process is stuck (stop it, or run 'asgi-ipc doctor')"
            )
        if rc == errno.ENOTRECOVERABLE:
            raise SegmentError("the segment lock is unrecoverable; remove the segment "
                               "('asgi-ipc doctor --clean') and restart the site")
        raise SegmentError(f"cannot take the segment lock: {os.strerror(rc)}")

    def adopt_owner_dead(self) -> None:
        """The C fast path took the lock with EOWNERDEAD: repair, mark consistent, release."""
        _holder, _dirty, count = H_LOCKSTATE.unpack_from(self.buf, H_LOCKSTATE_AT)
        try:
            self._recover(count)
            if _consistent(self.ptr):
                raise SegmentError("cannot mark the segment lock consistent after repair")
        finally:
            _unlock(self.ptr)

    def raise_timeout(self) -> None:
        """Raise the ``LockTimeout`` for a lock held too long by a live process."""
        holder = H_LOCKSTATE.unpack_from(self.buf, H_LOCKSTATE_AT)[0]
        raise LockTimeout(
            f"the segment lock has been held for over {self.timeout:.0f}s by pid {holder}; "
            "that process is stuck (stop it, or run 'asgi-ipc doctor')")

    def _recover(self, recoveries: int) -> None:
        H_LOCKSTATE.pack_into(self.buf, H_LOCKSTATE_AT, self.pid, 1, recoveries + 1)
        self.repair()
        H_LOCKSTATE.pack_into(self.buf, H_LOCKSTATE_AT, self.pid, 0, recoveries + 1)

    def release(self) -> None:
        _unlock(self.ptr)

    def looks_taken(self) -> bool:
        """Whether the mutex's futex word is non-zero, read without locking (a hint).

        glibc keeps the owner's thread id (plus the FUTEX_WAITERS / FUTEX_OWNER_DIED bits) in
        the first word of a robust mutex, and 0 when it is free. An idle receiver reads it
        every ``CHECK_INTERVAL``: non-zero then means a holder is inside (usually for a
        microsecond) or died inside, and only then is the lock taken, which repairs.
        """
        return _U32.unpack_from(self.buf, H_MUTEX_AT)[0] != 0

    def __enter__(self) -> "RobustMutex":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def recoveries(buf) -> int:
    """How many crash repairs this segment has had."""
    return H_LOCKSTATE.unpack_from(buf, H_LOCKSTATE_AT)[2]


