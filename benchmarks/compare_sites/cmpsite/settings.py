"""Settings shared by every contender: DEBUG off, no middleware, no database, one view."""
import os

STACK = os.environ.get("CMPSITE_STACK", "plain")
if STACK not in ("plain", "ipc", "channels", "c4ipc"):
    raise RuntimeError(f"CMPSITE_STACK={STACK!r}: use 'plain', 'ipc', 'channels' or 'c4ipc'")

SECRET_KEY = "site-compare-benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "cmpsite.urls"
DATABASES: dict = {}
USE_TZ = True
INSTALLED_APPS: list[str] = []

if STACK == "ipc":
    INSTALLED_APPS = ["django_glue"]
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "asgi_ipc.IPCChannelLayer",
            "CONFIG": {"prefix": os.environ["CMPSITE_PREFIX"]},
            "ROUTING": "cmpsite.routing.channel_routing",
        }
    }
elif STACK == "channels":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [("127.0.0.1", int(os.environ["CMPSITE_REDIS_PORT"]))]},
        }
    }
elif STACK == "c4ipc":  # the Channels 4 application on the shared-memory Channels 4 layer
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "asgi_ipc.channels.IPCChannelLayer",
            "CONFIG": {"prefix": os.environ["CMPSITE_PREFIX"]},
        }
    }
