"""siemconn.syslog.formats.base: the shared header parts, and what a format gets by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from siemconn.config import ServerConfig
from siemconn.syslog.formats.base import (
    MappedFormat,
    SyslogFormat,
    bsd_timestamp,
    default_hostname,
    pri,
    rfc3339,
    safe_cut,
    sanitize_field,
    utf8,
)
from siemconn.syslog.mapping import Mapped


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | kw)


def test_pri_is_facility_times_eight_plus_severity() -> None:
    assert pri(server()) == "<14>"
    assert pri(server(facility="local7", severity="debug")) == "<191>"
    assert pri(server(facility="kern", severity="emerg")) == "<0>"


def test_sanitize_field_keeps_printusascii_only() -> None:
    assert sanitize_field("my host\u00e9", 255) == "my_host_"
    assert sanitize_field("a" * 300, 255) == "a" * 255
    assert sanitize_field("", 32) == "-"


def test_default_hostname_is_this_machine_sanitized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "box 1")
    assert default_hostname() == "box_1"


def test_rfc3339_is_utc_with_a_z_four_digit_years_and_microseconds_when_any() -> None:
    assert rfc3339(datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)) == "2023-11-02T00:18:01Z"
    assert rfc3339(datetime(2023, 11, 2, 0, 18, 1, 5, tzinfo=UTC)) == "2023-11-02T00:18:01.000005Z"
    assert (
        rfc3339(datetime(2023, 11, 2, 1, 18, 1, tzinfo=timezone(timedelta(hours=1))))
        == "2023-11-02T00:18:01Z"
    )
    assert rfc3339(datetime(2023, 1, 1)) == "2023-01-01T00:00:00Z"  # naive is UTC
    assert rfc3339(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"


def test_bsd_timestamp_pads_the_day_with_a_space() -> None:
    assert bsd_timestamp(datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)) == "Nov  2 00:18:01"
    assert bsd_timestamp(datetime(2023, 12, 25, 9, 5, 7, tzinfo=UTC)) == "Dec 25 09:05:07"


def test_utf8_replaces_a_lone_surrogate_instead_of_failing() -> None:
    assert utf8("é") == "é".encode()
    assert utf8("a\ud800b") == "a\ufffdb".encode()


def test_safe_cut_keeps_utf8_sequences_and_escapes_whole() -> None:
    message = "ab€".encode()  # the euro sign is 3 bytes
    for limit in (3, 4):
        assert safe_cut(message, limit, escapes=False) == b"ab"
    assert safe_cut(b"ab\\\\cd", 3, escapes=True) == b"ab"  # never "ab\" (half of "\\")
    assert safe_cut(b"ab\\\\cd", 4, escapes=True) == b"ab\\\\"
    assert safe_cut(b"ab\\\\cd", 3, escapes=False) == b"ab\\"


class Plain(SyslogFormat):
    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        pass

    def header(self, stream: str, utc: datetime) -> str:
        return "<14>"


class Kv(MappedFormat):
    def body(self, payload: str | bytes, stream: str) -> str:
        return "KV"

    def render(self, record: Mapped) -> str:
        return "KV"

    def field(self, key: str, json_text: str) -> str:
        return f" {key}={json_text}"


class EscapingKv(Kv):
    escapes = True


def test_a_format_has_defaults_for_all_but_its_constructor_and_header() -> None:
    with pytest.raises(TypeError):
        SyslogFormat(server(), None)  # type: ignore[abstract]
    f = Plain(server(), None)
    assert f.uses_event_time is False and f.event_header("{}", "audit") == (None, None)
    assert Plain.cut("ab€".encode(), 3) == b"ab\xe2"  # JSON formats cut bytes; their payload is ASCII


def test_a_mapped_format_has_the_rfc3164_header_without_a_tag_and_a_safe_cut() -> None:
    f = Kv(server(hostname="edge-1", facility="local0", severity="warning"), "ignored")
    assert f.header("audit", datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)) == "<132>Nov  2 00:18:01 edge-1 "
    assert (
        Kv(server(), "given host").header("audit", datetime(2024, 1, 1, tzinfo=UTC)).endswith(" given_host ")
    )
    assert Kv.cut(b"ab\\\\cd", 3) == b"ab\\" and EscapingKv.cut(b"ab\\\\cd", 3) == b"ab"
