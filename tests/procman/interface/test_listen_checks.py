"""A misconfigured interface start fails before the layer, Twisted and Autobahn are loaded
(``cli._unusable_configuration``, ``listen_checks``, ``tls_context``), with the server's messages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import trustme

from procman.interface.listen_checks import check_tcp_address, inherited_socket
from tests.procman.interface.conftest import write_layer_module

#: What a failed start must not have loaded: the reactor, Twisted's logging, Autobahn.
HEAVY = ("twisted.internet.reactor", "twisted.logger", "autobahn")

_RECORDER = """\
import json, sys

from procman.interface.cli import main

code = main(sys.argv[1:])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("twisted", "autobahn")
                        or name == {layer!r} or name in {heavy!r})))
sys.exit(code)
"""


@pytest.fixture
def taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def test_taken_and_foreign_addresses_are_refused_as_twisted_words_it(taken_port):
    with pytest.raises(ValueError, match=rf"^Couldn't listen on 127.0.0.1:{taken_port}: \[Errno 98\] Address already in use\.$"):
        check_tcp_address("127.0.0.1", taken_port)
    with pytest.raises(ValueError, match=r"^Couldn't listen on 192.0.2.1:8000: \[Errno 99\] Cannot assign"):
        check_tcp_address("192.0.2.1", 8000)  # TEST-NET-1: never an address of this machine
    check_tcp_address("127.0.0.1", 0)  # the real listen picks a port
    check_tcp_address("localhost", taken_port)  # names are left to the real listen
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    check_tcp_address("127.0.0.1", port)


def test_inherited_socket_is_checked_without_taking_it():
    with socket.socket() as bound, socket.socket() as listening:
        bound.bind(("127.0.0.1", 0))
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        with pytest.raises(ValueError, match=rf"--fd {bound.fileno()}: the socket is not listening"):
            inherited_socket(bound.fileno())
        assert inherited_socket(listening.fileno()) == socket.AF_INET
        assert os.get_blocking(listening.fileno())  # only when asked: nonblocking=True
        assert inherited_socket(listening.fileno(), nonblocking=True) == socket.AF_INET
        assert not os.get_blocking(listening.fileno())  # the open file's flag, shared
        listening.getsockname()  # still open: the check detached, it did not close
    with pytest.raises(ValueError, match=r"--fd 999: not an open socket \(Bad file descriptor\)"):
        inherited_socket(999)


@pytest.mark.parametrize("problem", ["fd-not-open", "fd-not-listening", "port-taken", "cert-missing",
                                     "cert-not-pem", "wrong-key"])
def test_failed_start_loads_neither_layer_nor_twisted(problem, layer, prefix, tmp_path, taken_port):
    module = write_layer_module(tmp_path, prefix, layer)
    (tmp_path / "record.py").write_text(_RECORDER.format(layer=module, heavy=HEAVY))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "site.crt", tmp_path / "site.key"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    other_key = tmp_path / "other.key"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(other_key)
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))  # never listen()ed
    tls = ["--bind", "127.0.0.1:0", "--certfile"]
    args, message = {
        "fd-not-open": (["--fd", "999"], "cannot listen on --fd 999: not an open socket"),
        "fd-not-listening": (["--fd", str(bound.fileno())], "the socket is not listening"),
        "port-taken": (["--bind", f"127.0.0.1:{taken_port}"],
                       f"cannot listen on tcp:port={taken_port}:interface=127.0.0.1:backlog=2048: "
                       f"Couldn't listen on 127.0.0.1:{taken_port}: [Errno 98] Address already in use."),
        "cert-missing": ([*tls, str(tmp_path / "none.crt"), "--keyfile", str(keyfile)],
                         f"--certfile {tmp_path / 'none.crt'}: no such file"),
        "cert-not-pem": ([*tls, str(keyfile), "--keyfile", str(keyfile)], f"--certfile {keyfile}: Error"),
        "wrong-key": ([*tls, str(certfile), "--keyfile", str(other_key)], f"--keyfile {other_key}: Error"),
    }[problem]
    with bound:
        result = subprocess.run(
            [sys.executable, "record.py", f"{module}:channel_layer", *args],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, pass_fds=(bound.fileno(),),
        )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert json.loads(result.stdout) == []
