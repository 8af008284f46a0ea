"""Build script: metadata lives in setup.cfg; this only declares the optional C fast path.

If the extension cannot be compiled (no compiler), the pure-Python layer is used instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "asgi_ipc._fastpath",
            ["asgi_ipc/_fastpath.c"],
            extra_compile_args=["-O2", "-std=c11", "-D_GNU_SOURCE"],
            optional=True,
        )
    ]
)
