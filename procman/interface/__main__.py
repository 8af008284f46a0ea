"""``python -m procman.interface LAYER ...`` (same as ``procman interface``)."""

import os
import signal

from asgi_ipc.stop_signals import PARENT_PID_ENV, leave, stop_with_parent
from procman.interface.cli import main

if os.environ.get(PARENT_PID_ENV, "").isdigit():  # started by a local site (runserver, live server)
    stop_with_parent(signal.SIGTERM, int(os.environ.pop(PARENT_PID_ENV)))
leave(main())  # without the interpreter's module teardown (see leave)
