"""Interface-server options through ``procman run`` flags and ``procman.toml``: one definition (the
interface server's own parser), checked values, handed to every interface process."""

from __future__ import annotations

import pytest

from procman.cli import build_parser
from procman.config import ConfigError, interface_actions, interface_argv, proxy_headers_warning, resolve
from procman.interface.cli import build_parser as interface_parser
from procman.interface.options import ServerOptions


def test_every_interface_option_but_where_to_listen_is_offered_by_run():
    run = build_parser().parse_args(["run"])
    for action in interface_actions():
        assert hasattr(run, action.dest) and getattr(run, action.dest) is None, action.dest
    dests = {action.dest for action in interface_actions()}
    assert {"proxy_headers", "http_timeout", "max_request_body", "access_log", "ws_protocols"} <= dests
    assert not dests & {"host", "port", "unix_socket", "fd", "settings"}
    # Every ServerOptions field the interface's command line sets is reachable from run.
    fields = set(ServerOptions.__dataclass_fields__)
    assert {"http_timeout", "proxy_headers", "max_ws_message", "shutdown_timeout"} <= fields & dests


def test_toml_and_flags_reach_the_interface_command_line(tmp_path):
    (tmp_path / "procman.toml").write_text(
        'proxy-headers = true\nhttp-timeout = 30\nmax-request-body = "2M"\nws-protocols = ["chat", "v2"]\n'
        'websocket-timeout = -1\n')
    flags = vars(build_parser().parse_args(["run", "--http-timeout", "45", "--access-log", "-"]))
    flags.pop("command")
    flags.pop("config")
    config = resolve(flags, tmp_path)
    argv = interface_argv(config)
    assert set(argv) == {"--proxy-headers", "--http-timeout=45.0", "--max-request-body=2097152",
                         "--ws-protocol=chat", "--ws-protocol=v2", "--websocket-timeout=-1.0", "--access-log=-"}
    assert config.sources["http_timeout"] == "command line" and config.sources["proxy_headers"].endswith("procman.toml")
    # What run hands the interface process parses back to the same options.
    parsed = interface_parser().parse_args(["x:y", *argv])
    assert parsed.proxy_headers and parsed.http_timeout == 45.0 and parsed.max_request_body == 2 * 2**20
    assert parsed.ws_protocols == ["chat", "v2"] and parsed.websocket_timeout == -1.0


@pytest.mark.parametrize("toml, message", [
    ("proxy-headers = 1\n", "proxy-headers must be true or false"),
    ('http-timeout = "soon"\n', "http-timeout: could not convert string to float"),
    ('max-request-body = "lots"\n', "max-request-body: invalid size"),
    ("verbosity = 7\n", "verbosity must be one of [0, 1, 2]"),
    ("http-timeout = [1, 2]\n", "http-timeout takes one value"),
    ("proxy-header = true\n", "unknown setting 'proxy-header'; known settings: "),
])
def test_bad_interface_settings_name_the_file_and_the_setting(tmp_path, toml, message):
    (tmp_path / "procman.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        resolve({}, tmp_path)
    assert str(tmp_path / "procman.toml") in str(info.value) and message in str(info.value)
    if "unknown" in message:
        assert "proxy-headers" in str(info.value) and "workers" in str(info.value)


@pytest.mark.parametrize("binds, exposed", [
    (["127.0.0.1:8000"], None), (["[::1]:8000", "unix:/run/x/http.sock"], None), (["localhost:80"], None),
    (["0.0.0.0:8000"], "0.0.0.0:8000"), (["127.0.0.1:1", "[::]:8000"], "[::]:8000"), (["8000"], None),
])
def test_trusting_proxy_headers_on_an_open_port_is_warned_about(tmp_path, binds, exposed):
    config = resolve({"bind": binds, "proxy_headers": True}, tmp_path)
    warning = proxy_headers_warning(config)
    assert (warning is None) == (exposed is None), warning
    if exposed:
        assert exposed in warning and "X-Forwarded-For" in warning
    assert proxy_headers_warning(resolve({"bind": binds}, tmp_path)) is None
