"""Django's own ASGI handler (what uvicorn and Daphne run in the HTTP comparison)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmpsite.settings")
application = get_asgi_application()
