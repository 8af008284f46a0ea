"""An interface process loads what its configuration uses, nothing more (issue 16: memory).

It never loads Autobahn's Twisted package (WAMP, ``cryptography``): ``ws_twisted`` is its glue;
nor Autobahn's WAMP-only ``cbor2`` and ``click``. Without TLS it imports neither pyOpenSSL (nor
``service_identity``) nor our ``tls`` module, and without TLS there is no HTTP/2 (ALPN chooses it), so neither ``h2`` nor ``http2_protocol``. With
``--certfile`` both are there from the start. The process is the real one (``cli.main``) serving a
real layer; a tiny wrapper script records its ``sys.modules`` once it listens, then stops it with
SIGTERM like a supervisor would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from procman.interface.lean_imports import AUTOBAHN_EXTRAS, TLS_MODULES, needs_tls
from tests.procman.interface.conftest import write_layer_module
from tests.procman.interface.test_tls import certificate  # noqa: F401 - the fixture

#: Loaded only for TLS (pyOpenSSL's top packages and our TLS module).
TLS_ONLY = (*TLS_MODULES, "procman.interface.tls", "procman.interface.tls_context")
#: Autobahn's Twisted package (WAMP, ``cryptography``, ``twisted.application``): never loaded, the
#: interface has its own glue (``ws_twisted``).
NEVER = ("autobahn.twisted", "cryptography", "twisted.application", "django.db", "django.apps",
         *AUTOBAHN_EXTRAS)
#: Loaded only for HTTP/2.
HTTP2_ONLY = ("h2", "hpack", "procman.interface.http2_protocol")

needs_openssl_cli = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")

_RECORDER = """\
import json, os, signal, sys

from asgi_ipc.stop_signals import leave
from procman.interface.cli import main


def record(server):
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    with open({dump!r}, "w") as out:
        json.dump(loaded, out)
    os.kill(os.getpid(), signal.SIGTERM)


leave(main(sys.argv[1:], on_serving=record))  # as python -m procman.interface leaves
"""


def modules_of_running_interface(tmp_path: Path, prefix: str, layer: Any, *args: str) -> set[str]:
    """The modules an interface process (``args`` appended) has loaded once it listens."""
    module = write_layer_module(tmp_path, prefix, layer)
    dump = tmp_path / f"{module}.modules.json"
    script = tmp_path / f"{module}_record.py"
    script.write_text(_RECORDER.format(dump=str(dump)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, str(script), f"{module}:channel_layer", "--port", "0", "-v", "0", *args],
        cwd=Path(__file__).resolve().parents[3],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(dump.read_text()))


def test_plain_http_loads_no_tls_and_no_http2(tmp_path: Path, prefix: str, layer: Any) -> None:
    loaded = modules_of_running_interface(tmp_path, prefix, layer)
    # It really served: the reactor, the HTTP/1.1 and WebSocket protocols are there.
    assert {"twisted.internet.reactor", "procman.interface.http_protocol",
            "procman.interface.ws_protocol"} <= loaded
    assert not loaded & set(TLS_ONLY), sorted(loaded & set(TLS_ONLY))
    assert not loaded & set(HTTP2_ONLY), sorted(loaded & set(HTTP2_ONLY))
    assert not loaded & set(NEVER), sorted(loaded & set(NEVER))


@needs_openssl_cli
def test_certfile_loads_tls_and_http2_at_start(
    tmp_path: Path, prefix: str, layer: Any, certificate: tuple[Path, Path]  # noqa: F811
) -> None:
    key, cert = certificate
    loaded = modules_of_running_interface(
        tmp_path, prefix, layer, "--certfile", str(cert), "--keyfile", str(key)
    )
    assert set(TLS_ONLY) | set(HTTP2_ONLY) <= loaded, sorted(set(TLS_ONLY) | set(HTTP2_ONLY) - loaded)
    assert "autobahn.twisted" not in loaded


@needs_openssl_cli
def test_an_ssl_endpoint_keeps_openssl(
    tmp_path: Path, prefix: str, layer: Any, certificate: tuple[Path, Path]  # noqa: F811
) -> None:
    key, cert = certificate
    loaded = modules_of_running_interface(
        tmp_path, prefix, layer, "-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    )
    assert "OpenSSL" in loaded


@pytest.mark.parametrize(
    ("certfile", "endpoints", "expected"),
    [
        (None, [], False),
        (None, ["tcp:8000", "TCP6:port=8000", "unix:/run/site.sock"], False),
        ("cert.pem", ["tcp:8000"], True),
        (None, ["tcp:8000", "ssl:443:privateKey=k.pem"], True),
        (None, ["systemd:domain=INET:index=0"], True),  # not known to be plain: may need TLS
    ],
)
def test_needs_tls(certfile: str | None, endpoints: list[str], expected: bool) -> None:
    assert needs_tls(certfile, endpoints) is expected


def assert_runs_clean(code: str) -> None:
    """Run ``code`` in a fresh interpreter (nothing imported yet); it must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_refuse_imports_leaves_an_imported_package_alone() -> None:
    assert_runs_clean(
        "from procman.interface.lean_imports import TLS_MODULES, refuse_imports\n"
        "import OpenSSL\n"
        "assert refuse_imports(TLS_MODULES) is False\n"
        "from OpenSSL import SSL\n"
        "from twisted.internet import ssl\n"
    )


def test_refused_imports_fail_as_if_not_installed() -> None:
    assert_runs_clean(
        "from procman.interface.lean_imports import AUTOBAHN_EXTRAS, TLS_MODULES, refuse_imports\n"
        "assert refuse_imports(TLS_MODULES) is True\n"
        "assert refuse_imports(AUTOBAHN_EXTRAS) is True\n"
        "try:\n"
        "    import OpenSSL\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('OpenSSL was imported')\n"
        "from twisted.internet import reactor, endpoints\n"
        "assert endpoints.TLSMemoryBIOFactory is None\n"
        "from procman.interface.ws_twisted import WebSocketServerFactory\n"
        "from autobahn.util import hl\n"
        "assert hl('plain') == 'plain'  # no click: uncoloured\n"
    )
