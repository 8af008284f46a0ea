"""``Binding``: the transport-independent half of data binding.

Theory of operation
-------------------
Outbound (ORM -> clients). Every concrete subclass (one whose ``model`` is set) connects four
receivers to its model's ``pre_save``/``post_save``/``pre_delete``/``post_delete`` signals. The
``pre_`` receivers record the groups *before* the change: nothing for a create, and for an update
``group_names`` of the row as stored (one query: the instance being saved already holds the new
values, so asking it would hide a move between groups);
the ``post_`` receivers compute them *after* it (nothing for a delete) and send, per group:

=====================  ==========  =========================================================
before / after         action      why
=====================  ==========  =========================================================
only before            ``delete``  the object left what these groups may see
in both                ``update``
only after             ``create``  the object came into view
=====================  ==========  =========================================================

So an update that moves an object from group A to group B tells A it is gone and B it is new
(the ordering Django DDP uses, as Channels 1 did). The payload is ``serialize(instance, action)``
(``{}`` means "send nothing"), framed for the transport by ``encode(stream, payload)``. Sends
go through ``Group.send``: inside a consumer they are buffered until it returns, elsewhere they
leave at once. ``QuerySet.update()`` and ``bulk_create`` send no signals, so nothing is sent.

Inbound (clients -> ORM). ``consumer`` (route it, or put it in a demultiplexer's ``consumers``)
runs ``trigger_inbound``: ``deserialize(message)`` gives ``(action, pk, data)``, then
``has_permission(user, action, pk)`` gates ``create(data)`` / ``update(pk, data)`` /
``delete(pk)``. ``message.user`` comes from the channel session (``channel_session_user``).

Registration. The metaclass registers each concrete subclass when it is defined; a model given as
``"app_label.ModelName"`` is resolved at once when the models are loaded, else through Django's
lazy model operations, so a binding may be defined before its model is loaded. ``unregister()`` disconnects a binding again.
"""
from __future__ import annotations

from typing import Any, Callable

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from ..auth import channel_session_user
from ..channel import Group
from ..sessions import channel_session

__all__ = ["Binding", "BindingMetaclass", "CREATE", "UPDATE", "DELETE", "ACTIONS"]

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
ACTIONS = (CREATE, UPDATE, DELETE)

#: Attribute on a model instance holding ``{binding class: group names before the change}``.
_BEFORE = "_binding_group_names"


