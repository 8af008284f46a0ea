"""docs/deploying.md shows the recipes of deploy/ verbatim (the files the other deployment tests
run), and the example settings file is valid."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from procman.config import interface_argv, resolve

from .procs import REPO

DOC = REPO / "docs" / "deploying.md"
DEPLOY = REPO / "deploy"
SNIPPET = re.compile(r"<!-- (deploy/[^ ]+) -->\n```[a-z]*\n(.*?)```\n", re.DOTALL)


def test_every_recipe_in_the_doc_is_the_tested_file():
    snippets = SNIPPET.findall(DOC.read_text())
    shown = {path for path, _ in snippets}
    files = {str(path.relative_to(REPO)) for path in DEPLOY.rglob("*") if path.is_file()}
    assert shown == files, f"files not in the doc: {files - shown}; snippets without a file: {shown - files}"
    for path, text in snippets:
        assert text == (REPO / path).read_text(), f"docs/deploying.md's copy of {path} differs from the file"


def test_the_example_settings_file_is_valid(tmp_path):
    shutil.copy(DEPLOY / "procman.toml", tmp_path / "procman.toml")
    config = resolve({}, tmp_path)
    assert config.workers == 4 and config.max_memory == 512 * 2**20
    assert "--proxy-headers" in interface_argv(config) and "--http-timeout=60.0" in interface_argv(config)


def test_the_readme_guide_migrates_and_points_here():
    readme = (REPO / "README.md").read_text()
    assert "python manage.py migrate" in readme
    assert "docs/deploying.md" in readme
