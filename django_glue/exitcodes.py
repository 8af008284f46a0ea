"""Exit codes of ``manage.py runworker``: the one table (documented in docs/django_glue.md,
"runworker's exit codes"); the command and :class:`django_glue.worker.WorkerGroup` take them from
here. Like procman's, a code says whether starting again can help: 3 will fail the same way until
the settings change, 75 may succeed once the site's segment exists."""

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_CONFIG", "EXIT_NO_LAYER", "EXIT_FAST"]

#: Stopped by SIGTERM or a first SIGINT, once every running consumer finished (or
#: ``--graceful-timeout`` passed).
EXIT_OK = 0
#: A worker thread died (e.g. the layer's segment was removed under it).
EXIT_FAILURE = 1
#: Bad command-line arguments, e.g. ``--threads 0`` (nothing was started).
EXIT_USAGE = 2
#: The settings cannot work: a malformed ``CHANNEL_LAYERS`` entry or routing, a backend that does
#: not import or refuses its ``CONFIG``, or no channel left after ``--only``/``--exclude-channels``.
EXIT_CONFIG = 3
#: The layer's segment did not exist within ``--wait-for-layer`` (sysexits' EX_TEMPFAIL: start
#: the site's supervisor or interface server, then try again).
EXIT_NO_LAYER = 75
#: Stopped at once, without waiting for running consumers: a SIGINT during the graceful stop
#: (a second Ctrl-C), or SIGQUIT (the table of ``asgi_ipc.stop_signals``; its ``FAST_EXIT``,
#: 128 + SIGINT - tested).
EXIT_FAST = 130
