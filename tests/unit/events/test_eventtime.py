"""siemconn.events.eventtime: the one rule for an event's own time, and every consumer agreeing on it.

The rule: text only; surrounding whitespace stripped; ISO 8601 as `datetime.fromisoformat` reads it ('Z'
and offsets accepted, fractional seconds to the microsecond); naive = UTC; no UTC form = no time. The
syslog header (rfc5424, `timestamp: "event"`), CEF's `rt`, LEEF's `devTime` and the replay window read
the same inputs the same way."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.syslogparse import parse

from siemconn.config import ServerConfig
from siemconn.events.eventtime import (
    EVENT_TIME_FIELD,
    as_event_time,
    event_time,
    event_timestamp_text,
    replay_time,
)
from siemconn.syslog.format import Formatter

T = datetime(2023, 11, 1, 10, 20, 30, tzinfo=UTC)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # the send time
COMMITTED = 1_700_000_000.25  # a page's commit time

# (value of event_timestamp, the time it means, or None: no time)
CASES: list[tuple[Any, datetime | None]] = [
    ("2023-11-01T10:20:30Z", T),
    ("2023-11-01T10:20:30+00:00", T),
    ("2023-11-01T12:20:30+02:00", T),
    ("2023-11-01T12:20:30+0200", T),
    ("2023-11-01T05:50:30-04:30", T),
    ("2023-11-01T10:20:30", T),  # naive = UTC
    ("2023-11-01 10:20:30", T),
    (" 2023-11-01T10:20:30Z", T),  # whitespace around the text is stripped
    ("2023-11-01T10:20:30Z ", T),
    ("\t2023-11-01T10:20:30Z\n", T),
    ("  2023-11-01T12:20:30+02:00  ", T),
    ("2023-11-01T10:20:30.5Z", T.replace(microsecond=500000)),
    ("2023-11-01T10:20:30.123456Z", T.replace(microsecond=123456)),
    ("2023-11-01T10:20:30.123456789Z", T.replace(microsecond=123456)),  # cut to the microsecond
    ("2023-11-01T11:20:30.001+01:00", T.replace(microsecond=1000)),
    ("2023-11-01", datetime(2023, 11, 1, tzinfo=UTC)),  # a date alone is midnight
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("0999-12-31T23:00:00.5-01:00", datetime(1000, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    # no time: garbage, blank, no UTC form, not text
    ("yesterday", None),
    ("", None),
    ("   ", None),
    ("2024-13-01", None),
    ("2023-11-01T25:00:00Z", None),
    ("2023-11-01T10:20:30 garbage", None),
    ("0001-01-01T00:00:00+05:00", None),  # before year 1 in UTC
    ("9999-12-31T23:59:59-23:59", None),  # after year 9999 in UTC
    (1698834030, None),
    (1698834030.5, None),
    (True, None),
    (["2023-11-01T10:20:30Z"], None),
    ({"t": "2023-11-01T10:20:30Z"}, None),
]


@pytest.mark.parametrize(("value", "want"), CASES, ids=[repr(c[0]) for c in CASES])
def test_as_event_time(value: Any, want: datetime | None) -> None:
    got = as_event_time(value)
    assert got == want
    if got is not None:
        assert got.tzinfo is UTC


@pytest.mark.parametrize(("value", "want"), CASES, ids=[repr(c[0]) for c in CASES])
def test_event_time_of_a_payload_and_its_reason(value: Any, want: datetime | None) -> None:
    payload = json.dumps({"id": 1, EVENT_TIME_FIELD: value})
    got, problem = event_time(payload)
    assert got == want
    assert (problem is None) == (want is not None)  # an unusable time always says why
    assert event_time(payload.encode()) == (got, problem)


def test_the_reasons_name_the_problem() -> None:
    assert event_time('{"event_timestamp": 5}')[1] == "event_timestamp '5' is not a date"
    assert event_time('{"event_timestamp": "  "}')[1] == "event_timestamp '  ' is not a date"
    assert event_time('{"event_timestamp": "soon"}')[1] == "ValueError: Invalid isoformat string: 'soon'"
    assert event_time('{"event_timestamp": "0001-01-01T00:00:00+05:00"}')[1] == (
        "OverflowError: date value out of range"
    )
    problem = event_time(b"\xff\xfe not utf-8")[1]
    assert problem is not None and problem.startswith("UnicodeDecodeError")
    problem = event_time("not json")[1]
    assert problem is not None and problem.startswith("JSONDecodeError")


def test_no_time_at_all_is_not_a_problem() -> None:
    for payload in ('{"id": 1}', '{"event_timestamp": null}', "[1, 2]", '"text"', "5"):
        assert event_time(payload) == (None, None), payload


def test_payloads_orjson_refuses_are_read_as_json_loads_reads_them() -> None:
    for payload in (
        '{"x": NaN, "event_timestamp": "2023-11-01T10:20:30Z"}',
        '{"x": "\\ud800", "event_timestamp": "2023-11-01T10:20:30Z"}',
        '{"x": Infinity, "event_timestamp": "2023-11-01T10:20:30Z"}',
    ):
        assert event_time(payload) == (T, None), payload
        assert event_timestamp_text(payload.encode()) == "2023-11-01T10:20:30Z"
        assert replay_time(payload.encode(), COMMITTED) == T.timestamp()


def test_event_timestamp_text_is_the_text_as_sent() -> None:
    assert event_timestamp_text(b'{"event_timestamp": " 2023-11-01T10:20:30Z "}') == " 2023-11-01T10:20:30Z "
    assert event_timestamp_text(b'{"event_timestamp": 5}') is None
    assert event_timestamp_text(b'{"id": 1}') is None
    assert event_timestamp_text(b"not json") is None
    assert event_timestamp_text(b"\xff") is None


def test_replay_time_falls_back_to_the_commit_time() -> None:
    assert replay_time(b'{"event_timestamp": "2023-11-01T10:20:30Z"}', COMMITTED) == T.timestamp()
    for payload in (b'{"id": 1}', b'{"event_timestamp": "soon"}', b"not json", b"[1]"):
        assert replay_time(payload, COMMITTED) == COMMITTED, payload


# --- every consumer agrees ------------------------------------------------------------------------


def server(fmt: str, **kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | {"format": fmt, "hostname": "h"} | kw)


def header_time(payload: str) -> str:
    """The TIMESTAMP an rfc5424 server with `timestamp: "event"` sends `payload` with."""
    return parse(
        Formatter(server("rfc5424", timestamp="event")).format(payload, "audit", NOW), "rfc5424"
    ).timestamp


def cef_rt(payload: str, stream: str) -> int | None:
    text = Formatter(server("cef")).format(payload, stream, NOW).decode()
    found = re.search(r"\|rt=(-?\d+) ", text)
    return None if found is None else int(found.group(1))


def leef_dev_time(payload: str, stream: str) -> str | None:
    text = Formatter(server("leef")).format(payload, stream, NOW).decode()
    found = re.search(r"\|devTime=([^\t]+)\t", text)
    return None if found is None else found.group(1)


@pytest.mark.parametrize(("value", "want"), CASES, ids=[repr(c[0]) for c in CASES])
@pytest.mark.parametrize("stream", ["detections", "audit", "health"])
def test_header_cef_leef_and_replay_agree(value: Any, want: datetime | None, stream: str) -> None:
    """One input, one answer: the event's time everywhere, or the fallback everywhere (the send time in
    the header, no `rt` / `devTime`, the commit time for a replay)."""
    payload = json.dumps({"id": 1, "category": "x", "severity": 3, EVENT_TIME_FIELD: value})
    if want is None:
        assert header_time(payload) == "2026-01-02T03:04:05Z"
        assert cef_rt(payload, stream) is None
        assert leef_dev_time(payload, stream) is None
        assert replay_time(payload.encode(), COMMITTED) == COMMITTED
        return
    millis = (want - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert header_time(payload) == want.isoformat().replace("+00:00", "Z")
    assert cef_rt(payload, stream) == millis
    assert leef_dev_time(payload, stream) == f"{want:%Y-%m-%dT%H:%M:%S}.{want.microsecond // 1000:03d}+0000"
    assert replay_time(payload.encode(), COMMITTED) == want.timestamp()
