"""siemconn.syslog.formats.cef: the CEF format around siemconn.syslog.cef's text (which
test_siem_formats.py checks field by field)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from siemconn.config import ServerConfig
from siemconn.events.encoder import encode_event
from siemconn.syslog import cef
from siemconn.syslog.formats.cef import Cef
from siemconn.syslog.mapping import Field, Mapped

NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)
EVENT = {"id": 7, "event_timestamp": "2023-11-01T10:20:30Z", "detection_type": "Port Scan", "threat": 50}


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | {"format": "cef"} | kw)


def test_header_is_rfc3164_without_a_tag() -> None:
    assert Cef(server(hostname="edge-1"), None).header("detections", NOW) == "<14>Nov  2 00:18:01 edge-1 "


def test_body_is_the_cef_text_with_or_without_the_raw_event() -> None:
    payload = encode_event(EVENT)
    bare = Cef(server(), "h").body(payload, "detections")
    assert bare.startswith("CEF:0|Vectra AI|RUX Detections|") and "rt=1698834030000 externalId=7" in bare
    assert cef.RAW_EVENT_KEY + "=" not in bare
    raw = Cef(server(include_raw_event=True), "h").body(payload.encode(), "detections")
    assert raw.startswith(bare) and raw.endswith(f"{cef.RAW_EVENT_KEY}={cef.escape_value(payload, True)}")


def test_render_and_field() -> None:
    record = Mapped(
        "siemconn", "siemconn:heartbeat", "beat", 1, None, [Field("cs1", "server", "a=b", "server")]
    )
    f = Cef(server(), "h")
    assert f.render(record) == cef.render(record) and "cs1=a\\=b" in f.render(record)
    assert f.field("siemconnTrimmed", '{"bytes": 9000}') == ' siemconnTrimmed={"bytes": 9000}'
    assert f.field("k", "a=b\\") == " k=a\\=b\\\\"


def test_a_cut_never_leaves_half_an_escape() -> None:
    assert Cef.escapes is True
    assert Cef.cut(b"x=a\\\\b", 4) == b"x=a" and Cef.cut(b"x=a\\\\b", 5) == b"x=a\\\\"
    assert Cef.cut("x=é".encode(), 3) == b"x="
