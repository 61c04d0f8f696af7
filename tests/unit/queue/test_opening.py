"""siemconn.queue.opening: what opening a queue file does, a new destination starting at the retained pages
(`start_at: retained`), and the schema: a version 1 file migrated with its backlog, a newer or an
unreachable version refused with the file unchanged."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support.queues import drain, timed_events

from siemconn.errors import QueueCorruptError
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.schema import SCHEMA_VERSION


async def test_a_new_server_can_start_with_the_retained_pages(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a"], retain_seconds=3600.0)
    await q.commit_page("detections", timed_events(range(1, 11)), 11)
    await q.commit_page("audit", timed_events(range(1, 6)), 6)
    await drain(q, "a")
    await q.close()
    q = await DurableQueue.open(tmp_path, ["a", "old", "new"], retain_seconds=3600.0, start_retained=["old"])
    try:
        assert await q.depth("new") == 0  # default: from now
        assert [e.event_id for e in await drain(q, "old")] == [*range(1, 11), *range(1, 6)]
    finally:
        await q.close()


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
