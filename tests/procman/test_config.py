"""Settings precedence and validation (procman.config)."""

from pathlib import Path

import pytest

from procman.config import ConfigError, Pool, parse_pool, resolve
from procman.interface.options import parse_size

NONE = {"workers": None, "bind": None}


def test_defaults_without_files(tmp_path):
    config = resolve(NONE, tmp_path)
    assert config.bind == ["127.0.0.1:8000"] and config.interfaces == 1 and config.workers >= 1
    assert config.max_requests == 0 and config.max_memory is None and config.sources == {}


def test_command_line_beats_procman_toml_beats_pyproject(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[tool.procman]\nworkers = 3\ninterfaces = 2\nmax-requests = 100\n")
    (tmp_path / "procman.toml").write_text("workers = 5\nbind = 'unix:/tmp/x.sock'\n")
    config = resolve({"workers": 7, "bind": None}, tmp_path)
    assert config.workers == 7 and config.sources["workers"] == "command line"
    assert config.bind == ["unix:/tmp/x.sock"] and config.sources["bind"].endswith("procman.toml")
    assert config.interfaces == 2 and "pyproject.toml" in config.sources["interfaces"]
    assert config.max_requests == 100 and config.jitter == 10


def test_explicit_config_file_and_pools(tmp_path: Path):
    other = tmp_path / "site.toml"
    other.write_text("pools = ['thumbnail=2:thumbnail,resize.*']\nmax_memory = '512M'\n")
    config = resolve(NONE, tmp_path, other)
    assert config.pools == [Pool("thumbnail", 2, ["thumbnail", "resize.*"])]
    assert config.max_memory == 512 * 2**20


@pytest.mark.parametrize(
    "text, message",
    [
        ("wrokers = 2\n", "unknown setting 'wrokers'"),
        ("workers = 0\n", "workers must be at least 1"),
        ("workers = 'many'\n", "workers must be a whole number"),
        ("timeout = -1\n", "timeout must be greater than 0"),
        ("max-memory = 'lots'\n", "invalid size 'lots'"),
        ("max-memory = '0'\n", "must be at least 1 bytes"),
        ("pools = ['thumbnail']\n", "must look like NAME=COUNT:CHANNEL_GLOB"),
        ("workers = [\n", "not valid TOML"),
    ],
)
def test_bad_file_values_name_the_file_and_setting(tmp_path: Path, text, message):
    (tmp_path / "procman.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        resolve(NONE, tmp_path)
    assert "procman.toml" in str(info.value)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        resolve(NONE, tmp_path, tmp_path / "nope.toml")


def test_duplicate_pool_names(tmp_path):
    with pytest.raises(ConfigError, match="unique"):
        resolve({"pools": ["a=1:x", "a=2:y"]}, tmp_path)


def test_parse_size_and_pool():
    assert parse_size("1.5G") == int(1.5 * 2**30) and parse_size("300MiB") == 300 * 2**20 and parse_size(4096) == 4096
    with pytest.raises(ValueError, match="at least 1"):
        parse_size("0", minimum=1)
    with pytest.raises(ValueError, match="at least 1"):
        parse_pool("x=0:y")
