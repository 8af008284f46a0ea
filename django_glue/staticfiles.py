"""Serving ``STATIC_URL`` from the worker when ``DEBUG`` (what ``runserver`` users expect).

``runworker`` installs :class:`StaticFilesConsumer` as the default ``http.request`` consumer when
``DEBUG`` is on and ``django.contrib.staticfiles`` is installed. Requests under ``STATIC_URL`` are
answered from the finders; a miss returns the technical 404 page; anything else goes to the views.
"""
from __future__ import annotations

from urllib.parse import urlparse

from django import http
from django.conf import settings
from django.contrib.staticfiles import views
from django.views import debug

from .default_consumers import ViewConsumer
from .handler import AsgiHandler

__all__ = ["StaticFilesHandler", "StaticFilesConsumer"]


class StaticFilesHandler(AsgiHandler):
    """``AsgiHandler`` that serves static files under a host-less ``STATIC_URL``."""

    def static_prefix(self) -> str | None:
        """The path part of ``STATIC_URL`` if static files are served here, else None."""
        url = settings.STATIC_URL or ""
        parsed = urlparse(url)
        if parsed.netloc or not parsed.path:
            return None
        return parsed.path if parsed.path.endswith("/") else parsed.path + "/"

    def get_response(self, request: http.HttpRequest) -> http.HttpResponseBase:
        prefix = self.static_prefix()
        if prefix and request.path.startswith(prefix):
            try:
                response = views.serve(request, request.path[len(prefix):], insecure=True)
            except http.Http404 as exc:
                response = debug.technical_404_response(request, exc) if settings.DEBUG else http.HttpResponseNotFound()
            response._resource_closers.append(request.close)  # type: ignore[attr-defined]
            return response
        return super().get_response(request)


class StaticFilesConsumer(ViewConsumer):
    """``ViewConsumer`` using :class:`StaticFilesHandler`."""

    handler_class = StaticFilesHandler
