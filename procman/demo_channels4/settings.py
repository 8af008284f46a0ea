"""Settings of the Channels 4 demo: the tutorial's, with the shared-memory layer instead of
channels_redis. ``PROCMAN_DEMO_PREFIX`` sets the layer prefix (default ``procman_demo_c4``).

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
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.channels.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("PROCMAN_DEMO_PREFIX", "procman_demo_c4"), "message_memory": 16 * 2**20},
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
