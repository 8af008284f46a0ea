"""Small helpers Channels 1 code imports from ``channels.utils``."""
from __future__ import annotations

import types
from typing import Any

__all__ = ["name_that_thing"]


def name_that_thing(thing: Any) -> str:
    """A readable dotted name for a function, method, class or instance (for logs and errors).

    Functions and classes give ``module.qualname``; bound methods ``module.Class.method``;
    other objects the name of their class; anything without names its ``repr``.
    """
    if isinstance(thing, (types.FunctionType, types.BuiltinFunctionType, type)):
        return f"{thing.__module__}.{thing.__qualname__}"
    if isinstance(thing, types.MethodType):
        return f"{name_that_thing(thing.__func__)}"
    cls = getattr(thing, "__class__", None)
    if cls is not None and hasattr(cls, "__qualname__"):
        return f"{cls.__module__}.{cls.__qualname__}"
    return repr(thing)
