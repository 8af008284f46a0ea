"""The layer object an interface process serves in the cluster benchmark's "everything on Redis"
baseline: ``python -m procman.interface benchmarks.cluster_redis_layer:channel_layer``.

It is built from ``benchmarks.cluster_settings`` (``CLUSTER_BENCH_SITE=hello-redis``), so the
interface and the ``runworker`` processes use the same ``CONFIG``. (The interface's ``--settings``
form adds ``create=False`` for the shared-memory layer, which the Redis layer does not take.)
"""
from asgi_ipc.redis import RedisChannelLayer

from benchmarks.cluster_settings import CHANNEL_LAYERS

channel_layer = RedisChannelLayer(**CHANNEL_LAYERS["default"]["CONFIG"])
