"""The collector is paused only for the parse of a page, and always restored."""

from __future__ import annotations

import gc

import orjson
import pytest

from siemconn.ops import gctune
from siemconn.ops.gctune import gc_settings, parse_paused


def test_settings_from_the_environment() -> None:
    assert gc_settings({}).pause_parse
    assert not gc_settings({"SIEMCONN_GC": "off"}).pause_parse
    assert not gc_settings({"SIEMCONN_GC": " OFF "}).pause_parse


def test_parse_paused_pauses_and_restores() -> None:
    seen: list[bool] = []

    def loads(content: bytes) -> object:
        seen.append(gc.isenabled())
        return orjson.loads(content)

    assert gc.isenabled()
    assert parse_paused(loads, b'{"events": [1]}') == {"events": [1]}
    assert seen == [False] and gc.isenabled()


def test_parse_paused_restores_after_an_error_and_keeps_a_disabled_collector() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        parse_paused(orjson.loads, b"{not json")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_paused(orjson.loads, b"[]")
        assert not gc.isenabled()  # not re-enabled by us
    finally:
        gc.enable()


def test_off_leaves_the_collector_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gctune, "GC_SETTINGS", gc_settings({"SIEMCONN_GC": "off"}))
    seen: list[bool] = []
    parse_paused(lambda c: seen.append(gc.isenabled()), b"")
    assert seen == [True]
