"""asgi_ipc.diagnostics: the rules both doctors present."""

from __future__ import annotations

import os

from asgi_ipc import IPCChannelLayer, diagnostics
from asgi_ipc.layout import HEADER, LAYOUT_FINGERPRINT


def test_fastpath_status_follows_the_build_and_asgi_ipc_pure(monkeypatch):
    monkeypatch.setenv("ASGI_IPC_PURE", "1")
    status = diagnostics.fastpath_status()
    assert not status.active and "ASGI_IPC_PURE=1" in status.reason
    monkeypatch.delenv("ASGI_IPC_PURE")
    try:
        import asgi_ipc._fastpath  # noqa: F401
        built = True
    except ImportError:
        built = False
    status = diagnostics.fastpath_status()
    assert status.active == built
    assert status.reason == "C fast path active" if built else "not built" in status.reason


def test_survey_reports_an_in_use_segment_checked_and_the_fast_path(prefix):
    layer = IPCChannelLayer(prefix=prefix, create=True, message_memory=4 * 2**20)
    try:
        data = diagnostics.survey([prefix])
        (record,) = data["segments"]
        assert record["state"] == "in use" and record["creator_pid"] == os.getpid() and record["problems"] == []
        assert data["fastpath"]["active"] == diagnostics.fastpath_status().active
    finally:
        layer.close()
    assert diagnostics.survey([prefix])["segments"] == []


def test_survey_reports_a_segment_of_another_layout_as_invalid_and_leaves_it_unchecked(prefix):
    layer = IPCChannelLayer(prefix=prefix, create=True, message_memory=4 * 2**20)
    mm = layer._a().segment.mm
    fingerprint = HEADER.run("fingerprint")
    fingerprint.pack_into(mm, HEADER.at("fingerprint"), LAYOUT_FINGERPRINT ^ 1)
    try:
        (record,) = diagnostics.survey([prefix], clean=True)["segments"]
        assert record["state"] == "invalid" and record["problems"] is None
        assert f"layout fingerprint {LAYOUT_FINGERPRINT ^ 1:08x}" in record["verdict"]
        assert f"mapped by pids {os.getpid()}" in record["verdict"]  # so --clean left it
        assert not record["removed"] and os.path.exists(record["path"])
    finally:
        fingerprint.pack_into(mm, HEADER.at("fingerprint"), LAYOUT_FINGERPRINT)
        layer.close()


def test_a_segment_that_goes_away_during_the_survey_is_gone_not_broken(prefix):
    layer = IPCChannelLayer(prefix=prefix, create=True, message_memory=4 * 2**20)
    try:
        (info,) = [i for i in diagnostics.list_segments() if i.prefix == prefix]
        record = diagnostics._examine(info)
    finally:
        layer.close()  # its site stops between the listing and the check
    diagnostics._check(record)
    assert record["state"] == "gone" and record["problems"] is None


def test_removeipc_is_asked_only_where_systemd_runs(monkeypatch):
    monkeypatch.setattr(diagnostics, "systemd_running", lambda: False)
    _shm, warnings = diagnostics.environment_warnings()
    assert not any("RemoveIPC" in w for w in warnings)
