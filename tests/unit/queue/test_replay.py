"""Operator tools, queue side: the delivery record `status` shows, the quarantine hook, retention (caps and
the disk floor), `start_at: retained`, reconfigure in place (reload) and replay windows."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from support.queues import drain

from siemconn.commands.render import render_status
from siemconn.errors import QueueLockedError
from siemconn.events.rejected import INVALID_JSON, Rejected
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.feed import ReplayFeed
from siemconn.queue.quarantine import insert_rejected
from siemconn.queue.status import report_dict

T0 = 1_780_000_000.0  # a fixed event time base (2026-05-28)


def ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def events(ids: range | list[int], base: float = T0, step: float = 60.0) -> list[dict[str, Any]]:
    """Events whose event_timestamp is base + (id - first) * step."""
    ids = list(ids)
    return [{"id": i, "event_timestamp": ts(base + (i - ids[0]) * step), "msg": "x"} for i in ids]


async def test_ack_records_delivery_and_state_for_status(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["tcp1", "udp1"])
    try:
        await q.commit_page("detections", events(range(1, 8)), 8)
        got = await drain(q, "tcp1", size=3)
        assert [e.event_id for e in got] == list(range(1, 8))
        await q.record_destination_state("tcp1", "up")
        await q.record_destination_state("udp1", "down", "connection refused")
        report = read_status(tmp_path)
    finally:
        await q.close()
    d = {x.destination: x for x in report.destinations}
    assert d["tcp1"].delivered == 7 and d["tcp1"].last_event_id == 7
    assert d["tcp1"].last_event_time == ts(T0 + 6 * 60)
    assert d["tcp1"].state == "up" and d["tcp1"].state_since is not None
    assert d["tcp1"].depth == 0
    assert d["udp1"].delivered == 0 and d["udp1"].depth == 7 and d["udp1"].oldest_age is not None
    assert d["udp1"].state == "down" and d["udp1"].reason == "connection refused"
    assert d["tcp1"].quarantined == 0  # the quarantine table exists (schema 2) and is empty
    text = render_status(report, protocols={"tcp1": "TCP", "udp1": "UDP"})
    assert "next_from" in text
    assert "server tcp1 (TCP): up since" in text
    assert "delivered: 7 events; last: id 7, event time " + ts(T0 + 6 * 60) in text
    assert "server udp1 (UDP): down since" in text and "connection refused" in text
    assert "sent: 0 events" in text  # UDP: sent, not delivered
    assert "backlog: 7 undelivered" in text
    data = json.loads(json.dumps(report_dict(report)))
    assert {x["destination"]: x["delivered"] for x in data["destinations"]} == {"tcp1": 7, "udp1": 0}


async def test_status_reads_a_quarantine_table_when_there_is_one(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["all", "det"], routes={"det": ["detections"]})
    await q.commit_page("detections", events(range(1, 3)), 3)
    await q.close()
    conn = sqlite3.connect(tmp_path / "queue.db", isolation_level=None)
    for key, raw in (("detections", b"x"), ("audit", b"y"), ("entity_scoring.host", b"z")):
        insert_rejected(conn, key, [Rejected(raw, INVALID_JSON, "not JSON")], 1.0)
    conn.close()
    report = read_status(tmp_path)
    assert report.quarantine == {"detections": 1, "audit": 1, "entity_scoring.host": 1}
    assert report.quarantined_total == 3
    d = {x.destination: x for x in report.destinations}
    assert d["all"].quarantined == 3 and d["det"].quarantined == 1
    assert "quarantined: 1" in render_status(report)


async def test_retention_keeps_delivered_pages_and_zero_keeps_todays_behaviour(tmp_path: Path) -> None:
    for retain, kept in ((0.0, 0), (3600.0, 4)):
        d = tmp_path / f"r{retain:g}"
        q = await DurableQueue.open(d, ["a"], retain_seconds=retain, housekeeping_every=1)
        try:
            for p in range(4):
                await q.commit_page("detections", events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
            await drain(q, "a")
            await q.housekeeping()
            assert await q.depth("a") == 0
        finally:
            await q.close()
        conn = sqlite3.connect(d / "queue.db")
        assert conn.execute("SELECT COUNT(*) FROM page_log").fetchone()[0] == kept
        conn.close()


async def test_retained_pages_count_against_the_cap(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a"], retain_seconds=3600.0, max_events=25, housekeeping_every=1)
    try:
        for p in range(6):
            await q.commit_page("detections", events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
            await drain(q, "a")
        await q.housekeeping()
    finally:
        await q.close()
    conn = sqlite3.connect(tmp_path / "queue.db")
    retained = conn.execute("SELECT COALESCE(SUM(n), 0) FROM page_log").fetchone()[0]
    conn.close()
    assert 20 <= retained <= 30  # whole pages: at most max_events plus the page that crosses it


async def test_retention_yields_to_the_disk_floor_oldest_first(tmp_path: Path) -> None:
    free = {"bytes": 10**12}
    q = await DurableQueue.open(
        tmp_path,
        ["a", "b"],
        retain_seconds=3600.0,
        min_free_disk_mb=100,
        disk_free=lambda _p: free["bytes"],
    )
    try:
        for p in range(6):
            await q.commit_page("detections", events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
        await drain(q, "a")
        for _ in range(3):  # b has taken the first 3 pages only
            b = await q.read_batch("b", 10)
            assert b is not None
            await q.ack(b)
        assert (await q.can_pull())[0]
        free["bytes"] = 0  # the disk is full
        with capture_logs() as logs:
            ok, reason = await q.can_pull()
        assert not ok and "free disk" in reason  # still under the floor after reclaiming what it could
        reclaimed = [r for r in logs if r["event"] == "queue_retention_reclaimed"]
        assert reclaimed and reclaimed[0]["pages"] == 3
        # b's undelivered pages were never touched
        assert await q.depth("b") == 30
        assert [e.event_id for e in await drain(q, "b")] == list(range(31, 61))
    finally:
        await q.close()


async def test_a_new_server_can_start_with_the_retained_pages(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a"], retain_seconds=3600.0)
    await q.commit_page("detections", events(range(1, 11)), 11)
    await q.commit_page("audit", events(range(1, 6)), 6)
    await drain(q, "a")
    await q.close()
    q = await DurableQueue.open(tmp_path, ["a", "old", "new"], retain_seconds=3600.0, start_retained=["old"])
    try:
        assert await q.depth("new") == 0  # default: from now
        assert [e.event_id for e in await drain(q, "old")] == [*range(1, 11), *range(1, 6)]
    finally:
        await q.close()


async def test_reconfigure_in_place_keeps_the_lock_and_reconciles(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a", "gone"])
    try:
        await q.commit_page("detections", events(range(1, 6)), 6)
        await drain(q, "a")
        with capture_logs() as logs:
            await q.reconfigure(["a", "b"], routes={"b": ["audit"]})
        events_logged = {r["event"] for r in logs}
        assert {"queue_destination_removed", "queue_destination_added"} <= events_logged
        with pytest.raises(QueueLockedError):  # the lock was never released
            await DurableQueue.open(tmp_path, ["a"])
        await q.commit_page("detections", events(range(6, 9)), 9)
        await q.commit_page("audit", events(range(1, 3)), 3)
        assert [e.event_id for e in await drain(q, "a")] == [6, 7, 8, 1, 2]
        assert [e.event_id for e in await drain(q, "b")] == [1, 2]  # from now, its stream only
        assert await q.checkpoint("detections") == 9
    finally:
        await q.close()
    assert {d.destination for d in read_status(tmp_path).destinations} == {"a", "b"}


def _request(db: Path, dest: str, since: float, until: float, stream: str | None = None) -> int:
    conn = sqlite3.connect(db, isolation_level=None)
    cur = conn.execute(
        "INSERT INTO replays (destination, since, until, stream, requested_at) VALUES (?, ?, ?, ?, ?)",
        (dest, since, until, stream, time.time()),
    )
    conn.close()
    return int(cur.lastrowid or 0)


async def _run_feed(q: DurableQueue, size: int = 4) -> list[tuple[str, int | None]]:
    (req,) = await q.pending_replays()
    req = await q.start_replay(req)
    feed = ReplayFeed(q, req)
    got: list[tuple[str, int | None]] = []
    while (b := await feed.read_batch(req.destination, size)) is not None:
        got.extend((e.stream, e.event_id) for e in b.events)
        await feed.ack(b)
    assert feed.done.is_set()
    await q.finish_replay(req.id, "done", f"{feed.events} events sent")
    return got


async def test_replay_sends_exactly_the_window_and_only_to_its_server(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a", "b"], retain_seconds=10 * 86400.0)
    try:
        # 30 detections and 30 audits, one a minute from T0, in pages of 7
        for first in range(1, 31, 7):
            ids = range(first, min(first + 7, 31))
            evs = [dict(e, event_timestamp=ts(T0 + (e["id"] - 1) * 60)) for e in events(ids)]
            await q.commit_page("detections", evs, ids[-1] + 1)
            await q.commit_page("audit", evs, ids[-1] + 1)
        await drain(q, "a")
        await drain(q, "b")
        since, until = T0 + 5 * 60, T0 + 17 * 60  # ids 6..17 (until exclusive)
        _request(tmp_path / "queue.db", "a", since, until, "detections")
        got = await _run_feed(q)
        assert got == [("detections", i) for i in range(6, 18)]
        # every stream it takes, a window at the edges of pages
        _request(tmp_path / "queue.db", "a", T0 + 6 * 60, T0 + 8 * 60)
        got = await _run_feed(q, size=1)
        assert sorted(got) == sorted([("detections", 7), ("detections", 8), ("audit", 7), ("audit", 8)])
        # the live cursors did not move back: nothing new for a or b
        assert await q.depth("a") == 0 and await q.depth("b") == 0
        assert await q.read_batch("b", 100) is None
    finally:
        await q.close()
    replays = read_status(tmp_path).replays
    assert [(r.state, r.events) for r in replays] == [("done", 12), ("done", 4)]


async def test_a_running_replay_holds_its_pages_and_resumes_after_a_restart(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a"], retain_seconds=3600.0)
    for first in range(1, 41, 10):
        await q.commit_page("detections", events(range(first, first + 10)), first + 10)
    await drain(q, "a")
    _request(tmp_path / "queue.db", "a", T0 - 3600, T0 + 86400)
    (req,) = await q.pending_replays()
    req = await q.start_replay(req)
    feed = ReplayFeed(q, req)
    b = await feed.read_batch("a", 15)
    assert b is not None
    first_part = [e.event_id for e in b.events]
    await feed.ack(b)
    await q.close()  # the service stops mid-replay
    q = await DurableQueue.open(tmp_path, ["a"], retain_seconds=0.0)  # even with retention now off
    try:
        (req,) = await q.pending_replays()
        assert req.state == "running"
        req = await q.start_replay(req)
        feed = ReplayFeed(q, req)
        rest: list[int | None] = []
        while (b := await feed.read_batch("a", 100)) is not None:
            rest.extend(e.event_id for e in b.events)
            await feed.ack(b)
        assert first_part + rest == list(range(1, 41))  # no loss, no duplicate across the restart
    finally:
        await q.close()
