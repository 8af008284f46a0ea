from django.apps import AppConfig


class ThingsConfig(AppConfig):
    name = "tests.django_glue.bindingsite.things"
    label = "things"
    default_auto_field = "django.db.models.AutoField"
