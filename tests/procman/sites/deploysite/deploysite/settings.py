"""Settings of the deployment tests' site. DEPLOYSITE_PREFIX gives each test its own layer;
DEPLOYSITE_DB names its SQLite file (unapplied migrations until `manage.py migrate`)."""
import os

SECRET_KEY = "procman-deploy-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django_glue"]
ROOT_URLCONF = "deploysite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DEPLOYSITE_DB", ":memory:")}}
USE_TZ = True
STATIC_URL = "/static/"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("DEPLOYSITE_PREFIX", "deploysite"), "receive_timeout": 1.0,
                   "message_memory": 4 * 2**20},
        "ROUTING": "deploysite.routing.channel_routing",
    }
}
