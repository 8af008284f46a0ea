"""Build script: metadata lives in setup.cfg; this only declares the optional C fast path.

The C fast path takes every segment offset from ``asgi_ipc/_layout.h``, which the build writes
from ``asgi_ipc/layout.py`` (``layout.c_header()``) before compiling, so the two cannot differ.
If the extension cannot be compiled (no compiler), the pure-Python layer is used instead.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
LAYOUT_PY = HERE / "asgi_ipc" / "layout.py"
LAYOUT_H = HERE / "asgi_ipc" / "_layout.h"


def write_layout_header() -> None:
    """Write asgi_ipc/_layout.h from asgi_ipc/layout.py (loaded alone: the build environment
    has none of asgi_ipc's dependencies), unless it already holds exactly that text."""
    spec = importlib.util.spec_from_file_location("_asgi_ipc_layout_for_build", LAYOUT_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    text = module.c_header()
    if not LAYOUT_H.exists() or LAYOUT_H.read_text() != text:
        LAYOUT_H.write_text(text)


class BuildExtWithLayout(build_ext):
    """``build_ext`` that first generates the layout header the C fast path includes."""

    def run(self) -> None:
        try:
            write_layout_header()
        except OSError as exc:  # a read-only tree: the extension stays optional, and a stale
            # header is caught at import by its LAYOUT_HASH (the layer then runs pure Python)
            self.warn(f"cannot write {LAYOUT_H}: {exc}")
        super().run()


setup(
    cmdclass={"build_ext": BuildExtWithLayout},
    ext_modules=[
        Extension(
            "asgi_ipc._fastpath",
            ["asgi_ipc/_fastpath.c"],
            depends=["asgi_ipc/_layout.h", "asgi_ipc/layout.py"],
            extra_compile_args=["-O2", "-std=c11", "-D_GNU_SOURCE"],
            optional=True,
        )
    ],
)
