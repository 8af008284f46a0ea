"""``python -m asgi_ipc``: the operator command line (same as the ``asgi-ipc`` script)."""

import sys

from .cli import main

sys.exit(main())
