"""``ChannelLiveServerTestCase``: a real site - interface server and workers - for browser tests.

As in Channels 1's testing docs::

    from django_glue.test import ChannelLiveServerTestCase

    class ChatTests(ChannelLiveServerTestCase):
        def test_page(self):
            self.driver.get(self.live_server_url + "/chat/")    # Selenium, Chromium, requests...
            # WebSockets: self.live_server_ws_url + "/chat/lobby/"

For the whole class, a test layer of the alias (``TEST_CONFIG``, a prefix of its own) is created
and installed as ``channel_layers[alias]`` (so ``Channel``/``Group`` in the test reach the site),
an interface server (``procman.interface``) listens on a free port of ``host``, and
:attr:`worker_threads` workers run in this process, on the test database (an in-memory SQLite
database is shared with them as Django's ``LiveServerTestCase`` shares it). Workers listen on
the channels routed when the class starts (the alias's ``ROUTING`` and the default routes);
``apply_routes`` may re-route those channels per test. Everything is stopped and the segment
removed in ``tearDownClass``.
"""
from __future__ import annotations

import tempfile
import time

from django.apps import apps
from django.db import connections
from django.test import TransactionTestCase

from ..asgi import DEFAULT_CHANNEL_LAYER, channel_layers
from ..local_site import LocalSite

__all__ = ["ChannelLiveServerTestCase"]


class ChannelLiveServerTestCase(TransactionTestCase):
    """``TransactionTestCase`` with a live HTTP + WebSocket site at :attr:`live_server_url`."""

    host = "127.0.0.1"
    #: Worker threads serving the site (Channels 1's ``worker_threads``).
    worker_threads = 1
    #: Serve ``STATIC_URL`` from the finders, as ``runserver`` does.
    serve_static = True
    #: The ``CHANNEL_LAYERS`` alias the site runs on.
    channel_alias = DEFAULT_CHANNEL_LAYER
    #: Seconds to wait for the interface server to listen.
    startup_timeout = 60.0

    _site: LocalSite | None = None

    @classmethod
    def live_server_port(cls) -> int:
        if cls._site is None:
            raise RuntimeError("the live server only runs between setUpClass and tearDownClass")
        return cls._site.port

    @classmethod
    def _url(cls, scheme: str) -> str:
        host = f"[{cls.host}]" if ":" in cls.host else cls.host
        return f"{scheme}://{host}:{cls.live_server_port()}"

    @property
    def live_server_url(self) -> str:
        """``http://host:port`` of the site."""
        return self._url("http")

    @property
    def live_server_ws_url(self) -> str:
        """``ws://host:port`` of the site."""
        return self._url("ws")

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        try:
            cls._start_live_server()
        except BaseException:
            cls._stop_live_server()
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop_live_server()
        super().tearDownClass()

    @classmethod
    def _start_live_server(cls) -> None:
        wrapper = channel_layers.make_test_backend(cls.channel_alias)
        cls._previous_layer = channel_layers.set(cls.channel_alias, wrapper)
        http_consumer = None
        if cls.serve_static and apps.is_installed("django.contrib.staticfiles"):
            from ..staticfiles import StaticFilesConsumer

            http_consumer = StaticFilesConsumer()
        wrapper.router.check_default(http_consumer=http_consumer)
        cls._shared_connections = {
            conn.alias: conn for conn in connections.all()
            if conn.vendor == "sqlite" and conn.is_in_memory_db()
        }
        for conn in cls._shared_connections.values():
            conn.inc_thread_sharing()
        cls._interface_log = tempfile.NamedTemporaryFile(prefix="liveserver-interface-", suffix=".log")
        cls._site = LocalSite(
            wrapper, host=cls.host, port=0, worker_threads=cls.worker_threads,
            test_prefix=wrapper.channel_layer.prefix, output=cls._interface_log,
            thread_setup=cls._use_shared_connections,
        )
        cls._site.start()
        cls._wait_listening()

    @classmethod
    def _use_shared_connections(cls) -> None:
        for alias, conn in cls._shared_connections.items():
            connections[alias] = conn

    @classmethod
    def interface_log(cls) -> str:
        """What the interface server has logged so far (access log included)."""
        with open(cls._interface_log.name, "rb") as log:
            return log.read().decode("utf-8", "replace")

    @classmethod
    def _wait_listening(cls) -> None:
        deadline = time.monotonic() + cls.startup_timeout
        while "listening on" not in cls.interface_log():
            status = cls._site.interface_exited() if cls._site else None
            if status is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the live server's interface server did not start (status {status}):\n{cls.interface_log()}"
                )
            time.sleep(0.05)

    @classmethod
    def _stop_live_server(cls) -> None:
        site, cls._site = cls._site, None
        if site is not None:
            site.stop_and_close_layer()
        if hasattr(cls, "_previous_layer"):
            channel_layers.set(cls.channel_alias, cls._previous_layer)
            del cls._previous_layer
        for conn in getattr(cls, "_shared_connections", {}).values():
            conn.dec_thread_sharing()
        cls._shared_connections = {}
        log = getattr(cls, "_interface_log", None)
        if log is not None:
            log.close()
            del cls._interface_log
