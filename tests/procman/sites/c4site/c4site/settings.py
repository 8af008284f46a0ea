"""Settings of the Channels 4 test site (ASGI 3 mode of procman).

C4SITE_LAYER chooses the channel layer: ``ipc`` (default: the shared-memory Channels 4 layer, prefix
from C4SITE_PREFIX so parallel tests never share a segment), ``memory`` (Channels' in-process layer)
or ``none``. C4SITE_APPLICATION overrides ASGI_APPLICATION (boot-failure tests)."""
import os

SECRET_KEY = "procman-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "c4site.urls"
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = os.environ.get("C4SITE_APPLICATION", "c4site.asgi.application")

_LAYER = os.environ.get("C4SITE_LAYER", "ipc")
if _LAYER == "ipc":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "asgi_ipc.channels.IPCChannelLayer",
            "CONFIG": {"prefix": os.environ.get("C4SITE_PREFIX", "c4site"), "message_memory": 4 * 2**20},
        }
    }
elif _LAYER == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
elif _LAYER != "none":
    raise RuntimeError(f"C4SITE_LAYER={_LAYER!r}: use ipc, memory or none")
