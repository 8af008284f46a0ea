"""procman: one command that runs a whole asgi_ipc site on one machine.

The supervisor (:mod:`procman.arbiter`) creates the shared-memory channel layer, binds the listening
sockets once, forks interface processes (:mod:`procman.interface`) and Django workers, and keeps
them running. The command line lives in :mod:`procman.cli`; ``python -m procman --help``.
"""

__all__: list[str] = []
