"""The optional C fast path (``asgi_ipc._fastpath``): may this process use it, and if not, why.

One rule, applied by every attachment (``attachment``) and reported by both doctors
(``diagnostics.fastpath_status``): the extension must be built, not disabled with
``ASGI_IPC_PURE=1``, and built for this ``layout`` - it exports the ``LAYOUT_HASH`` of the
``_layout.h`` it was compiled with, and a build older than ``layout.py`` (an in-place build not
redone after a layout change) would read and write the wrong bytes. Otherwise the pure-Python
reference implementation runs: the same behaviour, slower.
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType

from .layout import fastpath_problem

__all__ = ["fastpath", "FastPathMismatch"]


class FastPathMismatch(RuntimeWarning):
    """The C fast path is built, but for another segment layout; it is not used."""


def fastpath() -> tuple[ModuleType | None, str]:
    """``(module, why)``: the C fast path to use, or ``None`` and the reason it is not used.

    A build for another layout is refused once per process with a ``FastPathMismatch`` warning
    that says how to rebuild.
    """
    if os.environ.get("ASGI_IPC_PURE") == "1":
        return None, "disabled by ASGI_IPC_PURE=1 (pure-Python reference implementation)"
    module, problem = _load()
    if module is None:
        return None, problem
    return module, "C fast path active"


@functools.lru_cache(maxsize=None)
def _load() -> tuple[ModuleType | None, str]:
    try:
        from . import _fastpath
    except ImportError as exc:
        return None, (f"the C extension is not built ({exc}); install a C compiler and reinstall "
                      "asgi_ipc (pip install --force-reinstall --no-deps .)")
    problem = fastpath_problem(_fastpath)
    if problem is not None:
        warnings.warn(problem, FastPathMismatch, stacklevel=3)
        return None, problem
    return _fastpath, ""
