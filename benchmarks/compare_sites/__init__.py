"""Helpers of ``benchmarks/site_compare.py``: the Django project every contender serves
(``cmpsite``), the HTTP and WebSocket load generators, and the code that starts and stops each
contender."""
