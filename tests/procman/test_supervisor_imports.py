"""The supervisor of ``procman run`` stays small: it never imports what only its children run
(Twisted, Autobahn, h2, pyOpenSSL, Django, asyncio) nor ``importlib.metadata`` unless ``--version`` asks.

A real site (hellosite: supervisor, interface, worker) serves a request and stops with SIGTERM;
the supervisor runs under a tiny wrapper that records its ``sys.modules`` when it exits, so
everything it imported on the way up, while serving and on the way down is seen.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from procman import exitcodes

from .procs import HELLOSITE, Supervised, http_get, python, remove_segment, unique_prefix

#: Packages that only the children use, and ``--version``'s lookup; asyncio (with ssl) is the
#: cluster link's only.
CHILDREN_ONLY = ("twisted", "autobahn", "txaio", "h2", "OpenSSL", "cryptography", "django",
                 "procman.interface.server", "importlib.metadata", "asyncio", "ssl")

_RECORDER = """\
import atexit, json, sys


def record():
    with open({dump!r}, "w") as out:
        json.dump(sorted(name for name, module in sys.modules.items() if module is not None), out)


atexit.register(record)
from procman.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_supervisor_imports_nothing_its_children_run(tmp_path: Path) -> None:
    dump = tmp_path / "supervisor-modules.json"
    script = tmp_path / "record_supervisor.py"
    script.write_text(_RECORDER.format(dump=str(dump)))
    prefix = unique_prefix("si")
    site = Supervised(
        [python(), str(script), "run", "--bind", "127.0.0.1:0", "--workers", "1"],
        cwd=HELLOSITE,
        env={"PROCMAN_CONTROL_DIR": str(tmp_path / "ctl"), "HELLOSITE_PREFIX": prefix},
    )
    try:
        line = site.wait_line("ready at http", timeout=60)
        url = line.split("ready at ", 1)[1].split()[0].rstrip(",")
        assert http_get(url) == (200, f"hello from {prefix}\n".encode())
        site.signal(signal.SIGTERM)
        assert site.wait(60) == exitcodes.OK, site.output
    finally:
        site.kill_everything()
        remove_segment(prefix)
    loaded = set(json.loads(dump.read_text()))
    assert {"procman.site", "procman.arbiter", "asgi_ipc.layer"} <= loaded  # it really ran the site
    unexpected = sorted(
        name for name in loaded
        if any(name == top or name.startswith(top + ".") for top in CHILDREN_ONLY)
    )
    assert not unexpected, f"the supervisor imported {unexpected}"
