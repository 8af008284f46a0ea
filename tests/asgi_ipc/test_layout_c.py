"""The C side of the layout: ``_layout.h`` is generated from ``layout.py`` and says the same
thing to a C compiler, the built ``_fastpath`` carries the hash it was built with, and a build
for another layout is refused (the layer then runs pure Python and says how to rebuild).

These compile with the system's ``gcc`` against this Python's headers, as ``setup.py`` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import asgi_ipc
from asgi_ipc import layout as L

PACKAGE = Path(asgi_ipc.__file__).resolve().parent
ROOT = PACKAGE.parent

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None,
                               reason="gcc is not installed (Debian: apt-get install gcc)")


def expected_defines() -> dict[str, int]:
    """What ``_layout.h`` must define, computed from the tables independently of ``c_header``."""
    out = {"LAYOUT_VERSION": L.LAYOUT_VERSION}
    out.update({f"LAYOUT_{name}": value for name, value in L._constants().items()})
    for record in L.RECORDS:
        prefix = f"LAYOUT_{record.name.upper()}"
        out[f"{prefix}_SIZE"] = record.size
        for field in record.fields:
            out[f"{prefix}_{field.name.upper()}"] = field.offset
            out[f"{prefix}_{field.name.upper()}_SIZE"] = field.size
            if field.item_size != field.size:
                out[f"{prefix}_{field.name.upper()}_ITEM_SIZE"] = field.item_size
    return out


def compile_extension(tmp_path: Path, header: str) -> Path:
    """Build ``_fastpath.c`` against ``header`` (as its ``_layout.h``) into ``tmp_path``."""
    shutil.copy(PACKAGE / "_fastpath.c", tmp_path / "_fastpath.c")
    (tmp_path / "_layout.h").write_text(header)
    target = tmp_path / ("_fastpath" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O0", "-std=c11", "-D_GNU_SOURCE",
         f"-I{sysconfig.get_paths()['include']}", str(tmp_path / "_fastpath.c"), "-o",
         str(target)],
        check=True, capture_output=True, text=True, timeout=120)
    return target


def test_the_generated_header_defines_every_field_once():
    header = L.c_header()
    names = re.findall(r"^#define (\w+) ", header, re.M)
    assert len(names) == len(set(names)), "two defines share a name"
    assert f'#define LAYOUT_HASH "{L.LAYOUT_HASH}"' in header
    assert set(names) - {"LAYOUT_HASH"} == set(expected_defines())


def test_the_header_the_build_wrote_is_the_one_layout_py_generates_now():
    """``setup.py`` writes ``_layout.h`` at build time (it is not committed): the one next to
    the package must be what ``layout.py`` generates today, or the build is stale."""
    built = PACKAGE / "_layout.h"
    if not built.exists():
        pytest.skip("asgi_ipc/_layout.h is not there: the C extension was never built here")
    assert built.read_text() == L.c_header(), (
        "asgi_ipc/_layout.h differs from layout.c_header(): rebuild with pip install -e .")


def test_the_built_extension_carries_this_layouts_hash():
    try:
        import asgi_ipc._fastpath as built
    except ImportError:
        pytest.skip("the C fast path is not built")
    assert (built.LAYOUT_HASH, built.LAYOUT_VERSION) == (L.LAYOUT_HASH, L.LAYOUT_VERSION), (
        "asgi_ipc._fastpath is stale: rebuild with pip install -e .")


def test_setup_py_writes_the_header_from_layout_py_alone(tmp_path):
    """The build step loads layout.py without asgi_ipc's dependencies (a build environment has
    none) and writes exactly ``c_header()``."""
    tree = tmp_path / "tree"
    (tree / "asgi_ipc").mkdir(parents=True)
    shutil.copy(ROOT / "setup.py", tree / "setup.py")
    shutil.copy(PACKAGE / "layout.py", tree / "asgi_ipc" / "layout.py")
    probe = textwrap.dedent("""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("setup", "setup.py")
        setup_module = importlib.util.module_from_spec(spec)
        import setuptools
        setuptools.setup = lambda **kwargs: None  # only the build step is under test
        spec.loader.exec_module(setup_module)
        setup_module.write_layout_header()
        assert "asgi_ipc" not in sys.modules, "the build step imported the package"
    """)
    subprocess.run([sys.executable, "-I", "-c", probe], cwd=tree, check=True, timeout=60)
    assert (tree / "asgi_ipc" / "_layout.h").read_text() == L.c_header()


@needs_gcc
def test_a_c_compiler_reads_the_header_as_the_tables_say(tmp_path):
    expected = expected_defines()
    (tmp_path / "_layout.h").write_text(L.c_header())
    lines = "\n".join(f'    printf("{name} %llu\\n", (unsigned long long)({name}));'
                      for name in expected)
    (tmp_path / "probe.c").write_text(
        f'#include <stdio.h>\n#include "_layout.h"\nint main(void) {{\n{lines}\n'
        f'    printf("LAYOUT_HASH %s\\n", LAYOUT_HASH);\n    return 0;\n}}\n')
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", str(tmp_path / "probe.c"), "-o",
                    str(tmp_path / "probe")], check=True, timeout=60)
    out = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    assert seen.pop("LAYOUT_HASH") == L.LAYOUT_HASH
    assert {name: int(value) for name, value in seen.items()} == expected


@needs_gcc
def test_a_width_the_c_code_does_not_read_stops_the_build(tmp_path):
    """A field whose width changes is caught by _fastpath.c's static asserts at compile time."""
    header = L.c_header().replace("#define LAYOUT_CHANNEL_HEAD_SIZE 4",
                                  "#define LAYOUT_CHANNEL_HEAD_SIZE 8")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        compile_extension(tmp_path, header)
    assert "channel record widths differ" in failed.value.stderr


