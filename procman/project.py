"""Finding the Django project and its channel layer, without setting Django up in the supervisor.

The supervisor only *imports the settings module* (cheap, no apps loaded) to read
``CHANNEL_LAYERS``; workers do the full ``django.setup()``. A settings module that does not import
is reported here, once, before any child is started.

Two kinds of project (see :attr:`Project.asgi_application`):

- **Channels 1** (the default): ``CHANNEL_LAYERS[alias]`` names an ``asgi_ipc.IPCChannelLayer``
  with a ``ROUTING``; procman runs interface servers plus Django workers on it.
- **ASGI 3** (today's Channels 2-4): ``ASGI_APPLICATION`` is set in the settings (or ``--asgi``
  is given); procman runs Daphne servers with the application in-process (:mod:`procman.asgi3`).
  Any Channels 4 layer may be configured, or none; only the shared-memory layer is imported here.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asgi_ipc.layer_settings import DEFAULT_ALIAS, LayerSettingsError, read_layer

__all__ = ["ProjectError", "Project", "find_settings_module", "load_project", "uses_database"]

_MANAGE_PY_SETTINGS = re.compile(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]""")


class ProjectError(Exception):
    """The project or its layer settings cannot be used; the message says what to fix."""


@dataclass
class Project:
    """A Django project as the supervisor sees it.

    :ivar settings_module: dotted settings module (children get it as DJANGO_SETTINGS_MODULE).
    :ivar directory: the directory to put on ``sys.path``/``PYTHONPATH`` (where manage.py lives).
    :ivar alias: the ``CHANNEL_LAYERS`` alias used.
    :ivar backend: the layer class named by ``BACKEND``.
    :ivar layer_config: its ``CONFIG`` (constructor keyword arguments).
    :ivar asgi_application: ASGI 3 mode: the application as ``module:attribute`` (from ``--asgi``
        or the settings' ``ASGI_APPLICATION``); None for a Channels 1 project.
    :ivar backend_path: ASGI 3 mode: the dotted ``BACKEND`` of ``CHANNEL_LAYERS[alias]`` ("" when
        the project has no channel layer); ``backend`` is then the class for the shared-memory layer
        only (its prefix names the site) and None for any other layer, which is never imported here.
    """

    settings_module: str
    directory: Path
    alias: str
    backend: type | None
    layer_config: dict[str, Any] = field(default_factory=dict)
    asgi_application: str | None = None
    backend_path: str = ""

    @property
    def prefix(self) -> str:
        """The layer prefix, which also names the site (control socket, logs). An ASGI 3 project
        without a shared-memory layer is named after its settings package (``mysite``)."""
        prefix = self.layer_config.get("prefix")
        if prefix is None and self.backend is None:
            from .asgi3 import site_name

            return site_name(self)
        if prefix is None:
            import inspect

            default = inspect.signature(self.backend).parameters.get("prefix")
            prefix = default.default if default is not None else "asgi"
        return str(prefix)

    def child_env(self) -> dict[str, str]:
        """Environment for children: the settings module and the project on PYTHONPATH."""
        path = os.environ.get("PYTHONPATH", "")
        entries = [str(self.directory)] + [p for p in path.split(os.pathsep) if p]
        return {"DJANGO_SETTINGS_MODULE": self.settings_module, "PYTHONPATH": os.pathsep.join(entries)}


def find_settings_module(explicit: str | None, directory: Path) -> str:
    """``--settings``, else ``DJANGO_SETTINGS_MODULE``, else what ``manage.py`` in ``directory`` sets.

    :raises ProjectError: none of the three gives a settings module.
    """
    if explicit:
        return explicit
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return os.environ["DJANGO_SETTINGS_MODULE"]
    manage = directory / "manage.py"
    if manage.is_file():
        match = _MANAGE_PY_SETTINGS.search(manage.read_text(errors="replace"))
        if match:
            return match.group(1)
        raise ProjectError(f"{manage} does not set DJANGO_SETTINGS_MODULE; pass --settings mysite.settings")
    raise ProjectError(
        f"no Django project found in {directory}: run procman in the directory holding manage.py, "
        "pass --settings mysite.settings, or set DJANGO_SETTINGS_MODULE"
    )


def load_project(settings_module: str, directory: Path, alias: str = DEFAULT_ALIAS, asgi: str | None = None) -> Project:
    """Import the settings module and validate ``CHANNEL_LAYERS[alias]`` for procman.

    :param asgi: ``module:attribute`` of an ASGI 3 application (``--asgi``); with it, or with
        ``ASGI_APPLICATION`` in the settings, the project is an ASGI 3 one (see the module doc).
    :raises ProjectError: the settings do not import (the message carries the traceback), or the
        layer entry is missing, malformed (:func:`asgi_ipc.layer_settings.read_layer`) or not a
        shared-memory layer (Channels 1 mode), or the
        application path is malformed (ASGI 3 mode).
    """
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    try:
        module = importlib.import_module(settings_module)
    except BaseException as exc:  # noqa: BLE001 - settings can raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ProjectError(
            f"cannot import settings module {settings_module!r} ({type(exc).__name__}: {exc})\n"
            f"{_user_traceback(exc)}\n"
            "Fix the error above, or pass the right --settings."
        ) from None
    layers = getattr(module, "CHANNEL_LAYERS", None)
    application = asgi or getattr(module, "ASGI_APPLICATION", None)
    if application:
        from .asgi3 import asgi3_project

        return asgi3_project(settings_module, directory, alias, application, layers, from_flag=bool(asgi))
    # The supervisor creates the segment, so the backend must be the shared-memory layer; ROUTING
    # is the workers' to require (they report a missing one when they boot, and `procman doctor`
    # says so before a run).
    try:
        spec = read_layer(layers, alias, where=f"{settings_module}.CHANNEL_LAYERS")
        backend = spec.backend_class(shared_memory=True)
    except LayerSettingsError as exc:
        raise ProjectError(str(exc)) from None
    return Project(settings_module, directory, alias, backend, spec.config)


def uses_database(databases: Any) -> bool:
    """Does a ``DATABASES`` setting configure a real database? Its ``default`` entry must name an
    ``ENGINE`` other than Django's dummy backend (Django's own default, ``{}``, configures none).

    The one rule for "no database configured": the project check reads it from Django's settings,
    ``procman run`` from the settings module it already imported (so a site without a database
    starts no migration check).
    """
    if not isinstance(databases, dict):
        return True  # not ours to judge: let Django set up and say what is wrong
    engine = (databases.get("default") or {}).get("ENGINE", "")
    return bool(engine) and not engine.endswith(".dummy")


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the frames of importlib and procman (the user's code only)."""
    frames = [
        frame for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen") and "importlib" not in frame.filename
        and os.path.dirname(frame.filename) != os.path.dirname(__file__)
    ]
    lines = traceback.format_list(frames) + traceback.format_exception_only(exc)
    return ("Traceback (most recent call last):\n" + "".join(lines)).rstrip()
