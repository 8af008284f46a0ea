"""The one list of interface options: the command line, ServerOptions and the docs agree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from procman.interface.cli import build_parser
from procman.interface.options import ServerOptions, SizeError, interface_options, options_from_namespace, parse_size

DOCS = Path(__file__).resolve().parents[3] / "docs" / "interface.md"


def test_every_option_is_a_server_options_field_with_its_default():
    defaults = ServerOptions()
    specs = interface_options()
    assert len({spec.flag for spec in specs}) == len(specs)
    for spec in specs:
        assert getattr(defaults, spec.name) == spec.default
        assert spec.help and spec.group in ("HTTP", "TLS", "limits", "WebSocket", "process")
    internal = {f.name for f in dataclasses.fields(ServerOptions)} - {s.name for s in specs}
    assert internal == {"body_chunk_size", "check_interval", "retry_after"}


def test_the_command_line_defaults_are_the_server_defaults():
    args = build_parser().parse_args(["x:y"])
    assert options_from_namespace(args) == ServerOptions()


def test_to_argv_round_trips_through_the_command_line():
    changed = {
        "http": "h11", "max_request_time": 30.0, "proxy_headers": True, "max_ws_pending": 4096,
        "ws_protocols": ["chat", "v2"], "websocket_timeout": -1.0, "backlog": 128,
    }
    argv = [arg for spec in interface_options() if spec.name in changed for arg in spec.to_argv(changed[spec.name])]
    options = options_from_namespace(build_parser().parse_args(["x:y", *argv]))
    assert options == dataclasses.replace(ServerOptions(), **changed)
    assert all(spec.to_argv(spec.default) == [] for spec in interface_options())


@pytest.mark.parametrize("spec", interface_options(), ids=lambda spec: spec.flag)
def test_every_option_is_documented(spec):
    assert f"`{spec.flag}" in DOCS.read_text(), f"{spec.flag} is missing from docs/interface.md"


def test_bad_values_say_what_was_wrong():
    with pytest.raises(ValueError, match="max_ws_output_buffer must be greater than 0"):
        ServerOptions(max_ws_output_buffer=0).validate()
    with pytest.raises(ValueError, match="http must be one of"):
        ServerOptions(http="picohttp").validate()


@pytest.mark.parametrize(("text", "size"), [
    ("4096", 4096), (4096, 4096), ("0", 0), ("512K", 512 * 2**10), ("512k", 512 * 2**10),
    ("10M", 10 * 2**20), ("300MiB", 300 * 2**20), ("2GB", 2 * 2**30), ("1.5G", int(1.5 * 2**30)),
    (" 1T ", 2**40), ("0.5k", 512),
])
def test_one_size_grammar(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "-1", "1.5.0G", "12P", "1e3", "M", True])
def test_a_bad_size_says_what_is_accepted(text):
    with pytest.raises(SizeError, match="invalid size .*use a number of bytes, optionally with K, M, G or T"):
        parse_size(text)


def test_a_size_below_the_minimum_names_the_minimum():
    with pytest.raises(SizeError, match="must be at least 1 bytes"):
        parse_size("0", minimum=1)
    assert issubclass(SizeError, ValueError)  # configuration readers catch ValueError


def test_the_command_line_takes_decimal_sizes_and_explains_bad_ones(capsys):
    args = build_parser().parse_args(["x:y", "--max-request-body", "1.5G"])
    assert options_from_namespace(args).max_request_body == int(1.5 * 2**30)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["x:y", "--max-request-body", "lots"])
    assert "invalid size 'lots'" in capsys.readouterr().err


def test_the_interface_server_imports_nothing_of_procman_outside_its_package():
    import subprocess
    import sys

    code = (
        "import sys, procman.interface.cli, procman.interface.server, procman.interface.http_h11, "
        "procman.interface.http_httptools\n"
        "print(sorted(m for m in sys.modules if m.startswith('procman') and m != 'procman' "
        "and not m.startswith('procman.interface')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
