"""Settings of the small project the django_glue tests run (in-process and as real processes).

Environment knobs, set by the tests for the processes they start:
  DG_TEST_PREFIX   layer prefix to attach to (the test created the segment)
  DG_TEST_ROUTING  dotted path of the routing the worker serves
  DG_TEST_DB       sqlite file (default: in-memory, for in-process tests)
  DG_TEST_DEBUG    "1" for DEBUG (static files served by the worker)
  DG_TEST_DEFAULT_CREATE  "1" to leave "create" out of the layer CONFIG
  DG_TEST_OTHER_PREFIX    prefix of the "other" alias (tests of --layer)
"""
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = "django-glue-tests-not-secret"
DEBUG = os.environ.get("DG_TEST_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_glue",
    "tests.django_glue.project.chat",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.django_glue.project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DG_TEST_DB", ":memory:"),
        "TEST": {"NAME": os.environ.get("DG_TEST_DB") or None},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATIC_URL = "/static/"
STATICFILES_DIRS = [HERE / "static"]
LOGGING_CONFIG = None

# Sized small: every test creates its own segment (TEST_CONFIG), and the processes attach to it.
_LAYER_SIZES = {"message_memory": 8 << 20, "channels": 512, "groups": 256, "group_members": 2048}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "CONFIG": {
            "prefix": os.environ.get("DG_TEST_PREFIX", "dgtest"),
            "receive_timeout": 0.5,
            **_LAYER_SIZES,
            # DG_TEST_DEFAULT_CREATE=1 leaves "create" out, to test runworker's own default
            **({} if os.environ.get("DG_TEST_DEFAULT_CREATE") == "1" else {"create": False}),
        },
        "ROUTING": os.environ.get("DG_TEST_ROUTING", "tests.django_glue.project.routing.channel_routing"),
        "TEST_CONFIG": {"receive_timeout": 0.5, **_LAYER_SIZES},
    },
    "other": {
        "BACKEND": "asgi_ipc.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("DG_TEST_OTHER_PREFIX", "dgtest-other"), "receive_timeout": 0.5,
                   **_LAYER_SIZES, "create": False},
        "ROUTING": "tests.django_glue.project.routing.other_routing",
        "TEST_CONFIG": {"receive_timeout": 0.5, **_LAYER_SIZES},
    },
}