class BindingMetaclass(type):
    """Registers every concrete :class:`Binding` subclass as soon as it is defined."""

    def __init__(cls, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> None:
        super().__init__(name, bases, attrs)
        if getattr(cls, "model", None) is not None:
            cls.register()  # type: ignore[attr-defined]


class Binding(metaclass=BindingMetaclass):
    """Binds a model's changes to groups of clients, and client requests back to the model.

    Subclasses set :attr:`model`, one of :attr:`fields` / :attr:`exclude`, and implement
    :meth:`group_names`, :meth:`serialize`, :meth:`encode`, :meth:`deserialize` and
    :meth:`has_permission` (:class:`~django_glue.binding.websockets.WebsocketBinding`
    implements all but ``group_names`` and ``has_permission``).
    """

    #: The model class, or ``"app_label.ModelName"``; ``None`` makes the binding abstract.
    model: Any = None
    #: Fields sent out and accepted in (``["__all__"]`` for every field)...
    fields: list[str] | None = None
    #: ...or the fields never sent nor accepted. Exactly one of the two must be set.
    exclude: list[str] | None = None
    #: Stream name the transport frames payloads with.
    stream: str | None = None
    #: Inbound: wrap the handler in ``channel_session_user`` (gives ``message.user``)...
    channel_session_user = True
    #: ...or, if that is off, in ``channel_session``.
    channel_session = False

    #: Set by :meth:`register`: ``"app_label.modelname"``.
    model_label: str
    #: Outbound: the keyword arguments of the signal that triggered the send.
    signal_kwargs: dict[str, Any] | None = None
    #: Inbound: the message, its routing keyword arguments and ``message.user``.
    message: Any = None
    kwargs: dict[str, Any] | None = None
    user: Any = None
    #: Outbound: the instance being sent.
    instance: Any = None

    # ===== registration ==========================================================================
    @classmethod
    def register(cls) -> None:
        """Check the configuration and connect the signal receivers (resolving a model label
        once its model is loaded).

        :raises ImproperlyConfigured: neither or both of ``fields``/``exclude``, or a bad model
            (a label naming no model, once models are loaded).
        """
        cls.check_configuration()
        if isinstance(cls.model, str):
            try:
                app_label, model_name = cls.model.split(".")
            except ValueError:
                raise ImproperlyConfigured(
                    f"{cls.__name__}.model must be a model class or 'app_label.ModelName', got {cls.model!r}"
                ) from None
            if not apps.models_ready:
                # Defined while models load: connect once this one is (a label naming no model
                # is then reported by ``manage.py check`` as models.E022).
                apps.lazy_model_operation(cls._connect, (app_label.lower(), model_name.lower()))
                return
            try:
                model = apps.get_model(app_label, model_name)
            except LookupError as exc:
                raise ImproperlyConfigured(f"{cls.__name__}.model = {cls.model!r}: {exc}") from None
            cls._connect(model)
        elif isinstance(cls.model, type) and issubclass(cls.model, Model):
            cls._connect(cls.model)
        else:
            raise ImproperlyConfigured(
                f"{cls.__name__}.model must be a model class or 'app_label.ModelName', got {cls.model!r}"
            )

    @classmethod
    def check_configuration(cls) -> None:
        """Validate the class attributes (subclasses add their own rules)."""
        if (cls.fields is None) == (cls.exclude is None):
            raise ImproperlyConfigured(
                f"{cls.__name__} must set exactly one of 'fields' (a list of field names, or "
                "['__all__']) and 'exclude'"
            )
        for attr in ("fields", "exclude"):
            value = getattr(cls, attr)
            if value is not None and (isinstance(value, str) or not all(isinstance(v, str) for v in value)):
                raise ImproperlyConfigured(f"{cls.__name__}.{attr} must be a list of field names, got {value!r}")

    @classmethod
    def _connect(cls, model: type[Model]) -> None:
        cls.model = model
        cls.model_label = f"{model._meta.app_label.lower()}.{model._meta.object_name.lower()}"
        for signal, receiver in cls._receivers():
            signal.connect(receiver, sender=model, weak=False, dispatch_uid=cls._uid(signal))

    @classmethod
    def unregister(cls) -> None:
        """Disconnect this binding's signal receivers (for tests and dynamic bindings)."""
        if isinstance(cls.model, type):
            for signal, _ in cls._receivers():
                signal.disconnect(sender=cls.model, dispatch_uid=cls._uid(signal))

    @classmethod
    def _receivers(cls) -> list[tuple[Any, Callable[..., None]]]:
        return [
            (pre_save, cls.pre_save_receiver),
            (post_save, cls.post_save_receiver),
            (pre_delete, cls.pre_delete_receiver),
            (post_delete, cls.post_delete_receiver),
        ]

    @classmethod
    def _uid(cls, signal: Any) -> str:
        return f"django_glue.binding:{cls.__module__}.{cls.__qualname__}:{id(cls)}:{id(signal)}"

    # ===== outbound ==============================================================================
    @classmethod
    def pre_save_receiver(cls, instance: Model, **kwargs: Any) -> None:
        if instance._state.adding:
            cls.pre_change_receiver(instance, CREATE)
            return
        # The instance in hand already holds the new values: the groups that could see it
        # before are those of the row as stored.
        stored = type(instance)._base_manager.using(kwargs.get("using")).filter(pk=instance.pk).first()
        cls.pre_change_receiver(stored if stored is not None else instance, UPDATE, record_on=instance,
                                existed=stored is not None)

    @classmethod
    def post_save_receiver(cls, instance: Model, created: bool, **kwargs: Any) -> None:
        cls.post_change_receiver(instance, CREATE if created else UPDATE, created=created, **kwargs)

    @classmethod
    def pre_delete_receiver(cls, instance: Model, **kwargs: Any) -> None:
        cls.pre_change_receiver(instance, DELETE)

    @classmethod
    def post_delete_receiver(cls, instance: Model, **kwargs: Any) -> None:
        cls.post_change_receiver(instance, DELETE, **kwargs)

    @classmethod
    def pre_change_receiver(
        cls, instance: Model, action: str, record_on: Model | None = None, existed: bool = True
    ) -> None:
        """Remember which groups could see ``instance`` before the change (on ``record_on``,
        the instance being saved, when ``instance`` is its stored copy)."""
        before = set(cls.group_names(instance)) if action != CREATE and existed else set()
        target = instance if record_on is None else record_on
        target.__dict__.setdefault(_BEFORE, {})[cls] = before

    @classmethod
    def post_change_receiver(cls, instance: Model, action: str, **kwargs: Any) -> None:
        """Send delete/update/create to the groups that lost/kept/gained the instance."""
        before = instance.__dict__.get(_BEFORE, {}).pop(cls, set())
        after = set() if action == DELETE else set(cls.group_names(instance))
        self = cls()
        self.instance = instance
        self.send_messages(instance, before - after, DELETE, **kwargs)
        self.send_messages(instance, before & after, UPDATE, **kwargs)
        self.send_messages(instance, after - before, CREATE, **kwargs)

    def send_messages(self, instance: Model, group_names: set[str], action: str, **kwargs: Any) -> None:
        """Serialise ``instance`` for ``action`` once and send it to every group in ``group_names``."""
        if not group_names:
            return
        self.signal_kwargs = kwargs
        payload = self.serialize(instance, action)
        if payload == {}:
            return
        message = self.encode(self.stream, payload)
        for name in sorted(group_names):
            Group(name).send(message)

    @classmethod
    def group_names(cls, instance: Model) -> list[str]:
        """The groups allowed to see ``instance`` in its current state."""
        raise NotImplementedError(f"{cls.__name__} must define the classmethod group_names(instance)")

    def serialize(self, instance: Model, action: str) -> dict[str, Any]:
        """The payload describing ``action`` on ``instance`` (``{}``: send nothing)."""
        raise NotImplementedError(f"{type(self).__name__} must define serialize(instance, action)")

    @classmethod
    def encode(cls, stream: str | None, payload: dict[str, Any]) -> dict[str, Any]:
        """The channel-layer message carrying ``payload`` on ``stream``."""
        raise NotImplementedError(f"{cls.__name__} must define the classmethod encode(stream, payload)")

    # ===== inbound ===============================================================================
    @classmethod
    def get_handler(cls) -> Callable[..., None]:
        """``trigger_inbound`` wrapped in the session decorator the class asks for."""

        def handler(message: Any, **kwargs: Any) -> None:
            cls.trigger_inbound(message, **kwargs)

        if cls.channel_session_user:
            return channel_session_user(handler)
        if cls.channel_session:
            return channel_session(handler)
        return handler

    @classmethod
    def consumer(cls, message: Any, **kwargs: Any) -> None:
        """The consumer to route (or to map a demultiplexer stream to)."""
        cls.get_handler()(message, **kwargs)

    @classmethod
    def trigger_inbound(cls, message: Any, **kwargs: Any) -> None:
        """Decode a client request and, if permitted, apply it to the model."""
        self = cls()
        self.message = message
        self.kwargs = kwargs
        action, pk, data = self.deserialize(message)
        self.user = getattr(message, "user", None)
        if self.has_permission(self.user, action, pk):
            self.run_action(action, pk, data)

    def deserialize(self, message: Any) -> tuple[str, Any, dict[str, Any] | None]:
        """``(action, pk, data)`` from a client message."""
        raise NotImplementedError(f"{type(self).__name__} must define deserialize(message)")

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        """Whether ``user`` may apply ``action`` to the object ``pk`` (``None`` for a create)."""
        raise NotImplementedError(f"{type(self).__name__} must define has_permission(user, action, pk)")

    def run_action(self, action: str, pk: Any, data: dict[str, Any] | None) -> None:
        if action == CREATE:
            self.create(data or {})
        elif action == UPDATE:
            self.update(pk, data or {})
        elif action == DELETE:
            self.delete(pk)
        else:
            raise ValueError(f"unknown binding action {action!r}; expected one of {', '.join(ACTIONS)}")

    def permitted_fields(self, names: Any) -> list[str]:
        """Those of ``names`` that :attr:`fields` / :attr:`exclude` let clients see and set."""
        if self.fields is not None:
            if list(self.fields) == ["__all__"]:
                return [name for name in names if name != self.model._meta.pk.name]
            return [name for name in names if name in self.fields]
        return [name for name in names if name not in (self.exclude or ()) and name != self.model._meta.pk.name]

    def create(self, data: dict[str, Any]) -> None:
        self.model.objects.create(**{name: data[name] for name in self.permitted_fields(data)})

    def update(self, pk: Any, data: dict[str, Any]) -> None:
        instance = self.model.objects.get(pk=pk)
        for name in self.permitted_fields(data):
            setattr(instance, name, data[name])
        instance.save()

    def delete(self, pk: Any) -> None:
        # QuerySet.delete sends pre/post_delete per object, so the delete goes out to clients.
        self.model.objects.filter(pk=pk).delete()
