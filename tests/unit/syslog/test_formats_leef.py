"""siemconn.syslog.formats.leef: the LEEF 2.0 format around siemconn.syslog.leef's text (which
test_siem_formats.py checks field by field)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from siemconn.config import ServerConfig
from siemconn.events.encoder import encode_event
from siemconn.syslog.formats.leef import Leef
from siemconn.syslog.leef import LeefEncoder
from siemconn.syslog.mapping import Field, Mapped

NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)
AUDIT = {"id": 3, "event_timestamp": "2023-11-01T10:20:30Z", "user_type": "local", "message": "a\tb"}


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | {"format": "leef"} | kw)


def test_header_is_rfc3164_without_a_tag() -> None:
    assert Leef(server(hostname="qradar-src"), None).header("audit", NOW) == "<14>Nov  2 00:18:01 qradar-src "


@pytest.mark.parametrize("delimiter", ["\t", "^"])
def test_body_is_the_leef_text_with_the_servers_delimiter(delimiter: str) -> None:
    body = Leef(server(leef_delimiter=delimiter), "h").body(encode_event(AUDIT), "audit")
    assert body == LeefEncoder(delimiter, include_raw=False).encode(encode_event(AUDIT), "audit")
    assert body.startswith("LEEF:2.0|Vectra AI|RUX Audit|")
    assert "|devTime=2023-11-01T10:20:30.000+0000" in body and f"{delimiter}sev=1{delimiter}" in body


def test_render_and_field_keep_the_delimiter_out_of_values() -> None:
    f = Leef(server(leef_delimiter="^"), "h")
    record = Mapped(
        "siemconn", "siemconn:heartbeat", "beat", 1, None, [Field("cs1", "server", "a^b", "server")]
    )
    assert f.render(record) == LeefEncoder("^", include_raw=False).render(
        record
    ) and "server=a b" in f.render(record)
    assert f.field("siemconnTrimmed", '{"fields": ["a^b"]}') == '^siemconnTrimmed={"fields": ["a\\u005eb"]}'


def test_a_cut_keeps_utf8_whole_and_knows_no_escapes() -> None:
    assert Leef.escapes is False
    assert Leef.cut(b"x=a\\\\b", 4) == b"x=a\\" and Leef.cut("x=é".encode(), 3) == b"x="
