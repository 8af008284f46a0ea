"""asgi_ipc: an ASGI 1 channel layer in POSIX shared memory, for the processes of one machine.

Public surface::

    from asgi_ipc import IPCChannelLayer, ChannelFull, ArenaFull, MessageTooLarge

See ``IPCChannelLayer`` for the API and ``docs/layer-api.md`` for the contract the other
packages rely on. Nothing here imports Django or Twisted at import time.
"""

from .errors import (
    ArenaFull,
    ChannelFull,
    MessageTooLarge,
    SegmentCorrupt,
    SegmentError,
    SegmentExists,
    SegmentLost,
    SegmentMismatch,
    SegmentMissing,
    TableFull,
)
from .layer import IPCChannelLayer

__all__ = [
    "IPCChannelLayer",
    "ChannelFull",
    "ArenaFull",
    "TableFull",
    "MessageTooLarge",
    "SegmentError",
    "SegmentMissing",
    "SegmentExists",
    "SegmentMismatch",
    "SegmentCorrupt",
    "SegmentLost",
]

__version__ = "0.1.0"
