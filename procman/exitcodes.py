"""Exit codes: the protocol between the supervisor, its children and whoever started ``procman``.

A child that exits with :data:`BOOT_ERROR` before it reported ready failed to start (import error,
bad settings, port in use): restarting it would fail the same way, so the supervisor stops the whole
run with the same code instead of looping. Any other exit is a crash and is restarted with backoff.
"""

__all__ = ["OK", "FAILURE", "USAGE", "BOOT_ERROR", "FAST", "describe"]

#: Clean stop (TERM, Ctrl-C, ``procman stop``) with every child gone and the segment removed.
OK = 0
#: The supervisor itself failed at run time (e.g. a child could not be forked).
FAILURE = 1
#: Bad command line, bad configuration file, settings that do not import, socket that cannot be bound.
USAGE = 2
#: A child failed to boot (child -> supervisor), and so the run stopped (supervisor -> caller).
BOOT_ERROR = 3
#: A child stopped at once by a stop signal sent to it directly (a SIGINT during its graceful stop,
#: or SIGQUIT: the table of ``asgi_ipc.stop_signals``, whose ``FAST_EXIT`` this is - tested; not
#: imported, so this module stays free of the layer); the supervisor ends a fast stop with :data:`OK`.
FAST = 130

def describe(returncode: int) -> str:
    """Return a short human description of a child's ``Popen.returncode``.

    Negative codes are deaths by signal (``-9`` is ``killed by SIGKILL``).
    """
    import signal

    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    # Children's other codes are their own (the interface server uses 75 for "layer lost"...).
    meaning = {BOOT_ERROR: "failed to boot", FAST: "fast stop"}.get(returncode)
    return f"exit code {returncode}" + (f" ({meaning})" if meaning else "")
