"""Django settings of the cluster benchmark's baselines, chosen with ``CLUSTER_BENCH_SITE``:

- ``hello-redis``: the test site ``hellosite`` (Channels 1 API) with every message on
  ``asgi_ipc.redis.RedisChannelLayer`` (``CLUSTER_BENCH_REDIS`` = the server's URL, layer prefix from
  ``HELLOSITE_PREFIX``), run as interface + ``runworker`` processes (``procman run`` serves the
  shared-memory layer only);
- ``c4-redis``: the Channels 4 test site ``c4site`` with ``channels_redis.core.RedisChannelLayer``
  (key prefix ``CLUSTER_BENCH_KEYS``), run under ``procman run`` in ASGI 3 mode.

The site's own directory must be the working directory (``hellosite`` / ``c4site`` importable).
"""
import os

_SITE = os.environ.get("CLUSTER_BENCH_SITE", "")
_REDIS = os.environ.get("CLUSTER_BENCH_REDIS", "")
if not _REDIS:
    raise RuntimeError("CLUSTER_BENCH_REDIS is not set: give the redis:// URL of the benchmark's server")

if _SITE == "hello-redis":
    from hellosite.settings import *  # noqa: F401,F403 - the same site, another layer

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "asgi_ipc.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [_REDIS], "prefix": os.environ["HELLOSITE_PREFIX"], "receive_timeout": 1.0,
                       "capacity": 1000},
            "ROUTING": os.environ.get("HELLOSITE_ROUTING", "hellosite.routing.channel_routing"),
        }
    }
elif _SITE == "c4-redis":
    from c4site.settings import *  # noqa: F401,F403

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_REDIS], "prefix": os.environ.get("CLUSTER_BENCH_KEYS", "asgi")},
        }
    }
else:
    raise RuntimeError(f"CLUSTER_BENCH_SITE={_SITE!r}: use hello-redis or c4-redis")
