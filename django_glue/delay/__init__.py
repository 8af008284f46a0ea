"""The delay server: the ASGI ``asgi.delay`` protocol, stored with the ORM.

Add ``"django_glue.delay"`` to ``INSTALLED_APPS``, run ``manage.py migrate`` and one
``manage.py rundelay`` per site (or ``procman run --delay``). Then::

    Channel("asgi.delay").send({"channel": "reminders", "delay": 30_000, "content": {...}})

delivers ``content`` to ``reminders`` 30 s later. Modules: :mod:`.protocol` (what a request
is), :mod:`.models` (``DelayedMessage``), :mod:`.server` (the loop).
"""
