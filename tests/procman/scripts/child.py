"""A small supervised child for the arbiter tests.

Usage: child.py STATE_DIR MODE  (MODE: ok, boot-error, breakable, retire, slow-stop, hog)
Writes STATE_DIR/<role>.<index>.<pid>.started on start and .stopped on a clean TERM exit.
"""

import os
import signal
import sys
import time
from pathlib import Path

from procman import exitcodes
from procman.heartbeat import HeartbeatSender, exit_with_parent


def main() -> int:
    state, mode = Path(sys.argv[1]), sys.argv[2]
    exit_with_parent()
    tag = f"{os.environ['PROCMAN_ROLE']}.{os.environ['PROCMAN_INDEX']}.{os.getpid()}"
    beats = HeartbeatSender.from_env(interval=0.2)
    if mode == "boot-error" or (mode == "breakable" and (state / "broken").exists()):
        print("Traceback (most recent call last):\nImportError: no module named 'nosuch'", flush=True)
        beats.boot_error("ImportError: no module named 'nosuch'")
        return exitcodes.BOOT_ERROR
    (state / f"{tag}.started").touch()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    beats.ready()
    print(f"child {tag} ready", flush=True)
    served = 0
    ballast = bytearray(b"x" * (96 * 2**20)) if mode == "hog" else None  # noqa: F841 (held on purpose)
    deadline = time.monotonic() + 120
    while not stop and time.monotonic() < deadline:
        if mode == "retire" and served >= 3:
            beats.retire("max-requests 3")
        served += 1
        if not beats.beat(served):
            return 1
        time.sleep(0.05)
    if mode == "slow-stop":
        time.sleep(3600)
    (state / f"{tag}.stopped").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
