"""How a supervised child boots: the boot-error half of the exit-code protocol.

:func:`supervised_main` runs a child's entry point; if it raises (or returns non-zero) *before*
the child told the supervisor it is ready, the traceback is printed, a one-line summary goes to
the supervisor over the heartbeat pipe, and the process exits with
:data:`~procman.exitcodes.BOOT_ERROR` - so the supervisor stops the run instead of restarting a
child that can only fail the same way. After ready, errors are ordinary crashes.

Children: ``python -m procman.boot worker ARGS`` and ``python -m procman.boot interface ARGS``
(Channels 1 mode); ``python -m procman.boot daphne ARGS`` and ``python -m procman.boot runworker
ARGS`` (ASGI 3 mode, :mod:`procman.asgi3`).
"""

from __future__ import annotations

import faulthandler
import sys
import traceback
from typing import TYPE_CHECKING, Callable

from . import exitcodes
from .heartbeat import HeartbeatSender, exit_with_parent

if TYPE_CHECKING:
    from procman.interface.server import InterfaceServer

__all__ = ["supervised_main", "main"]


def supervised_main(entry: Callable[[HeartbeatSender], int]) -> int:
    """Run ``entry(beats)`` under the boot-error protocol; returns the process exit code.

    ``entry`` must call ``beats.ready()`` once it is able to serve.
    """
    faulthandler.enable()  # SIGABRT from the supervisor (hung child) prints every thread's stack
    exit_with_parent()
    beats = HeartbeatSender.from_env()
    ready_calls = []
    original_ready = beats.ready

    def ready() -> bool:
        ready_calls.append(1)
        return original_ready()

    beats.ready = ready  # type: ignore[method-assign]
    try:
        code = entry(beats)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code not in (None, 0) and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - anything at boot is a boot error
        if ready_calls:
            raise
        # The summary goes first: if a stop signal cuts us short, the supervisor still knows why.
        beats.boot_error(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        traceback.print_exc()
        return exitcodes.BOOT_ERROR
    if code and not ready_calls:
        beats.boot_error(f"exited with code {code} before it was ready")
        return exitcodes.BOOT_ERROR
    return int(code or 0)


def _interface(argv: list[str]) -> Callable[[HeartbeatSender], int]:
    def entry(beats: HeartbeatSender) -> int:
        # Twisted's reactor is imported by the interface's own start-up, which first decides
        # whether it may need TLS (without, it keeps pyOpenSSL out: importing it here would not).
        from procman.interface.cli import main as interface_main

        def start_beating(server: InterfaceServer) -> None:
            from twisted.internet import reactor, task

            # Runs inside the reactor once the server listens: the reactor turning is our liveness
            # signal (a blocked reactor stops beating and gets replaced), and the server's count of
            # finished exchanges is the "requests" column of `procman status`.
            beats.ready()
            loop = task.LoopingCall(lambda: beats.beat(server.finished_exchanges) or reactor.stop())
            loop.start(1.0, now=False)

        return interface_main(argv, on_serving=start_beating)

    return entry


def _entry(role: str, rest: list[str]) -> Callable[[HeartbeatSender], int]:
    if role == "worker":
        from .worker import worker_entry

        return worker_entry(rest)
    if role == "daphne":
        from .asgi3_server import server_entry

        return server_entry(rest)
    if role == "runworker":
        from .asgi3_worker import worker_entry as channels_worker_entry

        return channels_worker_entry(rest)
    return _interface(rest)


ROLES = ("worker", "interface", "daphne", "runworker")


def main(argv: list[str] | None = None) -> int:
    """``python -m procman.boot ROLE ARGS...`` (ROLE is one of :data:`ROLES`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ROLES:
        print(f"usage: python -m procman.boot {{{','.join(ROLES)}}} ARGS...", file=sys.stderr)
        return exitcodes.USAGE
    return supervised_main(_entry(args[0], args[1:]))


if __name__ == "__main__":
    sys.exit(main())
