"""The binding of ``Thing``: imported by ``models.py`` so every process of the site
(workers, ``manage.py shell``) sends changes, not only the ones that loaded the routing."""
from django_glue.binding.websockets import WebsocketBinding


class ThingBinding(WebsocketBinding):
    model = "things.Thing"
    stream = "things"
    fields = ["room", "name", "value"]

    @classmethod
    def group_names(cls, instance):
        return [f"things-{instance.room}"]

    def has_permission(self, user, action, pk):
        return action != "delete"  # pages may create and update, not delete
