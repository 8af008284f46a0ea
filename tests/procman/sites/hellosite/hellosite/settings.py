"""Settings of the test site. The layer prefix comes from HELLOSITE_PREFIX so that tests running
in parallel (and two sites side by side) never share a segment."""
import os

SECRET_KEY = "procman-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django_glue"]
ROOT_URLCONF = "hellosite.urls"
DATABASES = {}
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("HELLOSITE_PREFIX", "hellosite"),
                   "receive_timeout": float(os.environ.get("HELLOSITE_RECEIVE_TIMEOUT", "1.0")),
                   "message_memory": 4 * 2**20},
        "ROUTING": os.environ.get("HELLOSITE_ROUTING", "hellosite.routing.channel_routing"),
    }
}
