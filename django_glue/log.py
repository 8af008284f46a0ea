"""``setup_logger``: console logging for the management commands (Channels 1's ``channels.log``)."""
from __future__ import annotations

import logging
import sys

__all__ = ["setup_logger"]


def setup_logger(name: str = "django_glue", verbosity: int = 1) -> logging.Logger:
    """The logger ``name`` with a stderr handler (added once) at INFO, or DEBUG when ``verbosity > 1``.

    A project that configures ``LOGGING`` with its own handlers for ``name`` keeps them.
    """
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    return logger
