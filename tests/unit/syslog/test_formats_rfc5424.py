"""siemconn.syslog.formats.rfc5424: the IETF header, MSGID per stream, and the header from the event's
own time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from siemconn.config import ServerConfig
from siemconn.syslog.formats.rfc5424 import Rfc5424, parse_event_timestamp

NOW = datetime(2023, 11, 2, 0, 18, 1, 123456, tzinfo=UTC)


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | kw)


def test_header_exact_with_msgid_and_structured_data() -> None:
    f = Rfc5424(server(hostname="host-a", app_name="vectra", structured_data='[x@32473 t="a b"]'), None)
    assert f.header("entity_scoring.host", NOW) == (
        '<14>1 2023-11-02T00:18:01.123456Z host-a vectra - entity_scoring [x@32473 t="a b"] '
    )
    assert (
        f.header("audit", NOW.replace(microsecond=0))
        == '<14>1 2023-11-02T00:18:01Z host-a vectra - audit [x@32473 t="a b"] '
    )


def test_header_fields_are_printusascii() -> None:
    f = Rfc5424(server(app_name="siemconn"), "my host\u00e9")
    assert (
        f.header("weird stream", NOW)
        == "<14>1 2023-11-02T00:18:01.123456Z my_host_ siemconn - weird_stream - "
    )


def test_send_time_mode_never_reads_the_event() -> None:
    assert Rfc5424(server(), "h").uses_event_time is False


def test_event_time_mode_takes_the_header_from_the_event() -> None:
    f = Rfc5424(server(hostname="h", timestamp="event"), None)
    assert f.uses_event_time is True
    payload = json.dumps({"id": 1, "event_timestamp": "2023-11-01T12:20:30.5+02:00"})
    want = "<14>1 2023-11-01T10:20:30.500000Z h siemconn - audit - "
    assert f.event_header(payload, "audit") == (want, None)
    assert f.event_header(payload.encode(), "audit") == (want, None)
    assert f.event_header('{"id": 1}', "audit") == (None, None)  # no time: the send time, no fallback
    head, problem = f.event_header('{"event_timestamp": "soon"}', "audit")
    assert head is None and problem is not None and "soon" in problem
    head, problem = f.event_header('{"event_timestamp": "0001-01-01T00:00:00+05:00"}', "audit")
    assert head is None and problem is not None and problem.startswith("OverflowError")


def test_parse_event_timestamp_is_the_events_rfc5424_timestamp() -> None:
    assert parse_event_timestamp('{"event_timestamp": "2023-11-01T10:20:30"}') == "2023-11-01T10:20:30Z"
    assert parse_event_timestamp(b'{"event_timestamp": " 2023-11-01T10:20:30Z\\n"}') == "2023-11-01T10:20:30Z"
    assert parse_event_timestamp('{"event_timestamp": 5}') is None
    assert parse_event_timestamp("not json") is None
