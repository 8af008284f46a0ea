"""The tiny Django project the whole-site comparison serves with every contender.

``CMPSITE_STACK`` picks the channel layer: ``ipc`` (asgi_ipc, for ``procman run``), ``channels``
(channels_redis against ``CMPSITE_REDIS_PORT``, for Channels 4 + Daphne) or ``plain`` (none: Django's
ASGI handler alone, for uvicorn and Daphne in the HTTP comparison). The HTTP view is the same in all.
"""
