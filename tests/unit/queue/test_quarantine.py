"""The quarantine and the per-event guards: salvaging a page, commit-time failures, the writer's format
guard, the event-time fallback, the schema migration, status and export (unit level; the end-to-end
tests are in tests/e2e/test_bad_input.py and tests/reliability/test_disk_full.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs
from support.configs import configuration
from support.metricvalue import metric_value
from support.poison_api import nested
from unit.syslog.test_pool import Sink, fast_sleep, srv

from siemconn.commands.render import render_status
from siemconn.errors import QueueCorruptError
from siemconn.events.eventtime import event_time
from siemconn.events.rejected import raw_json
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue, export_row, read_quarantine, read_status
from siemconn.queue.schema import SCHEMA_VERSION
from siemconn.rux.page import loads_page
from siemconn.rux.salvage import salvage_page
from siemconn.syslog.format import Formatter, parse_event_timestamp
from siemconn.syslog.memqueue import MemQueue
from siemconn.syslog.pool import WriterPool

# --- raw_json --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"id": 1, "s": 'caf\u00e9 \u4e2d\n"q"', "f": 1.5, "n": None, "t": True, "l": [1, [2, {}], []]},
        [],
        "x",
        2**70,
        {"nan": float("nan"), "inf": float("inf")},
    ],
)
def test_raw_json_is_json_dumps(value: Any) -> None:
    assert raw_json(value).decode() == json.dumps(value)


def test_raw_json_has_no_depth_limit() -> None:
    text = raw_json(nested(20_000)).decode()
    assert text.startswith('{"a": {"a": ') and text.endswith("{}" + "}" * 19_999)


# --- salvaging a page ------------------------------------------------------------------------------


def _body(*elements: bytes, nxt: bytes = b"9") -> bytes:
    return (
        b'{"events": [' + b", ".join(elements) + b'], "next_checkpoint": ' + nxt + b', "remaining_count": 0}'
    )


def test_salvage_keeps_good_events_and_the_raw_bytes_of_bad_ones() -> None:
    bad_utf8 = b'{"id": 2, "x": "\xff\xfe"}'
    too_deep = b'{"id": 4, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    body = _body(b'{"id": 1, "big": 123456789012345678901234}', bad_utf8, b"7", too_deep, b'{"id": 5}')
    with pytest.raises(ValueError):
        orjson.loads(body)
    s = salvage_page(body, loads_page)
    assert s is not None
    assert s.events == [{"id": 1, "big": 123456789012345678901234}, {"id": 5}]  # big ints kept exactly
    assert s.envelope["next_checkpoint"] == 9 and s.envelope["remaining_count"] == 0
    assert [(r.reason, r.event_id, r.raw) for r in s.rejects] == [
        ("invalid_utf8", "2", bad_utf8),
        ("not_an_object", None, b"7"),
        ("too_deep", None, too_deep),
    ]


def test_salvage_refuses_what_it_cannot_split() -> None:
    assert salvage_page(b"<html>502</html>", loads_page) is None
    assert salvage_page(b'{"next_checkpoint": 3, "remaining_count": 0}', loads_page) is None
    assert salvage_page(_body(b'{"id": 1}', b"", b'{"id": 2}'), loads_page) is None  # [a, , b]
    assert salvage_page(b'{"events": [{"id": 1}], "next_checkpoint": \xff}', loads_page) is None
    empty = salvage_page(_body(), loads_page)
    assert empty is not None and empty.events == [] and empty.rejects == []


def test_salvage_finds_the_top_level_events_only() -> None:
    body = b'{"meta": {"events": ["not these"]}, "events": [{"id": 1, "events": [2]}, "\xff"], "remaining_count": 0}'
    s = salvage_page(body, loads_page)
    assert (
        s is not None
        and s.events == [{"id": 1, "events": [2]}]
        and s.envelope["meta"]["events"] == ["not these"]
    )
    assert [r.raw for r in s.rejects] == [b'"\xff"']


# --- commit -----------------------------------------------------------------------------------------


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


async def test_a_page_without_a_checkpoint_is_queued_and_the_key_keeps_none(tmp_path: Path) -> None:
    data = tmp_path / "q"
    q = await DurableQueue.open(data, ["a"], housekeeping_every=1)
    try:
        assert await q.commit_page("audit", [{"id": "s-1"}, {"id": "s-2"}], None) == 2
        assert await q.checkpoint("audit") is None
        b = await q.read_batch("a", 10)
        assert b is not None and [e.event_id for e in b.events] == [None, None]
    finally:
        await q.close()
    q = await DurableQueue.open(data, ["a"], housekeeping_every=1)
    try:
        assert await q.checkpoint("audit") is None and await q.depth("a") == 2
        b = await q.read_batch("a", 10)
        assert b is not None
        await q.ack(b)  # housekeeping deletes the page: the "no checkpoint" must not become one
        assert await q.housekeeping() == 0
        assert await q.checkpoint("audit") is None
        await q.commit_page("audit", [{"id": 5}], 6)
        assert await q.checkpoint("audit") == 6
    finally:
        await q.close()
    assert {s.key: s.checkpoint for s in read_status(data).streams}.get("audit") == 6


# --- the writer's guard ---------------------------------------------------------------------------


class _Poisoned(Formatter):
    """A formatter that raises on any payload containing "poison" (any future format could)."""

    __slots__ = ()

    def format_bytes(self, payload: bytes, stream: str, now: datetime) -> bytes:
        if b"poison" in payload:
            raise ValueError("cannot format this one")
        return super().format_bytes(payload, stream, now)

    def format(self, payload: str, stream: str, now: datetime) -> bytes:
        if "poison" in payload:
            raise ValueError("cannot format this one")
        return super().format(payload, stream, now)

    def constant_header(self, stream: str, now: datetime) -> bytes | None:
        return None  # per-event formatting, like rfc5424 with event timestamps


async def _run_pool(q: Any, sink: Sink, tmp_path: Path, done: Any) -> None:
    s = srv("a", sink.port)
    pool = WriterPool([s], q, configuration([s], retry_count=-1, batch_size=10), tmp_path, sleep=fast_sleep)
    pool.writer("a").formatter = _Poisoned(s)
    run = asyncio.create_task(pool.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await done():
        assert loop.time() < deadline and not run.done(), "writer did not deliver"
        await asyncio.sleep(0.02)
    await pool.stop(5)
    await asyncio.wait_for(run, 5)


@pytest.mark.parametrize("framing", ["lf", "octet-counting"])
async def test_a_payload_the_formatter_raises_on_is_quarantined_and_the_rest_sent(
    tmp_path: Path, framing: str
) -> None:
    sink = await Sink().start()
    data = tmp_path / "q"
    q = await DurableQueue.open(data, ["a"])
    try:
        evs = [{"id": i, "msg": "poison" if i in (3, 14) else "ok"} for i in range(25)]
        await q.commit_page("detections", evs, 25)

        async def done() -> bool:
            return await q.depth("a") == 0

        await _run_pool(q, sink, tmp_path, done)
    finally:
        await q.close()
        sink.close()
    got = [
        json.loads(line[line.index(b"{") :])["id"] for line in bytes(sink.data).split(b"\n") if b"{" in line
    ]
    assert got == [i for i in range(25) if i not in (3, 14)]
    rows = list(read_quarantine(data))
    assert [(r.destination, r.key, r.event_id, r.reason) for r in rows] == [
        ("a", "detections", "3", "format_error"),
        ("a", "detections", "14", "format_error"),
    ]
    assert json.loads(rows[0].raw) == evs[3] and "ValueError" in rows[0].detail
    text = render_status(read_status(data))
    assert "detections -> a" in text and "format_error" in text


async def test_the_events_path_has_the_same_guard(tmp_path: Path) -> None:
    sink = await Sink().start()
    q = MemQueue(["a"])
    q.put("audit", [{"id": 1}, {"id": 2, "m": "poison"}, {"id": 3}])

    async def done() -> bool:
        return q.cursors["a"] == 3

    try:
        await _run_pool(q, sink, tmp_path, done)
    finally:
        sink.close()
    assert [(d, s, r.event_id, r.reason) for d, s, r in q.quarantined] == [
        ("a", "audit", "2", "format_error")
    ]
    assert bytes(sink.data).count(b"\n") == 2


# --- the event-time fallback ------------------------------------------------------------------------


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


# --- schema migration -------------------------------------------------------------------------------


async def _v1_queue(data: Path) -> None:
    """A queue file as siemconn 1 wrote it: this version's file minus the quarantine, user_version 1."""
    q = await DurableQueue.open(data, ["tcp1"])
    await q.commit_page("detections", [{"id": i} for i in range(1, 6)], 6)
    await q.close()
    conn = sqlite3.connect(data / "queue.db")
    conn.execute("DROP TABLE quarantine")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()


