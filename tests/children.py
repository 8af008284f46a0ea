"""Child processes that cannot outlive the test process that started them.

A test that starts a long-lived process (``procman run``, a worker, Chromium, nginx...) stops it in
a finalizer, but a pytest killed by SIGKILL (``timeout``, the OOM killer, a Ctrl-C'd xdist run)
runs no finalizer, and a child in its own session would keep running with its segment in
``/dev/shm``. Passing ``preexec_fn=end_with_parent`` to ``subprocess.Popen`` asks the kernel
(``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when its parent dies, so a supervisor
stops cleanly - its children and its segment with it.

The kernel sends the signal when the *thread* that forked the child ends, not the process: start
such children from the test's own (main) thread, never from a helper thread that finishes first.
The setting survives ``exec`` (except of set-user-ID programs) and is not inherited by the
child's own children, which their supervisor stops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Loaded before any fork: the function below runs between fork and exec, where it must not import.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def end_with_parent(sig: int = signal.SIGTERM):
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when this process dies.

    Call it in the parent (``preexec_fn=end_with_parent()``): it records the parent's pid so a
    parent that died between ``fork`` and ``prctl`` is noticed too (the child then signals itself).
    On systems without ``prctl`` it returns ``None`` (no preexec function; nothing is promised).
    """
    if _libc is None:
        return None
    parent = os.getpid()
    prctl = _libc.prctl

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return arm
