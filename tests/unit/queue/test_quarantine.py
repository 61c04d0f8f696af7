"""siemconn.queue.quarantine: events set aside at commit (too deep to encode, a page of rejects only) with
their raw text, and the export of quarantined rows. The salvage of a page is tests/unit/rux/test_salvage.py,
the writer's format guard tests/unit/syslog/test_wire.py; end to end: tests/reliability/test_bad_events.py
and tests/reliability/test_disk_full.py."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support.metricvalue import metric_value
from support.poison_api import nested
from unit.syslog.test_pool import srv

from siemconn.events.eventtime import event_time
from siemconn.events.rejected import raw_json
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue, export_row, read_quarantine, read_status
from siemconn.syslog.format import Formatter, parse_event_timestamp

# --- commit-time failures -----------------------------------------------------------------------


async def test_an_event_too_deep_to_encode_is_quarantined_in_the_page_commit(tmp_path: Path) -> None:
    data = tmp_path / "q"
    deep = {"id": 2, "x": nested(1010)}
    metrics = Metrics()
    q = await DurableQueue.open(data, ["a"], metrics=metrics)
    try:
        with capture_logs() as logs:
            kept = await q.commit_page("detections", [{"id": 1}, deep, {"id": 3}], 4)
        assert kept == 2 and await q.checkpoint("detections") == 4
        b = await q.read_batch("a", 10)
        assert b is not None and [e.event_id for e in b.events] == [1, 3]
        [log] = [r for r in logs if r["event"] == "event_quarantined"]
        assert (log["reason"], log["event_id"], log["stream"]) == ("too_deep", "2", "detections")
        assert metric_value(metrics.events_quarantined.labels("detections", "too_deep")) == 1
        # the id counts for dedupe: a re-fetch of the same page is counted as duplicates, not re-quarantined
        with capture_logs() as logs:
            assert await q.commit_page("detections", [{"id": 1}, deep, {"id": 3}], 4) == 0
        [dup] = [r for r in logs if r["event"] == "duplicate_events_dropped"]
        assert (dup["count"], dup["first_id"], dup["last_id"], dup["high_water_mark"]) == (3, 1, 3, 3)
        assert metric_value(metrics.events_duplicate.labels("detections")) == 3
    finally:
        await q.close()
    rows = list(read_quarantine(data))
    assert len(rows) == 1 and rows[0].raw == raw_json(deep) and rows[0].destination is None


async def test_a_page_of_rejects_only_moves_the_checkpoint_with_them(tmp_path: Path) -> None:
    from siemconn.events.rejected import Rejected

    data = tmp_path / "q"
    q = await DurableQueue.open(data, ["a"])
    try:
        await q.commit_page("audit", [], 8, [Rejected(b"\xff", "invalid_utf8", "d", "7")])
        assert await q.checkpoint("audit") == 8 and await q.depth("a") == 0
    finally:
        await q.close()
    q = await DurableQueue.open(data, ["a"])
    try:
        assert await q.checkpoint("audit") == 8
        assert await q.commit_page("audit", [{"id": 7}], 9) == 0  # hwm 7 came with the quarantined event
    finally:
        await q.close()
    report = read_status(data)
    assert [(x.key, x.reason, x.count) for x in report.quarantined] == [("audit", "invalid_utf8", 1)]


# --- the event-time fallback (siemconn.syslog.format; moves to the format tests once format.py is split) --


@pytest.mark.parametrize(
    "raw", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:59", "soon", "2024-13-01"]
)
def test_an_unusable_event_time_falls_back_to_the_send_time_and_is_counted(raw: str) -> None:
    s = srv("a", 514, format="rfc5424", timestamp="event", hostname="h")
    f = Formatter(s)
    payload = json.dumps({"id": 1, "event_timestamp": raw})
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_event_timestamp(payload) is None
    assert event_time(payload)[1] is not None
    msg = f.format_bytes(payload.encode(), "detections", now)
    assert msg == b"<14>1 2026-01-02T03:04:05Z h siemconn - detections - " + payload.encode()
    assert f.format(payload, "detections", now) == msg
    assert f.fallbacks == 2 and f.fallback_detail
    assert event_time('{"id": 1}') == (None, None)  # no event time is not a fallback
    f.format('{"id": 1}', "detections", now)
    assert f.fallbacks == 2


def test_event_times_before_year_1000_keep_four_digits() -> None:
    assert parse_event_timestamp('{"event_timestamp": "0001-01-01T00:00:00Z"}') == "0001-01-01T00:00:00Z"
    assert parse_event_timestamp('{"event_timestamp": "0999-12-31T23:00:00.5-01:00"}') == (
        "1000-01-01T00:00:00.500000Z"
    )


# --- export ---------------------------------------------------------------------------------------


def test_export_row_keeps_bytes_that_are_not_utf8_exactly() -> None:
    from siemconn.queue import QuarantinedEvent

    row = export_row(QuarantinedEvent(1, 0.5, "audit", None, '"s-1"', "invalid_utf8", "d", b'{"a": "\xff"}'))
    assert row["id"] == "s-1" and row["time"] == "1970-01-01T00:00:00.500000Z"
    assert base64.b64decode(row["raw_base64"]) == b'{"a": "\xff"}' and "\ufffd" in row["raw"]
    ok = export_row(QuarantinedEvent(2, 0.0, "audit", "tcp1", "7", "format_error", "d", b'{"id": 7}'))
    assert (
        ok["raw"] == '{"id": 7}' and "raw_base64" not in ok and ok["id"] == 7 and ok["destination"] == "tcp1"
    )
