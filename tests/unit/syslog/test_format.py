"""siemconn.syslog.format: exact default bytes, the three shapes, framing, UDP oversize, and properties."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.syslogparse import parse, unframe

from siemconn.config import ServerConfig
from siemconn.events.encoder import encode_event
from siemconn.syslog.format import (
    Formatter,
    fit_datagram,
    format_message,
    frame,
    parse_event_timestamp,
    rfc3339,
)

NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)
EVENT: dict[str, Any] = {"id": 42, "event_timestamp": "2023-11-01T10:20:30Z", "user": "bob", "score": 0.5}


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | kw)


# --- exact bytes: these break if the default format or framing changes ---------------------------


def test_legacy_default_line_exact_bytes() -> None:
    s = server()
    assert (s.format, s.framing, s.facility, s.severity) == ("legacy", "lf", 1, 6)
    wire = frame(format_message(encode_event(EVENT), "detections", s, NOW), s.framing)
    assert wire == (
        b'<14>2023-11-02T00:18:01Z VECTRA-SYSLOG-CONNECTOR: {"id": 42, "event_timestamp": '
        b'"2023-11-01T10:20:30Z", "user": "bob", "score": 0.5}\n'
    )


def test_encode_event_is_python_json_defaults() -> None:
    event = {"a": "é\n\x00", "b": [1, {"c": None}]}
    assert encode_event(event) == '{"a": "\\u00e9\\n\\u0000", "b": [1, {"c": null}]}'
    assert encode_event(event) == json.dumps(event)


def test_legacy_pri_hostname_and_microseconds_dropped() -> None:
    s = server(facility="local0", severity="warning", hostname="edge-1")
    now = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert format_message("{}", "audit", s, now) == b"<132>2024-02-29T23:59:59Z edge-1: {}"


def test_non_utc_now_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    now = datetime(2023, 11, 2, 1, 18, 1, tzinfo=paris)
    assert format_message("{}", "audit", server(), now).startswith(b"<14>2023-11-02T00:18:01Z ")


def test_rfc5424_exact_bytes() -> None:
    s = server(format="rfc5424", hostname="host-a", app_name="vectra", structured_data='[x@32473 t="a b"]')
    msg = format_message('{"id": 1}', "entity_scoring", s, NOW)
    assert msg == b'<14>1 2023-11-02T00:18:01Z host-a vectra - entity_scoring [x@32473 t="a b"] {"id": 1}'
    now = NOW.replace(microsecond=123456)
    assert format_message("{}", "audit", server(format="rfc5424", hostname="h"), now) == (
        b"<14>1 2023-11-02T00:18:01.123456Z h siemconn - audit - {}"
    )


def test_rfc5424_default_hostname_is_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "my host\u00e9")
    msg = format_message("{}", "audit", server(format="rfc5424"), NOW)
    assert parse(msg, "rfc5424").hostname == "my_host_"


def test_rfc5424_msgid_is_stream_before_dot() -> None:
    msg = format_message("{}", "entity_scoring.host", server(format="rfc5424", hostname="h"), NOW)
    assert parse(msg, "rfc5424").msgid == "entity_scoring"


def test_rfc5424_event_timestamp_mode() -> None:
    s = server(format="rfc5424", hostname="h", timestamp="event")
    p = parse(format_message(encode_event(EVENT), "audit", s, NOW), "rfc5424")
    assert p.timestamp == "2023-11-01T10:20:30Z"
    offset = encode_event({"event_timestamp": "2023-11-01T12:20:30.5+02:00"})
    assert (
        parse(format_message(offset, "audit", s, NOW), "rfc5424").timestamp == "2023-11-01T10:20:30.500000Z"
    )
    for payload in ("{}", '{"event_timestamp": "yesterday"}', '{"event_timestamp": 7}', "[1]", "not json"):
        assert parse(format_message(payload, "audit", s, NOW), "rfc5424").timestamp == "2023-11-02T00:18:01Z"
    # send mode never reads the payload
    assert parse(
        format_message(encode_event(EVENT), "audit", server(format="rfc5424"), NOW), "rfc5424"
    ).timestamp == ("2023-11-02T00:18:01Z")


def test_parse_event_timestamp_naive_is_utc() -> None:
    assert parse_event_timestamp('{"event_timestamp": "2023-11-01T10:20:30"}') == "2023-11-01T10:20:30Z"
    assert rfc3339(datetime(2023, 1, 1)) == "2023-01-01T00:00:00Z"


def test_rfc3164_exact_bytes() -> None:
    s = server(format="rfc3164", hostname="host-a", app_name="vectra-rux_1")
    assert format_message("{}", "audit", s, NOW) == b"<14>Nov  2 00:18:01 host-a vectrarux1: {}"
    later = datetime(2023, 12, 25, 9, 5, 7, tzinfo=UTC)
    assert format_message("{}", "audit", s, later) == b"<14>Dec 25 09:05:07 host-a vectrarux1: {}"


def test_formatter_caches_header_per_now() -> None:
    f = Formatter(server())
    a = f.format("{}", "audit", NOW)
    b = f.format("{}", "audit", NOW + timedelta(seconds=1))
    assert a != b and b.startswith(b"<14>2023-11-02T00:18:02Z")
    assert f.format("{}", "audit", NOW) == a


# --- framing and UDP ----------------------------------------------------------------------------


def test_frame_lf_and_octet_counting() -> None:
    assert frame(b"<14>x", "lf") == b"<14>x\n"
    assert frame(b"<14>x", "octet-counting") == b"5 <14>x"
    assert frame("é".encode(), "octet-counting") == b"2 \xc3\xa9"  # counts bytes, not characters
    with pytest.raises(ValueError, match="unknown framing"):
        frame(b"x", "nul")


def test_fit_datagram_policies() -> None:
    small = b"x" * 480
    big = b"y" * 1000
    trunc = server(server_protocol="UDP", max_message_size=480)
    drop = server(server_protocol="UDP", max_message_size=480, udp_oversize="drop")
    assert fit_datagram(small, trunc) is small
    assert fit_datagram(big, trunc) == b"y" * 480
    assert fit_datagram(big, drop) is None
    assert server(server_protocol="UDP").message_budget == 65507  # the default: unchanged for UDP
    assert server(server_protocol="TCP").message_budget is None  # and no limit for TCP, TLS and RELP


# --- properties ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=30,
)
events = st.dictionaries(st.text(max_size=30), json_values, max_size=8)
streams = st.sampled_from(["audit", "detections", "entity_scoring", "entity_scoring.account"])
FORMATS = ("legacy", "rfc5424", "rfc3164")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("framing", ["lf", "octet-counting"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=events, stream=streams, micro=st.integers(0, 999_999))
def test_any_event_round_trips(
    fmt: str, framing: str, event: dict[str, Any], stream: str, micro: int
) -> None:
    s = server(format=fmt, framing=framing, hostname="h1", app_name="siemconn")
    now = NOW.replace(microsecond=micro)
    msg = format_message(encode_event(event), stream, s, now)
    assert b"\n" not in msg and b"\r" not in msg
    wire = frame(msg, framing) + frame(msg, framing)  # two in a row must split cleanly
    assert unframe(wire, framing) == [msg, msg]
    p = parse(msg, fmt)
    assert json.loads(p.payload) == event
    assert p.pri == 14
    if fmt == "rfc5424":
        assert (p.hostname, p.app_name, p.procid, p.msgid) == ("h1", "siemconn", "-", stream.split(".")[0])
    elif fmt == "legacy":
        assert p.hostname == "h1" and p.timestamp == "2023-11-02T00:18:01Z"
    else:
        assert (p.hostname, p.app_name, p.timestamp) == ("h1", "siemconn", "Nov  2 00:18:01")


@settings(max_examples=50, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=0x1F) | st.characters(), min_size=1, max_size=5000))
def test_control_characters_and_unicode_never_break_the_line(text: str) -> None:
    for fmt in FORMATS:
        msg = format_message(encode_event({"v": text}), "audit", server(format=fmt, hostname="h"), NOW)
        assert re.fullmatch(rb"[\x20-\x7e]+", msg), "payload must be printable ASCII only"
        assert json.loads(parse(msg, fmt).payload) == {"v": text}


def test_deep_nesting_and_long_strings_round_trip() -> None:
    deep: Any = "leaf"
    for _ in range(300):
        deep = {"k": [deep]}
    event = {"id": 1, "deep": deep, "long": "z" * 200_000}
    for fmt in FORMATS:
        msg = format_message(encode_event(event), "audit", server(format=fmt, hostname="h"), NOW)
        assert json.loads(parse(msg, fmt).payload) == event
