"""Settings of the Channels 4 demo: the tutorial's, with the shared-memory layer instead of
channels_redis. ``PROCMAN_DEMO_PREFIX`` sets the layer prefix (default ``procman_demo_c4``).
``PROCMAN_DEMO_CHANNEL_LAYER=redis://host:port/db`` switches the layer to the tutorial's own
``channels_redis`` (the scale-out path: several machines, one Redis); the application is unchanged.

No database: the tutorial's chat stores nothing; sessions (read by ``AuthMiddlewareStack``) are
signed cookies, so a browser's cookies from other sites on the same host are simply ignored."""

import os

SECRET_KEY = os.environ.get("PROCMAN_DEMO_SECRET", "procman-demo-channels4-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "procman.demo_channels4.chat",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
]
ROOT_URLCONF = "procman.demo_channels4.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
DATABASES: dict = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True
TIME_ZONE = "UTC"
ASGI_APPLICATION = "procman.demo_channels4.asgi.application"
PREFIX = os.environ.get("PROCMAN_DEMO_PREFIX", "procman_demo_c4")
REDIS_URL = os.environ.get("PROCMAN_DEMO_CHANNEL_LAYER", "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"PROCMAN_DEMO_CHANNEL_LAYER={REDIS_URL!r} is not a Redis URL; give "
                               "redis://host:port/db (or rediss://, unix://), or unset it for the shared-memory layer")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": PREFIX},
    }
} if REDIS_URL else {
    "default": {
        "BACKEND": "asgi_ipc.channels.IPCChannelLayer",
        "CONFIG": {"prefix": PREFIX, "message_memory": 16 * 2**20},
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
