"""siemconn.queue.housekeeping: retention (`retain_hours`) keeps delivered pages, and retained events count
against the `max_events` cap; 0 keeps the pages-deleted-once-delivered behaviour."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support.queues import drain, timed_events

from siemconn.queue import DurableQueue


async def test_retention_keeps_delivered_pages_and_zero_keeps_todays_behaviour(tmp_path: Path) -> None:
    for retain, kept in ((0.0, 0), (3600.0, 4)):
        d = tmp_path / f"r{retain:g}"
        q = await DurableQueue.open(d, ["a"], retain_seconds=retain, housekeeping_every=1)
        try:
            for p in range(4):
                await q.commit_page("detections", timed_events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
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
            await q.commit_page("detections", timed_events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
            await drain(q, "a")
        await q.housekeeping()
    finally:
        await q.close()
    conn = sqlite3.connect(tmp_path / "queue.db")
    retained = conn.execute("SELECT COALESCE(SUM(n), 0) FROM page_log").fetchone()[0]
    conn.close()
    assert 20 <= retained <= 30  # whole pages: at most max_events plus the page that crosses it
