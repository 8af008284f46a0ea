"""Settings of the demo site. ``procman demo`` sets ``PROCMAN_DEMO_DATA_DIR`` (where the SQLite
database lives) and may set ``PROCMAN_DEMO_PREFIX`` (the layer prefix, default ``procman_demo``)."""

import os
from pathlib import Path

from procman.demo.paths import data_dir

DATA_DIR = Path(os.environ.get("PROCMAN_DEMO_DATA_DIR") or data_dir())
SECRET_KEY = os.environ.get("PROCMAN_DEMO_SECRET", "procman-demo-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.sessions",
    "django_glue",
    "procman.demo.chat",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "procman.demo.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).parent / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": []},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "demo.sqlite3",
        # Several workers write to one SQLite file: wait for the lock instead of failing.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
USE_TZ = True
TIME_ZONE = "UTC"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "CONFIG": {
            "prefix": os.environ.get("PROCMAN_DEMO_PREFIX", "procman_demo"),
            "message_memory": 16 * 2**20,
            # Idle workers wake once a second, so a stop or reload never waits long for them.
            "receive_timeout": 1.0,
        },
        "ROUTING": "procman.demo.routing.channel_routing",
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
