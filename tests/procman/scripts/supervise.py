"""Runs an Arbiter over test children: supervise.py STATE_DIR CONTROL_PATH ROLE=MODE:COUNT..."""

import os
import sys
from pathlib import Path

from procman.arbiter import Arbiter, Role
from procman.control import ControlServer
from procman.logstream import LogStream


def main() -> int:
    state, control_path = Path(sys.argv[1]), Path(sys.argv[2])
    child = str(Path(__file__).with_name("child.py"))
    roles = []
    for order, item in enumerate(sys.argv[3:]):
        name, _, rest = item.partition("=")
        mode, _, count = rest.partition(":")
        roles.append(
            Role(name, [sys.executable, child, str(state), mode], count=int(count or 1), reload=True,
                 scalable=True, recyclable=True, stop_order=order)
        )
    log = LogStream(colour=False)
    max_memory = int(os.environ["SUPERVISE_MAX_MEMORY"]) if os.environ.get("SUPERVISE_MAX_MEMORY") else None
    arbiter = Arbiter(roles, log, graceful_timeout=3.0, heartbeat_timeout=2.0, max_memory=max_memory,
                      on_ready=lambda: log.info("all processes ready"))
    control = ControlServer(control_path, arbiter.answer)
    arbiter.watch_fd(control, control.serve_one)
    try:
        return arbiter.run()
    finally:
        control.close()


if __name__ == "__main__":
    sys.exit(main())
