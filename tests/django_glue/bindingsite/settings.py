"""The binding / delay / bridge test site: the shared test project plus the delay app and a
bound model (``things.Thing``). Same environment knobs as ``tests.django_glue.project.settings``."""
from tests.django_glue.project.settings import *  # noqa: F401,F403
from tests.django_glue.project.settings import CHANNEL_LAYERS, HERE as PROJECT, INSTALLED_APPS, TEMPLATES
import os
from pathlib import Path

SITE = Path(__file__).resolve().parent

INSTALLED_APPS = INSTALLED_APPS + ["django_glue.delay", "tests.django_glue.bindingsite.things"]
ROOT_URLCONF = "tests.django_glue.bindingsite.urls"
TEMPLATES = [{**TEMPLATES[0], "DIRS": [SITE / "templates", PROJECT / "templates"]}]
# A copy: the shared project's dicts must stay as they are (tests import both settings modules).
CHANNEL_LAYERS = {
    **CHANNEL_LAYERS,
    "default": {
        **CHANNEL_LAYERS["default"],
        "ROUTING": os.environ.get("DG_TEST_ROUTING", "tests.django_glue.bindingsite.routing.channel_routing"),
    },
}
