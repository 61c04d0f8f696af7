"""siemconn.queue.replay and its feed (siemconn.queue.feed): a replay sends exactly its window, to its server
only, beside the live cursors, and a running replay holds its pages and resumes after a restart."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from support.queues import T0, drain, timed_events, utc_time

from siemconn.queue import DurableQueue, read_status
from siemconn.queue.feed import ReplayFeed


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
            evs = [dict(e, event_timestamp=utc_time(T0 + (e["id"] - 1) * 60)) for e in timed_events(ids)]
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
        await q.commit_page("detections", timed_events(range(first, first + 10)), first + 10)
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
