"""siemconn.syslog.heartbeat, the in-band heartbeat (`heartbeat_seconds`): its config rule, its message in every
format (strict parsers and pycef), the figures it reports, and its schedule. The real-receiver tests are in
tests/e2e/test_heartbeat.py. (The container health-check file is tests/unit/ops/test_heartbeat.py's.)"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pycef
import pytest
from support import cefparse, leefparse, syslogparse

from siemconn import __version__
from siemconn.config import ServerConfig, load_configuration
from siemconn.errors import ConfigError
from siemconn.events.encoder import encode_event
from siemconn.events.rejected import Rejected
from siemconn.queue import DurableQueue
from siemconn.queue.quarantine import QUARANTINE_DDL, QuarantineTally, count_quarantined
from siemconn.syslog.format import Formatter
from siemconn.syslog.heartbeat import (
    HEARTBEAT_KEY,
    HEARTBEAT_SIGNATURE,
    HeartbeatFacts,
    HeartbeatSchedule,
    StreamLag,
    gather_facts,
    heartbeat_frame,
    heartbeat_message,
    heartbeat_wire,
    quarantine_figures,
    stream_lags,
)

NOW = datetime(2026, 12, 7, 14, 30, 5, 250000, tzinfo=UTC)
POLL = NOW.timestamp() - 42.0


def server(fmt: str = "legacy", **extra: Any) -> ServerConfig:
    return ServerConfig.model_validate(
        {
            "name": "siem1",
            "server_protocol": "TCP",
            "server_host": "127.0.0.1",
            "server_port": 514,
            "format": fmt,
            "heartbeat_seconds": 60,
            **extra,
        }
    )


def facts(**over: Any) -> HeartbeatFacts:
    base: dict[str, Any] = {
        "server": "siem1",
        "host": "collector-01",
        "time": NOW,
        "interval_seconds": 60,
        "streams": (
            StreamLag("detections", POLL, 42.0),
            StreamLag("audit", POLL + 30, 12.0),
            StreamLag("entity_scoring", None, None),
        ),
        "backlog": 1234,
        "oldest_undelivered_seconds": 87.5,
        "delivered_since_last": 5000,
        "quarantined": 3,
        "trimmed": 2,
    }
    return HeartbeatFacts(**(base | over))


EXPECTED_BODY = {
    "version": __version__,
    "host": "collector-01",
    "server": "siem1",
    "time": "2026-12-07T14:30:05Z",
    "interval_seconds": 60,
    "backlog": 1234,
    "oldest_undelivered_seconds": 87.5,
    "delivered_since_last": 5000,
    "quarantined": 3,
    "trimmed": 2,
    "max_lag_seconds": 42.0,
    "streams": {
        "detections": {"last_poll": "2026-12-07T14:29:23Z", "lag_seconds": 42.0},
        "audit": {"last_poll": "2026-12-07T14:29:53Z", "lag_seconds": 12.0},
        "entity_scoring": {"last_poll": None, "lag_seconds": None},
    },
}


# --- config --------------------------------------------------------------------------------------


def test_heartbeat_is_off_by_default() -> None:
    s = ServerConfig.model_validate(
        {"name": "a", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": 514}
    )
    assert s.heartbeat_seconds is None


@pytest.mark.parametrize("value", [0, -5, 86_401, "60", 1.5, True])
def test_a_bad_heartbeat_interval_names_field_value_and_fix(tmp_path: Path, value: object) -> None:
    doc = {
        "configuration": {
            "server": [
                {
                    "name": "s1",
                    "server_protocol": "TCP",
                    "server_host": "127.0.0.1",
                    "server_port": 514,
                    "heartbeat_seconds": value,
                }
            ],
            "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
            "retry_count": 2,
        }
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    assert info.value.problems == [
        f"configuration.server[0].heartbeat_seconds: {json.dumps(value)} is not a heartbeat interval; "
        "expected an integer 1-86400 (seconds), or leave it out (no heartbeat)"
    ]


# --- the message in every format -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["legacy", "rfc3164"])
def test_json_formats_carry_one_heartbeat_object_behind_the_events_header(fmt: str) -> None:
    f = Formatter(server(fmt), hostname="collector-01")
    msg = heartbeat_message(f, facts())
    header = f.constant_header("detections", NOW)
    assert header is not None and msg.startswith(header)  # the same syslog header as the server's events
    parsed = syslogparse.parse(msg, fmt)
    assert json.loads(parsed.payload) == {HEARTBEAT_KEY: EXPECTED_BODY}
    assert msg[len(header) :].decode() == json.dumps({HEARTBEAT_KEY: EXPECTED_BODY})


def test_rfc5424_heartbeat_has_its_own_msgid() -> None:
    f = Formatter(server("rfc5424", structured_data='[x@32473 a="b"]'), hostname="collector-01")
    parsed = syslogparse.parse(heartbeat_message(f, facts()), "rfc5424")
    assert (parsed.hostname, parsed.app_name, parsed.msgid) == ("collector-01", "siemconn", "heartbeat")
    assert parsed.structured_data == '[x@32473 a="b"]'
    assert parsed.timestamp == "2026-12-07T14:30:05.250000Z"
    assert json.loads(parsed.payload) == {HEARTBEAT_KEY: EXPECTED_BODY}


def test_default_legacy_heartbeat_bytes() -> None:
    msg = heartbeat_message(Formatter(server()), facts(streams=(), backlog=0, oldest_undelivered_seconds=0.0))
    assert msg.startswith(
        b'<14>2026-12-07T14:30:05Z VECTRA-SYSLOG-CONNECTOR: {"siemconn_heartbeat": {"version": '
    )
    assert b'"max_lag_seconds": null, "streams": {}}}' in msg


def test_cef_heartbeat_is_strict_cef_with_its_own_signature() -> None:
    f = Formatter(server("cef"), hostname="collector-01")
    msg = heartbeat_message(f, facts())
    syslog = cefparse.parse_syslog(msg)
    assert syslog.host == "collector-01"
    cef = syslog.cef
    assert (cef.vendor, cef.product, cef.device_version) == ("Vectra AI", "siemconn", __version__)
    assert (cef.signature, cef.name, cef.severity) == (HEARTBEAT_SIGNATURE, "siemconn heartbeat", 1)
    fields = cef.labelled()
    assert fields["rt"] == str(int(NOW.timestamp() * 1000))
    assert fields["dvchost"] == "collector-01"
    assert fields["server"] == "siem1"
    assert (fields["backlog"], fields["oldestUndeliveredSeconds"]) == ("1234", "87.5")
    assert (fields["deliveredSinceLast"], fields["quarantined"], fields["trimmed"]) == ("5000", "3", "2")
    assert (fields["intervalSeconds"], fields["maxLagSeconds"]) == ("60", "42.0")
    assert json.loads(fields["streams"]) == EXPECTED_BODY["streams"]
    assert ", " not in fields["streams"]  # compact: nothing a key-value parser splits at
    # a PyPI parser reads the same
    theirs = pycef.parse(msg.decode())
    assert theirs is not None
    assert (theirs["DeviceEventClassID"], theirs["DeviceProduct"]) == (HEARTBEAT_SIGNATURE, "siemconn")
    assert {k: cefparse.unescape_value(theirs[k]) for k in fields if k in theirs} == fields


def test_cef_heartbeat_leaves_out_the_lag_when_no_stream_was_polled() -> None:
    msg = heartbeat_message(Formatter(server("cef")), facts(streams=(StreamLag("audit", None, None),)))
    fields = cefparse.parse_syslog(msg).cef.labelled()
    assert "maxLagSeconds" not in fields
    assert json.loads(fields["streams"]) == {"audit": {"last_poll": None, "lag_seconds": None}}


@pytest.mark.parametrize("delimiter", ["\t", "^"])
def test_leef_heartbeat_is_strict_leef_with_its_own_event_id(delimiter: str) -> None:
    f = Formatter(server("leef", leef_delimiter=delimiter), hostname="collector-01")
    syslog = leefparse.parse_syslog(heartbeat_message(f, facts()))
    leef = syslog.leef
    assert (leef.vendor, leef.product, leef.product_version) == ("Vectra AI", "siemconn", __version__)
    assert (leef.event_id, leef.delimiter) == (HEARTBEAT_SIGNATURE, delimiter)
    a = leef.attributes
    assert a["devTime"] == "2026-12-07T14:30:05.250+0000"
    assert (a["host"], a["server"], a["backlog"], a["oldestUndeliveredSeconds"]) == (
        "collector-01",
        "siem1",
        "1234",
        "87.5",
    )
    assert (a["deliveredSinceLast"], a["quarantined"], a["trimmed"], a["maxLagSeconds"]) == (
        "5000",
        "3",
        "2",
        "42.0",
    )
    assert json.loads(a["streams"]) == EXPECTED_BODY["streams"]


@pytest.mark.parametrize(
    ("protocol", "framing", "expected"),
    [
        ("TCP", "lf", b"MSG\n"),
        ("TLS", "octet-counting", b"3 MSG"),
        ("RELP", "lf", b"MSG\n"),
        ("UDP", "lf", b"MSG"),
    ],
)
def test_heartbeat_is_framed_like_the_servers_events(protocol: str, framing: str, expected: bytes) -> None:
    s = server(server_protocol=protocol, framing=framing)
    assert heartbeat_frame(s, b"MSG") == expected


def test_an_event_of_the_same_server_is_unchanged_by_heartbeat_seconds() -> None:
    ev = {"id": 1098, "detection_id": 1098, "event_timestamp": "2023-11-02T00:18:01Z"}
    for fmt in ("legacy", "rfc5424", "rfc3164", "cef", "leef"):
        on = Formatter(server(fmt), hostname="h").format(encode_event(ev), "detections", NOW)
        off = Formatter(server(fmt, heartbeat_seconds=None), hostname="h").format(
            encode_event(ev), "detections", NOW
        )
        assert on == off


# --- the figures ---------------------------------------------------------------------------------


def test_stream_lags_list_every_enabled_stream_of_the_server() -> None:
    polls = {"detections": 100.0, "audit": 150.0, "entity_scoring.host": 90.0, "lockdown": 10.0}
    lags = stream_lags(polls, ("detections", "entity_scoring", "health"), now=160.25)
    assert lags == (
        StreamLag("detections", 100.0, 60.2),
        StreamLag("entity_scoring.host", 90.0, 70.2),
        StreamLag("health", None, None),
    )


def test_quarantine_figures_split_the_servers_oversize_rows_from_the_rest() -> None:
    s = server(streams=["detections", "audit"])
    counts: dict[tuple[str, str | None, str], int] = {
        ("detections", None, "invalid_json"): 4,  # source side, a stream it takes
        ("entity_scoring.host", None, "invalid_json"): 7,  # a stream it does not take
        ("audit", "siem1", "format_error"): 2,  # its own formatter
        ("audit", "other", "format_error"): 5,  # another server's
        ("detections", "siem1", "oversize"): 3,  # its own size budget
        ("detections", "other", "oversize"): 9,
    }
    assert quarantine_figures(counts, s) == (6, 3)


# --- the schedule --------------------------------------------------------------------------------


def test_schedule_is_due_at_once_then_every_interval_and_never_catches_up() -> None:
    beat = HeartbeatSchedule(10)
    assert beat.due(1000.0) and beat.wait(1000.0, 5.0) == 0.0
    beat.delivered = 7
    beat.sent(1000.0, reported=7)
    assert beat.delivered == 0
    assert not beat.due(1009.9)
    assert beat.wait(1004.0, 5.0) == 5.0 and beat.wait(1008.0, 5.0) == 2.0
    assert beat.due(1010.0)
    # an outage of 100 intervals: one heartbeat is due, and the next one an interval after it
    assert beat.due(2000.0)
    beat.sent(2000.0, reported=0)
    assert not beat.due(2009.0) and beat.due(2010.0)


def test_events_delivered_during_a_heartbeat_write_are_reported_next_time() -> None:
    beat = HeartbeatSchedule(10)
    beat.delivered = 5
    reported = beat.delivered
    beat.delivered += 3  # delivered while the heartbeat reporting 5 was being written
    beat.sent(0.0, reported)
    assert beat.delivered == 3


def test_quarantine_tally_counts_every_row_then_only_new_ones() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(QUARANTINE_DDL)

    def add(key: str, destination: str | None, reason: str, n: int) -> None:
        conn.executemany(
            "INSERT INTO quarantine (at, key, destination, event_id, reason, detail, raw) "
            "VALUES (1.0, ?, ?, NULL, ?, '', x'00')",
            [(key, destination, reason)] * n,
        )

    add("detections", None, "invalid_json", 3)
    add("audit", "siem1", "format_error", 2)
    tally = QuarantineTally()
    assert tally.refresh(conn) == count_quarantined(conn)
    add("detections", "siem1", "oversize", 4)
    add("detections", None, "invalid_json", 1)
    assert (
        tally.refresh(conn)
        == count_quarantined(conn)
        == {
            ("audit", "siem1", "format_error"): 2,
            ("detections", None, "invalid_json"): 4,
            ("detections", "siem1", "oversize"): 4,
        }
    )
    # a later refresh reads only rows above the highest rowid it counted: a row removed behind its back
    # (siemconn never deletes one) is still counted, which shows that it did not count the table again
    conn.execute("DELETE FROM quarantine WHERE rowid = 1")
    assert tally.refresh(conn)[("detections", None, "invalid_json")] == 4
    assert tally.refresh(conn) is not tally.refresh(conn)  # a copy each time


async def test_gather_facts_reads_a_real_queue(tmp_path: Path) -> None:
    """Backlog, oldest age, stream polls and both counts come from the durable queue itself."""
    s = server(streams=["detections", "audit"], heartbeat_seconds=30)
    q = await DurableQueue.open(
        tmp_path, ["siem1", "other"], min_free_disk_mb=0, routes={"siem1": ["detections", "audit"]}
    )
    try:
        bad = Rejected(b"{nope", "invalid_json", "not JSON", None)
        await q.commit_page("detections", [{"id": i} for i in range(1, 6)], 6, [bad])
        await q.commit_page("entity_scoring.host", [{"id": 1}], 2, [bad, bad])  # a stream it does not take
        await q.quarantine("siem1", "audit", [Rejected(b"{}", "oversize", "9000 bytes", "7")])
        await q.quarantine("other", "audit", [Rejected(b"{}", "oversize", "9000 bytes", "8")])
        at = time.time()
        await q.record_poll("detections", at - 20.0)
        now = datetime.fromtimestamp(at, UTC)
        facts = await gather_facts(s, q, q, ("detections", "audit"), now, delivered=11)
        assert (facts.server, facts.interval_seconds, facts.time, facts.delivered_since_last) == (
            "siem1",
            30,
            now,
            11,
        )
        assert facts.backlog == 5 and facts.oldest_undelivered_seconds >= 0.0
        assert (facts.quarantined, facts.trimmed) == (1, 1)
        assert facts.streams == (StreamLag("detections", at - 20.0, 20.0), StreamLag("audit", None, None))
        assert facts.max_lag_seconds == 20.0
        # without a source (a queue that keeps no polls or quarantine): unpolled, zero counts
        bare = await gather_facts(s, q, None, ("detections",), now, delivered=0)
        assert (bare.backlog, bare.quarantined, bare.trimmed) == (5, 0, 0)
        assert bare.streams == (StreamLag("detections", None, None),)
    finally:
        await q.close()


@pytest.mark.parametrize("fmt", ["legacy", "rfc5424", "rfc3164", "cef", "leef"])
def test_a_heartbeat_fits_max_message_size_by_leaving_out_the_stream_detail(fmt: str) -> None:
    whole = heartbeat_wire(Formatter(server(fmt, server_protocol="UDP"), hostname="h"), facts())
    assert whole is not None and len(whole) > 480
    f = Formatter(server(fmt, server_protocol="UDP", max_message_size=480), hostname="h")
    wire = heartbeat_wire(f, facts())
    assert wire is not None and len(wire) <= 480
    if fmt == "cef":
        fields = cefparse.parse_syslog(wire).cef.labelled()
        assert "streams" not in fields and fields["maxLagSeconds"] == "42.0"
    elif fmt == "leef":
        attrs = leefparse.parse_syslog(wire).leef.attributes
        assert "streams" not in attrs and attrs["maxLagSeconds"] == "42.0"
    else:
        body = json.loads(syslogparse.parse(wire, fmt).payload)[HEARTBEAT_KEY]
        assert body == {k: v for k, v in EXPECTED_BODY.items() if k != "streams"}
    # TCP counts the framing too; a heartbeat that cannot fit at all is not sent (never cut)
    tcp = Formatter(server(fmt, framing="octet-counting", max_message_size=480), hostname="h")
    framed = heartbeat_wire(tcp, facts())
    assert framed is not None and len(framed) <= 480
    assert heartbeat_wire(tcp, facts(host="x" * 400)) is None


def test_the_heartbeats_trimmed_count_reads_the_oversize_rows_the_writer_stores() -> None:
    """The heartbeat counts the quarantine rows the oversize policy writes: one reason, two names."""
    from siemconn.events.rejected import OVERSIZE
    from siemconn.syslog.heartbeat import OVERSIZE_REASON

    assert OVERSIZE_REASON == OVERSIZE
