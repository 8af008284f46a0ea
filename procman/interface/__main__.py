"""``python -m procman.interface LAYER ...`` (same as ``procman interface``)."""

from asgi_ipc.stop_signals import leave
from procman.interface.cli import main

leave(main())  # without the interpreter's module teardown (see leave)