async def test_a_version_1_queue_is_migrated_and_keeps_its_backlog(tmp_path: Path) -> None:
    data = tmp_path / "q"
    await _v1_queue(data)
    assert read_status(data).destinations[0].depth == 5  # status reads a v1 file (no quarantine table)
    with capture_logs() as logs:
        q = await DurableQueue.open(data, ["tcp1"])
    try:
        assert await q.checkpoint("detections") == 6 and await q.depth("tcp1") == 5
        b = await q.read_batch("tcp1", 10)
        assert b is not None and [e.event_id for e in b.events] == [1, 2, 3, 4, 5]
    finally:
        await q.close()
    [m] = [r for r in logs if r["event"] == "queue_schema_migrated"]
    assert (m["from_version"], m["to_version"]) == (1, SCHEMA_VERSION)
    conn = sqlite3.connect(data / "queue.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    conn.close()


async def test_a_queue_of_a_newer_version_is_refused_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "q"
    q = await DurableQueue.open(data, ["a"])
    await q.commit_page("audit", [{"id": 1}], 2)
    await q.close()
    conn = sqlite3.connect(data / "queue.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = hashlib.sha256((data / "queue.db").read_bytes()).hexdigest()
    with pytest.raises(QueueCorruptError, match="written by a newer siemconn"):
        await DurableQueue.open(data, ["a"])
    assert hashlib.sha256((data / "queue.db").read_bytes()).hexdigest() == before


async def test_a_queue_older_than_any_migration_is_refused_unchanged(tmp_path: Path) -> None:
    """user_version 0 on a siemconn file: no migration reaches it, and it is refused before persist-queue
    opens it (which would create its tables in it), so the file keeps every byte."""
    data = tmp_path / "q"
    await _v1_queue(data)
    conn = sqlite3.connect(data / "queue.db")
    conn.execute("DROP TABLE cursors")  # what persist-queue or the side tables would put back
    conn.execute("PRAGMA user_version=0")
    conn.commit()
    conn.close()
    before = hashlib.sha256((data / "queue.db").read_bytes()).hexdigest()
    with pytest.raises(
        QueueCorruptError, match=f"schema version 0, this siemconn reads 1 to {SCHEMA_VERSION}"
    ):
        await DurableQueue.open(data, ["tcp1"])
    assert hashlib.sha256((data / "queue.db").read_bytes()).hexdigest() == before


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
