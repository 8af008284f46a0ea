"""Exit codes of ``procman interface``: the one table (documented in docs/interface.md,
"Lifecycle, signals and exit codes"); the server and its command line take them from here."""

__all__ = ["EXIT_OK", "EXIT_CONFIG", "EXIT_LAYER_LOST", "EXIT_FAST"]

#: Graceful stop (SIGTERM or a first SIGINT) finished.
EXIT_OK = 0
#: Bad flags, layer not found or unsupported, cannot listen, ``--fd`` not a listening socket.
EXIT_CONFIG = 2
#: The channel layer vanished under us; the supervisor should restart this process. This is
#: sysexits' EX_TEMPFAIL ("try again"), distinct from procman's boot-error code (3), which would
#: stop the whole run instead of restarting us.
EXIT_LAYER_LOST = 75
#: Fast stop: a SIGINT during the graceful stop, or SIGQUIT (the table of ``asgi_ipc.stop_signals``;
#: its ``FAST_EXIT``, 128 + SIGINT, which every process of the project uses - tested).
EXIT_FAST = 130
