"""siemconn.queue.reader: a destination's next batch by an index range read keeps the exact bytes and order
across pages, whether a page is stored as text or blob; reading ahead never moves the cursor, and a reopened
queue reads from the durable one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from siemconn.errors import QueueError
from siemconn.queue import DurableQueue


def _events(first: int, n: int) -> list[dict[str, Any]]:
    return [{"id": i, "msg": f"event {i} ü"} for i in range(first, first + n)]


async def _read_all(q: DurableQueue, dest: str, size: int) -> list[int | None]:
    got: list[int | None] = []
    while (b := await q.read_batch(dest, size)) is not None:
        got.extend(e.event_id for e in b.events)
        assert [json.loads(e.payload)["id"] for e in b.events] == [e.event_id for e in b.events]
        await q.ack(b)
    return got


@pytest.mark.parametrize("size", [1, 7, 10, 25, 1000])
async def test_batches_across_pages_in_order(tmp_path: Path, size: int) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a", "b"])
    try:
        for p in range(5):
            await q.commit_page("audit", _events(p * 10 + 1, 10), p * 10 + 11)
        assert await _read_all(q, "a", size) == list(range(1, 51))
        # a page committed after a destination read everything is read too (the cache is not stale)
        await q.commit_page("audit", _events(51, 10), 61)
        assert await _read_all(q, "a", size) == list(range(51, 61))
        assert await _read_all(q, "b", 3) == list(range(1, 61))
    finally:
        await q.close()


async def test_pages_stored_as_text_or_blob_read_the_same(tmp_path: Path) -> None:
    """New pages are stored as TEXT (no encode copy); pages written as BLOBs by earlier versions still read."""
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        await q.commit_page("audit", _events(1, 10), 11)
        await q.commit_page("audit", _events(11, 10), 21)
        conn = sqlite3.connect(q.db_path, timeout=10, isolation_level=None)  # a second connection (WAL)
        assert [r[0] for r in conn.execute("SELECT typeof(data) FROM page_log ORDER BY first_seq")] == [
            "text",
            "text",
        ]
        conn.execute("UPDATE page_log SET data = CAST(data AS BLOB) WHERE first_seq = 0")
        assert [r[0] for r in conn.execute("SELECT typeof(data) FROM page_log ORDER BY first_seq")] == [
            "blob",
            "text",
        ]
        conn.close()
        batch = await q.read_batch("a", 20)
        assert batch is not None
        assert [json.loads(e.payload) for e in batch.events] == _events(1, 20)
        assert all(isinstance(p, bytes) for seg in batch.segments for p in seg.payloads)
    finally:
        await q.close()


async def test_read_ahead_does_not_move_the_cursor(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        await q.commit_page("audit", _events(1, 10), 11)
        first = await q.read_batch("a", 4)
        assert first is not None
        ahead = await q.read_batch_from("a", first.end_seq, 4)
        assert ahead is not None and [e.event_id for e in ahead.events] == [5, 6, 7, 8]
        assert await q.depth("a") == 10  # reading ahead moves nothing
        with pytest.raises(QueueError, match="skip"):
            await q.ack(ahead)  # the batch before it is not acked yet
        # the writer failed before acking `first`: it starts again from the cursor
        again = await q.read_batch("a", 4)
        assert again is not None and [e.event_id for e in again.events] == [1, 2, 3, 4]
        await q.ack(again)
        ahead = await q.read_batch_from("a", again.end_seq, 100)
        assert ahead is not None and [e.event_id for e in ahead.events] == [5, 6, 7, 8, 9, 10]
        await q.ack(ahead)
        assert await q.depth("a") == 0
        assert await q.read_batch_from("a", ahead.end_seq, 4) is None
        with pytest.raises(QueueError, match="before the cursor"):
            await q.read_batch_from("a", 0, 4)
    finally:
        await q.close()


async def test_reopen_reads_from_the_durable_cursor(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    await q.commit_page("audit", _events(1, 10), 11)
    b = await q.read_batch("a", 3)
    assert b is not None
    await q.ack(b)
    await q.read_batch_from("a", b.end_seq, 3)  # read ahead, never acked
    await q.close()
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        assert await _read_all(q, "a", 4) == list(range(4, 11))
    finally:
        await q.close()
