"""Data binding (the Channels 1 API): model changes pushed to groups, client frames applied to models.

::

    from django_glue.binding.websockets import WebsocketBinding

    class IntegerValueBinding(WebsocketBinding):
        model = IntegerValue
        stream = "intval"
        fields = ["name", "value"]

        @classmethod
        def group_names(cls, instance):
            return ["intval-updates"]

        def has_permission(self, user, action, pk):
            return True

See :mod:`django_glue.binding.base` for how changes are turned into messages.
"""
from .base import CREATE, DELETE, UPDATE, Binding, BindingMetaclass

__all__ = ["Binding", "BindingMetaclass", "CREATE", "UPDATE", "DELETE"]
