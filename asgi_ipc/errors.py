"""Exception types of the layer.

Two families, following h11's "whose fault is it" rule:

* Errors caused by what the *caller* asked for: ``ChannelFull`` (the destination holds
  ``capacity`` messages), ``ArenaFull`` (the shared arena has no room; a subclass of
  ``ChannelFull`` so code written against the ASGI spec keeps working), ``MessageTooLarge``
  and ``TypeError`` for bad names or bad messages.
* Errors about the *segment* itself: ``SegmentError`` and its subclasses. These are never the
  caller's fault and carry advice on what an operator should do.
"""

from __future__ import annotations

__all__ = [
    "ChannelFull",
    "ArenaFull",
    "MessageTooLarge",
    "SegmentError",
    "SegmentMissing",
    "SegmentExists",
    "SegmentMismatch",
    "SegmentCorrupt",
    "SegmentLost",
    "TableFull",
]


class ChannelFull(Exception):
    """The destination channel already holds its capacity of messages (ASGI ``ChannelFull``)."""


class ArenaFull(ChannelFull):
    """The segment's shared message memory is exhausted.

    Distinct from plain ``ChannelFull`` (a per-channel count limit): this one means the whole
    layer is out of room, usually because consumers are not keeping up or ``message_memory``
    is too small for the traffic.
    """


class TableFull(ArenaFull):
    """A fixed-size table of the segment (channels, groups, memberships, waiters) is full."""


class MessageTooLarge(Exception):
    """The serialised message is larger than the layer's ``max_message_size``."""


class SegmentError(RuntimeError):
    """Base class for problems with the shared-memory segment rather than with a call."""


class SegmentMissing(SegmentError):
    """No segment exists for this prefix and the caller asked to attach only."""


class SegmentExists(SegmentError):
    """A segment already exists for this prefix and the caller asked to create it."""


class SegmentMismatch(SegmentError):
    """The segment exists but was made by another program, layout version or layout fingerprint
    (other tables: :data:`asgi_ipc.layout.LAYOUT_FINGERPRINT`), or with other sizes."""


class SegmentCorrupt(SegmentError):
    """A value read from the segment is out of bounds or inconsistent."""


class SegmentLost(SegmentError):
    """The segment was removed while this process was attached (e.g. its owner stopped)."""
