"""``--certfile``/``--keyfile``: TLS on an inherited socket, re-read on SIGHUP, clear start-up errors."""

from __future__ import annotations

import signal
import socket
import ssl

import pytest
import trustme

from procman.interface.options import ServerOptions
from tests.procman.interface.conftest import read_http_response


def _write(ca: trustme.CA, directory, name: str):
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def _served_certificate(port: int) -> bytes:
    """The DER certificate the server presents to a new connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            return sock.getpeercert(binary_form=True)


def _der(certfile) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certfile.read_text())


def test_sighup_rereads_the_certificate_for_new_connections(layer, app, start_interface, tmp_path):
    ca = trustme.CA()
    certfile, keyfile = _write(ca, tmp_path, "site")
    interface = start_interface(layer, "--certfile", str(certfile), "--keyfile", str(keyfile))
    first = _der(certfile)
    assert _served_certificate(interface.port) == first

    # An open connection keeps working across the reload.
    context = ssl.create_default_context(cafile=None)
    ca.configure_trust(context)
    held = context.wrap_socket(socket.create_connection(("127.0.0.1", interface.port), timeout=10),
                               server_hostname="localhost")

    renewed_cert, renewed_key = _write(ca, tmp_path, "renewed")
    certfile.write_bytes(renewed_cert.read_bytes())
    keyfile.write_bytes(renewed_key.read_bytes())
    interface.signal(signal.SIGHUP)
    interface.wait_for_log("TLS certificate re-read")
    assert _served_certificate(interface.port) == _der(renewed_cert) != first

    held.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
    app.respond(app.request(timeout=20), content=b"still here")
    assert read_http_response(held)[2] == b"still here"
    held.close()

    # A broken renewal keeps the working certificate (and says why).
    keyfile.write_text("not a key\n")
    interface.signal(signal.SIGHUP)
    interface.wait_for_log("TLS reload failed, still serving the previous certificate")
    assert _served_certificate(interface.port) == _der(renewed_cert)
    assert interface.proc.poll() is None


@pytest.mark.parametrize("problem", ["missing", "not-pem", "wrong-key"])
def test_bad_files_exit_2_naming_the_file(layer, start_interface, tmp_path, problem):
    ca = trustme.CA()
    certfile, keyfile = _write(ca, tmp_path, "site")
    if problem == "missing":
        certfile = tmp_path / "missing.crt"
        named = f"--certfile {certfile}: no such file"
    elif problem == "not-pem":
        certfile.write_text("garbage\n")
        named = f"--certfile {certfile}: Error"
    else:
        keyfile = _write(ca, tmp_path, "other")[1]
        named = f"--keyfile {keyfile}: Error"
    interface = start_interface(layer, "--certfile", str(certfile), "--keyfile", str(keyfile), wait_ready=False)
    assert interface.wait() == 2
    assert named in interface.stderr
    assert "--certfile must name a readable PEM file" in interface.stderr


def test_key_in_the_certificate_file_and_cipher_list(layer, app, start_interface, tmp_path):
    ca = trustme.CA()
    certfile, keyfile = _write(ca, tmp_path, "site")
    combined = tmp_path / "combined.pem"
    combined.write_bytes(certfile.read_bytes() + keyfile.read_bytes())
    interface = start_interface(layer, "--certfile", str(combined), "--ssl-ciphers", "ECDHE+AESGCM")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", interface.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert "ECDHE" in sock.cipher()[0] and "GCM" in sock.cipher()[0]
    bad = start_interface(layer, "--certfile", str(combined), "--ssl-ciphers", "NO-SUCH-CIPHER", wait_ready=False)
    assert bad.wait() == 2 and "--ssl-ciphers 'NO-SUCH-CIPHER'" in bad.stderr


def test_option_combinations_that_make_no_sense():
    with pytest.raises(ValueError, match="give --certfile with --keyfile"):
        ServerOptions(keyfile="/k.pem").validate()
    with pytest.raises(ValueError, match="give --certfile to serve TLS"):
        ServerOptions(ssl_ciphers="HIGH").validate()


def test_ssl_endpoint_together_with_certfile_is_refused(layer, start_interface, tmp_path):
    certfile, keyfile = _write(trustme.CA(), tmp_path, "site")
    interface = start_interface(
        layer, "--certfile", str(certfile), "--keyfile", str(keyfile),
        "-e", f"ssl:0:privateKey={keyfile}:certKey={certfile}", listen=None, wait_ready=False,
    )
    assert interface.wait() == 2
    assert "an ssl: endpoint brings its own certificate" in interface.stderr
