"""The one reader of Django's ``CHANNEL_LAYERS`` setting, for every process of a site.

The supervisor (``procman``), the interface server and the Django workers all read the same entry
of the same settings file; the rules for it live here, once::

    CHANNEL_LAYERS = {
        "default": {                                        # the alias ("default" unless told)
            "BACKEND": "asgi_ipc.IPCChannelLayer",          # dotted path to the layer class
            "CONFIG": {"prefix": "mysite"},                # its constructor arguments (optional)
            "ROUTING": "mysite.routing.channel_routing",   # a dotted path or the routing itself;
                                                           # required where consumers run
            "TEST_CONFIG": {"message_memory": 4 << 20},    # arguments for test layers (optional)
        },
    }

:func:`read_layer` is pure: the setting's value in, a validated :class:`LayerSpec` out, or one
:class:`LayerSettingsError` whose message names the alias, the key, what was wrong and what to
write instead. Each caller states what it needs (``routing=True`` where consumers run) and turns
the error into its own exception type. What needs imports sits beside it on the spec:
:meth:`LayerSpec.backend_class` (``shared_memory=True`` where the caller creates the segment),
:meth:`LayerSpec.attach_config` (the rule that only a segment's owner creates it) and
:meth:`LayerSpec.build` (which also applies ``procman run --cluster``, :mod:`asgi_ipc.cluster`).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = [
    "DEFAULT_ALIAS",
    "KNOWN_KEYS",
    "SHARED_MEMORY_BACKEND",
    "LayerSettingsError",
    "LayerSpec",
    "read_layer",
]

#: The alias used when none is given (Channels' ``DEFAULT_CHANNEL_LAYER``).
DEFAULT_ALIAS = "default"
#: The keys an entry may have; any other is refused (a misspelt ``ROUTNIG`` must not pass silently).
KNOWN_KEYS = ("BACKEND", "CONFIG", "ROUTING", "TEST_CONFIG")
#: The dotted path of the shared-memory layer, as the examples in the messages spell it.
SHARED_MEMORY_BACKEND = "asgi_ipc.IPCChannelLayer"
_EXAMPLE = (
    "{'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', 'CONFIG': {'prefix': 'mysite'}, "
    "'ROUTING': 'mysite.routing.channel_routing'}}"
)


_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+\Z")


class LayerSettingsError(ValueError):
    """A ``CHANNEL_LAYERS`` entry cannot be used; the message says what is wrong and what to write."""


@dataclass(frozen=True)
class LayerSpec:
    """One validated ``CHANNEL_LAYERS`` entry.

    :ivar alias: the alias it was read under.
    :ivar backend: the dotted path of the layer class (``BACKEND``), not imported yet.
    :ivar config: ``CONFIG``, a copy (``{}`` when absent).
    :ivar routing: ``ROUTING`` as written (a dotted path, or the routing itself); None when absent.
    :ivar test_config: ``TEST_CONFIG``, a copy; None when absent.
    :ivar where: how messages name the entry, e.g. ``"mysite.settings.CHANNEL_LAYERS['default']"``.
    """

    alias: str
    backend: str
    config: dict[str, Any] = field(default_factory=dict)
    routing: Any = None
    test_config: dict[str, Any] | None = None
    where: str = f"CHANNEL_LAYERS[{DEFAULT_ALIAS!r}]"

    def backend_class(self, *, shared_memory: bool = False) -> type:
        """Import ``BACKEND``.

        :param shared_memory: the caller creates the segment (``procman run``), so the class must
            be :class:`asgi_ipc.IPCChannelLayer` or a subclass of it.
        :raises LayerSettingsError: the path does not import, or names something else than a
            shared-memory layer class when ``shared_memory`` is asked for.
        """
        module_name, _, name = self.backend.rpartition(".")
        try:
            backend = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise LayerSettingsError(
                f"{self.where}['BACKEND'] = {self.backend!r} cannot be imported: {exc}"
            ) from None
        if shared_memory:
            from .layer import IPCChannelLayer

            if not (isinstance(backend, type) and issubclass(backend, IPCChannelLayer)):
                raise LayerSettingsError(
                    f"{self.where}['BACKEND'] is {self.backend!r}, but procman runs a site on the "
                    f"shared-memory layer {SHARED_MEMORY_BACKEND!r} (it creates the segment); other "
                    "layers run under their own servers"
                )
        return backend

    def test_arguments(self) -> dict[str, Any]:
        """The constructor arguments of a test layer: ``TEST_CONFIG``, or ``CONFIG`` without one."""
        return dict(self.test_config if self.test_config is not None else self.config)

    def parameters(self) -> set[str]:
        """The keyword arguments the backend's constructor names (empty if it cannot tell).

        :raises LayerSettingsError: ``BACKEND`` does not import.
        """
        try:
            return set(inspect.signature(self.backend_class()).parameters)
        except (TypeError, ValueError):
            return set()

    def attach_config(self, config: Mapping[str, Any] | None = None, *, supervised: bool = False) -> dict[str, Any]:
        """Constructor arguments for a process that does not own the segment: it attaches.

        A process that created the segment removes it when it stops, under every other process of
        the site; and one that creates a segment of its own because the site's is gone splits the
        site in two. So ``create=False`` is set - for backends that take ``create`` (a layer
        without a segment, e.g. Redis, is passed ``config`` unchanged).

        :param config: the arguments to start from (default: :attr:`config`).
        :param supervised: the site's supervisor owns the segment, so even an explicit
            ``create`` in ``CONFIG`` is overridden; otherwise (a stand-alone ``runworker`` or
            interface server) an explicit ``create`` is the user's choice and kept.
        :raises LayerSettingsError: ``BACKEND`` does not import.
        """
        arguments = dict(self.config if config is None else config)
        if "create" in self.parameters():
            if supervised:
                arguments["create"] = False
            else:
                arguments.setdefault("create", False)
        return arguments

    def build(self, config: Mapping[str, Any] | None = None) -> Any:
        """``BACKEND(**config)`` (default :attr:`config`); under ``procman run --cluster`` the
        class with the cluster link's outboxes (:func:`asgi_ipc.cluster.backend_for`).

        :raises LayerSettingsError: ``BACKEND`` does not import, or refuses the arguments
            (``TypeError``). The layer's own errors (e.g. :class:`asgi_ipc.SegmentMissing`)
            propagate unchanged, for the caller to explain in its terms.
        """
        from .cluster import backend_for

        arguments = dict(self.config if config is None else config)
        backend = backend_for(self.backend_class())
        try:
            return backend(**arguments)
        except TypeError as exc:
            raise LayerSettingsError(
                f"{self.where}: {self.backend} rejected its CONFIG {sorted(arguments)}: {exc}"
            ) from None


def read_layer(
    layers: Any, alias: str = DEFAULT_ALIAS, *, routing: bool = False, where: str = "CHANNEL_LAYERS"
) -> LayerSpec:
    """Validate ``layers[alias]`` (``layers`` being the value of ``CHANNEL_LAYERS``). Pure.

    :param layers: the setting's value (None when the settings do not define it).
    :param alias: the entry to read.
    :param routing: the caller runs consumers, so ``ROUTING`` is required.
    :param where: how messages name the setting (e.g. ``"mysite.settings.CHANNEL_LAYERS"``).
    :raises LayerSettingsError: the setting is missing or not a dict, has no such alias, or the
        entry is not a dict, has unknown keys, has no dotted ``BACKEND``, a ``CONFIG`` or
        ``TEST_CONFIG`` that is not a dict, or (with ``routing``) no ``ROUTING``.
    """
    if layers is None:
        raise LayerSettingsError(
            f"{where} is not set, so it has no {alias!r} entry; add e.g. CHANNEL_LAYERS = {_EXAMPLE}"
        )
    if not isinstance(layers, Mapping):
        raise LayerSettingsError(
            f"{where} must be a dict of alias -> layer entry, not {type(layers).__name__}; "
            f"e.g. CHANNEL_LAYERS = {_EXAMPLE}"
        )
    if alias not in layers:
        known = ", ".join(repr(name) for name in layers) or "none"
        raise LayerSettingsError(
            f"{where} has no {alias!r} entry (defined: {known}); add one, or name a defined alias"
        )
    entry = layers[alias]
    place = f"{where}[{alias!r}]"
    if not isinstance(entry, Mapping):
        raise LayerSettingsError(
            f"{place} must be a dict with 'BACKEND', 'CONFIG' and 'ROUTING', not {type(entry).__name__}"
        )
    unknown = sorted(str(key) for key in entry if key not in KNOWN_KEYS)
    if unknown:
        raise LayerSettingsError(f"{place} has unknown key(s) {unknown}; allowed: {sorted(KNOWN_KEYS)}")
    backend = entry.get("BACKEND")
    if not isinstance(backend, str) or not _DOTTED_PATH.match(backend):
        raise LayerSettingsError(
            f"{place}['BACKEND'] must be the dotted path of a layer class, e.g. "
            f"{SHARED_MEMORY_BACKEND!r}, not {backend!r}"
        )
    for key in ("CONFIG", "TEST_CONFIG"):
        if key in entry and not isinstance(entry[key], Mapping):
            raise LayerSettingsError(
                f"{place}[{key!r}] must be a dict of layer constructor arguments, "
                f"not {type(entry[key]).__name__}"
            )
    if routing and entry.get("ROUTING") is None:
        raise LayerSettingsError(
            f"{place}['ROUTING'] is required: the dotted path of your routing list "
            "(e.g. 'mysite.routing.channel_routing') or the list itself"
        )
    test_config = entry.get("TEST_CONFIG")
    return LayerSpec(
        alias=alias,
        backend=backend,
        config=dict(entry.get("CONFIG") or {}),
        routing=entry.get("ROUTING"),
        test_config=None if test_config is None else dict(test_config),
        where=place,
    )
