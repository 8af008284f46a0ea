"""Each executable takes its exit codes from one module, and its doc's table lists exactly those."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

import asgi_ipc.cli
import django_glue.exitcodes
import procman.exitcodes
import procman.interface.exitcodes

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _codes(module: ModuleType, names: list[str]) -> set[int]:
    return {getattr(module, name) for name in names}


def _documented_codes(doc: str, heading: str, table_intro: str | None) -> set[int]:
    """The whole-number cells of the first table in section ``heading`` (after ``table_intro``)."""
    text = (DOCS / doc).read_text()
    assert heading in text, f"{doc} has no section {heading!r}"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    if table_intro is not None:
        assert table_intro in section, f"{doc}, {heading!r}: no {table_intro!r}"
        section = section.split(table_intro, 1)[1]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append(line)
    cells = [cell.strip() for row in rows for cell in row.strip("|").split("|")]
    return {int(match.group(1)) for cell in cells if (match := re.fullmatch(r"(\d+)(?: \(.*\))?", cell))}


@pytest.mark.parametrize(("module", "names", "doc", "heading", "intro"), [
    (procman.exitcodes, ["OK", "FAILURE", "USAGE", "BOOT_ERROR", "FAST"], "procman.md", "## Children, crashes and exit codes",
     "`procman` exit codes:"),
    (procman.interface.exitcodes, procman.interface.exitcodes.__all__, "interface.md",
     "## Lifecycle, signals and exit codes", None),
    (asgi_ipc.cli, ["EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE"], "asgi-ipc-cli.md", "## Exit codes and errors", None),
    (django_glue.exitcodes, django_glue.exitcodes.__all__, "django_glue.md", "## 2. Run it",
     "`manage.py runworker` exit codes"),
], ids=["procman", "procman interface", "asgi-ipc", "runworker"])
def test_the_doc_lists_exactly_the_codes_of_the_module(module, names, doc, heading, intro):
    assert _documented_codes(doc, heading, intro) == _codes(module, names)


def test_procman_exitcodes_exports_its_whole_table():
    assert {name for name in procman.exitcodes.__all__ if name.isupper()} == {"OK", "FAILURE", "USAGE", "BOOT_ERROR", "FAST"}
