"""``procman.interface.layer_source.layer_from_settings``: the interface's reading of ``CHANNEL_LAYERS``.

Each case runs in a fresh interpreter, as the interface server does (which imports the settings
module, never Django). The rules are :mod:`asgi_ipc.layer_settings`'; here, what the
interface adds: ``ROUTING`` is not needed, the layer is attached unless ``CONFIG`` says
``create``, and a layer without segments (Redis) is built with its ``CONFIG`` unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PROBE = """
import json, sys
from procman.interface.layer_source import LayerSourceError, layer_from_settings
try:
    layer = layer_from_settings(sys.argv[1])
except LayerSourceError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"type": type(layer).__name__, "created": bool(getattr(layer, "owner", False)),
                      "django": "django" in sys.modules}))
    close = getattr(layer, "close", None)
    if close:
        close()
"""


def probe(tmp_path: Path, name: str, layers: str) -> dict:
    (tmp_path / f"{name}.py").write_text(f"SECRET_KEY = 'x'\nCHANNEL_LAYERS = {layers}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", PROBE, name], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_no_routing_is_needed_and_a_missing_segment_is_not_created(tmp_path, prefix):
    answer = probe(tmp_path, "ls_attach", f"{{'default': {{'BACKEND': 'asgi_ipc.IPCChannelLayer', "
                                          f"'CONFIG': {{'prefix': {prefix!r}}}}}}}")
    assert answer["error"].startswith("building 'asgi_ipc.IPCChannelLayer' from ls_attach.CHANNEL_LAYERS['default'] "
                                      "failed: SegmentMissing")
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")


def test_an_explicit_create_in_config_is_kept(tmp_path, prefix):
    answer = probe(tmp_path, "ls_create", f"{{'default': {{'BACKEND': 'asgi_ipc.IPCChannelLayer', 'CONFIG': "
                                          f"{{'prefix': {prefix!r}, 'create': True, 'message_memory': 2**20, 'max_message_size': 65536}}}}}}")
    # Only the settings module was imported: the interface process never loads Django.
    assert answer == {"type": "IPCChannelLayer", "created": True, "django": False}
    assert not os.path.exists(f"/dev/shm/asgi_ipc.{prefix}")  # closed by its creator


def test_a_layer_without_segments_gets_its_config_unchanged(tmp_path):
    pytest.importorskip("redis", reason="the Redis layer needs redis-py")
    answer = probe(tmp_path, "ls_redis", "{'default': {'BACKEND': 'asgi_ipc.redis.RedisChannelLayer', "
                                         "'CONFIG': {'hosts': ['redis://127.0.0.1:1'], 'prefix': 'lsr'}}}")
    assert answer.get("type") == "RedisChannelLayer", answer  # no 'create' forced on it


@pytest.mark.parametrize(("layers", "message"), [
    ("None", "ls_bad.CHANNEL_LAYERS is not set, so it has no 'default' entry; add e.g. CHANNEL_LAYERS = "),
    ("{'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', 'OPTIONS': {}}}",
     "ls_bad.CHANNEL_LAYERS['default'] has unknown key(s) ['OPTIONS']"),
    ("{'default': {'BACKEND': 'IPCChannelLayer'}}", "['BACKEND'] must be the dotted path of a layer class"),
    ("{'default': {'BACKEND': 'ls_nothing.Layer'}}", "['BACKEND'] = 'ls_nothing.Layer' cannot be imported"),
    ("{'default': {'BACKEND': 'asgi_ipc.IPCChannelLayer', 'CONFIG': {'bogus': 1}}}",
     "ls_bad.CHANNEL_LAYERS['default']: asgi_ipc.IPCChannelLayer rejected its CONFIG ['bogus', 'create']"),
], ids=["unset", "unknown-key", "not-dotted", "unimportable", "bad-config"])
def test_malformed_settings_are_the_readers_errors(tmp_path, layers, message):
    assert message in probe(tmp_path, "ls_bad", layers)["error"]