@needs_gcc
def test_a_build_for_another_layout_is_refused_and_the_layer_runs_pure(tmp_path, prefix):
    """A real ``_fastpath`` compiled from a ``_layout.h`` with another hash, put where
    ``asgi_ipc._fastpath`` is imported from: the layer warns, names the rebuild, does not use
    it, and still works (pure Python); the doctor reports it."""
    tampered = L.c_header().replace(L.LAYOUT_HASH, "feedfacefeedface")
    assert tampered != L.c_header()
    extension = compile_extension(tmp_path, tampered)
    program = textwrap.dedent(f"""
        import importlib.machinery, importlib.util, sys, warnings
        loader = importlib.machinery.ExtensionFileLoader("asgi_ipc._fastpath", {str(extension)!r})
        spec = importlib.util.spec_from_file_location("asgi_ipc._fastpath", {str(extension)!r},
                                                      loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        assert module.LAYOUT_HASH == "feedfacefeedface"
        import asgi_ipc
        sys.modules["asgi_ipc._fastpath"] = module
        asgi_ipc._fastpath = module
        from asgi_ipc import IPCChannelLayer
        from asgi_ipc.diagnostics import fastpath_status
        from asgi_ipc.native import FastPathMismatch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layer = IPCChannelLayer(prefix={prefix!r}, message_memory=256 * 1024, channels=64,
                                    groups=4, group_members=16, max_message_size=4096)
        try:
            mismatch = [w for w in caught if issubclass(w.category, FastPathMismatch)]
            assert len(mismatch) == 1, caught
            text = str(mismatch[0].message)
            assert "feedfacefeedface" in text and "pip install -e ." in text, text
            assert layer._a().fast is None
            layer.send("probe", {{"n": 1}})
            assert layer.receive(["probe"], block=False) == ("probe", {{"n": 1}})
            status = fastpath_status()
            assert not status.active and "feedfacefeedface" in status.reason
        finally:
            layer.close()
        print("refused")
    """)
    env = {k: v for k, v in os.environ.items() if k != "ASGI_IPC_PURE"}
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")
