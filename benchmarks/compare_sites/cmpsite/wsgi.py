"""Django's own WSGI handler (what gunicorn and granian run in the HTTP comparison)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmpsite.settings")
application = get_wsgi_application()
