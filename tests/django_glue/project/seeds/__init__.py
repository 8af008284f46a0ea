"""The code samples of the Channels 1 documentation, with ``channels`` -> ``django_glue``.

Each module holds one example's consumers and its ``channel_routing`` exactly as the docs wrote
them; the end-to-end tests serve each under real ``runworker`` and interface processes.
"""
