"""The keeper of a shared-lifetime segment: removes it when the last process holding it is gone.

Why a process of its own
------------------------
A shared-lifetime segment (the Channels 4 layer's; see ``Segment(shared=True)``) is held by every
attached process through a shared ``flock``, and the last one to *close* it removes it. That
needs the last process to run its exit handlers, which servers do not always let it do: uvicorn's
and gunicorn's workers end a SIGTERM by re-raising it with the default action, and a SIGKILL ends
anything. So the process that creates such a segment also starts this keeper, a small detached
interpreter that waits in a *blocking* ``flock(LOCK_EX)`` on the same object. The kernel grants
it exactly when no process holds the shared lock any more - however they ended - and the keeper
then removes the segment (if the name still leads to the object it waited on) and exits. No
polling: the keeper sleeps in the kernel until then.

An attacher that opens the name while the keeper holds the exclusive lock waits for it, then sees
the object unlinked and creates a new segment (``SegmentMissing`` -> create again), as when the
last process removes it itself. The keeper ignores SIGINT and SIGTERM (it must outlive the
processes it waits for; it exits by itself right after them) and runs in its own session, so a
terminal's Ctrl-C never reaches it. If it is killed, the segment is removed as before by the last
process that closes it, or by ``asgi-ipc doctor --clean``.

Run as ``python -m asgi_ipc.keeper PATH DEV INO`` by :func:`start_keeper`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys

__all__ = ["start_keeper"]


def start_keeper(path: str, fd: int) -> None:
    """Start the keeper of the segment at ``path`` (``fd`` is open on it, for its identity)."""
    st = os.fstat(fd)
    starter = subprocess.Popen(
        [sys.executable, "-m", "asgi_ipc.keeper", path, str(st.st_dev), str(st.st_ino)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        close_fds=True, start_new_session=True, cwd="/",
    )
    # The starter forks the keeper and exits at once: the keeper is nobody's child (a supervisor
    # counting or reaping its children never sees it), and the starter is reaped here.
    try:
        starter.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a machine too loaded to start Python
        pass


def _same_object(fd: int, path: str) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def keep(path: str, dev: int, ino: int) -> int:
    """Wait until nobody holds the segment at ``path`` (device ``dev``, inode ``ino``), remove it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0  # already removed by its last process
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (dev, ino):
        return 0  # a newer segment under the same name: it has a keeper of its own
    fcntl.flock(fd, fcntl.LOCK_EX)  # granted when no attached process holds its shared lock
    if _same_object(fd, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.close(fd)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m asgi_ipc.keeper PATH DEV INO (started by asgi_ipc itself)")
    if os.fork() > 0:  # the starter: leave the keeper to init
        os._exit(0)
    sys.exit(keep(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
