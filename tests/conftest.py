"""Suite-wide setup: the processes the tests start read compiled bytecode.

Most of the suite's time is spent in the processes the tests start (sites, interface servers,
workers, fork servers), and each imports well over a hundred of this project's modules. Under
``PYTHONDONTWRITEBYTECODE`` (set in some shells and CI images) nothing is ever cached, so every
one of those processes compiles them from source again: about a third of a site's boot CPU
(hellosite: ~1.1 s with a cache, ~1.5 s without). The tests' children get a bytecode cache of
their own under ``build/pycache`` (``PYTHONPYCACHEPREFIX``: the source tree stays free of
``__pycache__``, which is what ``PYTHONDONTWRITEBYTECODE`` was asking for). A
``PYTHONPYCACHEPREFIX`` already set is left alone.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Before any test starts a process; xdist's workers inherit the environment (and find it done).
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        os.environ["PYTHONPYCACHEPREFIX"] = str(config.rootpath / "build" / "pycache")
        del os.environ["PYTHONDONTWRITEBYTECODE"]
