"""siemconn.queue.store, the durable queue: pages, derived checkpoints, dedupe, fan-out, backpressure,
housekeeping, reconfiguring in place. Its data directory is tests/unit/queue/test_datadir.py, the status
view tests/unit/queue/test_status.py."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from support.examples import examples
from support.metricvalue import metric_value
from support.queues import drain, timed_events

from siemconn.errors import QueueCorruptError, QueueError, QueueLockedError
from siemconn.events.batch import Batch
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue, read_status

MB = 1024 * 1024


def events(ids: range | list[int], key: str = "audit", pad: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "key": key, "msg": "caf\u00e9 " + "x" * pad} for i in ids]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_roundtrip_payload_shape_and_streams(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        evs = [{"id": 1, "b": [1, 2], "s": "\u00e9\u4e2d"}, {"id": 2, "nested": {"k": None}}]
        assert await q.commit_page("entity_scoring.host", evs, 3) == 2
        batch = await q.read_batch("a", 10)
        assert batch is not None
        assert [e.payload for e in batch.events] == [json.dumps(e) for e in evs]
        assert batch.events[0].payload.isascii() and ", " in batch.events[0].payload
        assert {e.stream for e in batch.events} == {"entity_scoring"}
        assert [e.event_id for e in batch.events] == [1, 2]
        with pytest.raises(dataclasses_frozen_error()):
            batch.events[0].payload = "x"  # type: ignore[misc]  # the write a frozen dataclass refuses
    finally:
        await q.close()


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


async def test_read_does_not_advance_and_ack_does(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        await q.commit_page("audit", events(range(1, 8)), 8)
        await q.commit_page("detections", events(range(1, 4), "detections"), 4)
        first = await q.read_batch("a", 5)
        again = await q.read_batch("a", 5)
        assert first == again and isinstance(first, Batch) and len(first) == 5
        await q.ack(first)
        rest = await q.read_batch("a", 100)
        assert rest is not None
        # spans the page boundary, in commit order
        assert [(e.stream, e.event_id) for e in rest.events] == [("audit", 6), ("audit", 7)] + [
            ("detections", i) for i in (1, 2, 3)
        ]
        await q.ack(rest)
        assert await q.read_batch("a", 100) is None
        assert await q.depth("a") == 0
        with pytest.raises(QueueError):
            await q.read_batch("nope", 10)
    finally:
        await q.close()


async def test_dedupe_on_refetch_of_overlapping_page(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.commit_page("audit", events(range(1, 11)), 11) == 10
        # the same page fetched again after a crash, overlapping, plus an event without an id
        overlap = events(range(8, 16)) + [{"msg": "no id"}, {"id": "7", "msg": "string id is kept"}]
        assert await q.commit_page("audit", overlap, 16) == 7
        # ids are per key: the same ids on another key are not duplicates
        assert await q.commit_page("detections", events(range(1, 4), "detections"), 4) == 3
    finally:
        await q.close()
    # the high-water mark survives a restart
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.commit_page("audit", events(range(12, 18)), 18) == 2
        got = await drain(q, "a")
        audit_ids = [e.event_id for e in got if e.stream == "audit"]
        assert audit_ids == list(range(1, 16)) + [None, None, 16, 17]
        assert [e.event_id for e in got if e.stream == "detections"] == [1, 2, 3]
    finally:
        await q.close()


async def test_checkpoint_never_moves_backwards(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.checkpoint("audit") is None
        await q.commit_page("audit", events([1]), 100)
        await q.commit_page("audit", events([2]), 50)
        assert await q.checkpoint("audit") == 100
        await q.commit_page("audit", [], 40)
        assert await q.checkpoint("audit") == 100
        await drain(q, "a")
        await q.housekeeping()  # pages folded into the side table
    finally:
        await q.close()
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.checkpoint("audit") == 100
        await q.commit_page("audit", events([3]), 60)
        assert await q.checkpoints() == {"audit": 100}
    finally:
        await q.close()


async def test_empty_page_records_checkpoint_durably(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.commit_page("detections", [], 1234) == 0
        assert await q.checkpoint("detections") == 1234
        assert await q.depth("a") == 0
    finally:
        await q.close()
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.checkpoints() == {"detections": 1234}
        assert await q.read_batch("a", 10) is None
    finally:
        await q.close()


async def test_fan_out_down_destination_keeps_backlog(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["up", "down"], housekeeping_every=1)
    try:
        for p in range(10):
            await q.commit_page("audit", events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
            got = await drain(q, "up", 7)
            assert len(got) == 10
        assert await q.depth("up") == 0
        assert await q.depth("down") == 100
        assert await q.oldest_age("up") is None
        age = await q.oldest_age("down")
        assert age is not None and age >= 0
    finally:
        await q.close()
    q = await DurableQueue.open(data_dir, ["up", "down"])
    try:
        assert await q.depth("down") == 100
        got = await drain(q, "down", 33)
        assert [e.event_id for e in got] == list(range(1, 101))
    finally:
        await q.close()


async def test_added_destination_starts_now_and_removed_one_is_dropped_with_warning(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        await q.commit_page("audit", events(range(1, 6)), 6)
    finally:
        await q.close()
    with capture_logs() as logs:
        q = await DurableQueue.open(data_dir, ["a", "new"])
    try:
        assert await q.depth("a") == 5
        assert await q.depth("new") == 0
        added = [e for e in logs if e["event"] == "queue_destination_added"]
        assert added and added[0]["destination"] == "new"
        await q.commit_page("audit", events(range(6, 9)), 9)
        assert [e.event_id for e in await drain(q, "new")] == [6, 7, 8]
    finally:
        await q.close()
    with capture_logs() as logs:
        q = await DurableQueue.open(data_dir, ["new"])
    try:
        removed = [e for e in logs if e["event"] == "queue_destination_removed"]
        assert len(removed) == 1
        assert removed[0]["destination"] == "a" and removed[0]["undelivered_events_dropped"] == 8
        assert removed[0]["log_level"] == "warning"
        with pytest.raises(QueueError):
            await q.depth("a")
        # nothing holds the old pages any more: housekeeping reclaims them
        await q.housekeeping()
        assert read_status(data_dir).destinations[0].depth == 0
    finally:
        await q.close()


async def test_cap_pauses_pulling_without_dropping_and_logs_once(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["fast", "slow"], max_events=10)
    try:
        assert await q.can_pull() == (True, "")
        await q.commit_page("audit", events(range(1, 11)), 11)
        await drain(q, "fast")
        with capture_logs() as logs:
            results = [await q.can_pull() for _ in range(3)]
        assert all(not ok for ok, _ in results)
        assert "slow" in results[0][1] and "10" in results[0][1]
        assert [e["event"] for e in logs] == ["queue_pull_paused"]
        # backpressure, never loss: a page committed anyway is still stored
        assert await q.commit_page("audit", events(range(11, 13)), 13) == 2
        assert await q.depth("slow") == 12
        b = await q.read_batch("slow", 5)
        assert b is not None
        await q.ack(b)
        with capture_logs() as logs:
            assert await q.can_pull() == (True, "")
            assert await q.can_pull() == (True, "")
        assert [e["event"] for e in logs] == ["queue_pull_resumed"]
        assert [e.event_id for e in await drain(q, "slow")] == list(range(6, 13))
    finally:
        await q.close()


async def test_disk_floor_pauses_and_resumes(data_dir: Path) -> None:
    free = {"bytes": 10 * 1024 * MB}
    q = await DurableQueue.open(data_dir, ["a"], min_free_disk_mb=256, disk_free=lambda p: free["bytes"])
    try:
        assert (await q.can_pull())[0]
        free["bytes"] = 100 * MB
        ok, reason = await q.can_pull()
        assert not ok and "disk" in reason and "256" in reason
        free["bytes"] = 300 * MB
        assert await q.can_pull() == (True, "")
    finally:
        await q.close()


async def test_wait_for_data_wakes_on_commit(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        waiter = asyncio.create_task(q.wait_for_data("a", timeout=60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await q.commit_page("audit", events([1]), 2)
        await asyncio.wait_for(waiter, 10)  # woke well before its 60 s timeout
        assert await q.depth("a") == 1
        await q.wait_for_data("a", timeout=60)  # data pending: returns at once
        await drain(q, "a")
        await q.wait_for_data("a", timeout=0.01)  # nothing: returns on timeout
    finally:
        await q.close()


async def test_housekeeping_deletes_acked_pages_and_file_stays_bounded(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a", "b"], housekeeping_every=4)
    db = data_dir / "queue.db"
    try:
        for r in range(150):
            first = r * 100 + 1
            await q.commit_page("audit", events(range(first, first + 100), pad=1000), first + 100)
            for d in ("a", "b"):
                await drain(q, d, 60)
        on_disk = sum(f.stat().st_size for f in data_dir.iterdir() if f.name.startswith("queue.db"))
        assert on_disk < 8 * MB, on_disk  # 150 pages x ~100 KB = 15 MB were written
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT COUNT(*) FROM page_log").fetchone()[0]
        finally:
            conn.close()
        assert rows <= 4
        assert await q.checkpoint("audit") == 15001
        # the dedupe high-water mark was folded too: a deleted page re-fetched is still dropped
        await q.housekeeping()
        assert await q.commit_page("audit", events(range(14990, 15001)), 15001) == 0
    finally:
        await q.close()
    q = await DurableQueue.open(data_dir, ["a", "b"])
    try:
        assert await q.checkpoint("audit") == 15001
        assert await q.depth("a") == 0
        await q.commit_page("audit", events([15001]), 15002)
        assert await q.depth("b") == 1
    finally:
        await q.close()


async def test_corrupt_file_is_reported_never_reset(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    db = data_dir / "queue.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    with pytest.raises(QueueCorruptError) as err:
        await DurableQueue.open(data_dir, ["a"])
    assert str(db) in str(err.value) and "mv " in str(err.value)
    assert db.read_bytes() == garbage  # untouched
    with pytest.raises(QueueCorruptError):
        read_status(data_dir)


async def test_damaged_pages_in_a_real_queue_are_reported(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    for p in range(20):
        await q.commit_page("audit", events(range(p * 50 + 1, p * 50 + 51), pad=200), p * 50 + 51)
    await q.close()
    db = data_dir / "queue.db"
    raw = bytearray(db.read_bytes())
    page_size = 4096
    for off in range(page_size, len(raw), page_size):  # every page but the header page
        raw[off : off + 64] = b"\xff" * 64
    db.write_bytes(bytes(raw))
    with pytest.raises(QueueCorruptError) as err:
        q = await DurableQueue.open(data_dir, ["a"])
        try:
            await drain(q, "a")
        finally:
            await q.close()
    assert str(db) in str(err.value)


async def test_record_poll_and_closed_queue(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    await q.record_poll("audit", 1234.5)
    assert q.last_polls() == {"audit": 1234.5}
    await q.close()
    await q.close()  # idempotent
    with pytest.raises(QueueError):
        await q.commit_page("audit", events([1]), 2)
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert q.last_polls() == {"audit": 1234.5}
    finally:
        await q.close()


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(0, 2), st.integers(0, 9), st.integers(0, 4)),
        st.tuples(st.just("read_ack"), st.integers(0, 1), st.integers(1, 12)),
        st.tuples(st.just("read_only"), st.integers(0, 1), st.integers(1, 12)),
        st.tuples(st.just("housekeeping")),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


@settings(
    max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_model_based_commit_read_ack_housekeeping_reopen(tmp_path: Path, ops: list[tuple[Any, ...]]) -> None:
    """Any mix of commits (with overlap), reads, acks, housekeeping and restarts matches a simple model."""
    keys = ("audit", "detections", "entity_scoring.account")
    dests = ("d0", "d1")

    async def scenario(data_dir: Path) -> None:
        log: list[tuple[str, int]] = []  # every stored event, in commit order
        next_id = dict.fromkeys(keys, 1)
        checkpoint: dict[str, int] = {}
        cursor = dict.fromkeys(dests, 0)
        q = await DurableQueue.open(data_dir, list(dests), housekeeping_every=2)
        try:
            for op in ops:
                if op[0] == "commit":
                    key, n, overlap = keys[op[1]], op[2], op[3]
                    start = max(1, next_id[key] - overlap)
                    ids = list(range(start, next_id[key] + n))
                    kept = await q.commit_page(key, events(ids, key), next_id[key] + n)
                    assert kept == n
                    log.extend((key.partition(".")[0], i) for i in range(next_id[key], next_id[key] + n))
                    next_id[key] += n
                    checkpoint[key] = next_id[key]
                elif op[0] in ("read_ack", "read_only"):
                    dest, size = dests[op[1]], op[2]
                    b = await q.read_batch(dest, size)
                    want = log[cursor[dest] : cursor[dest] + size]
                    got = [] if b is None else [(e.stream, e.event_id) for e in b.events]
                    assert got == want
                    if b is not None and op[0] == "read_ack":
                        await q.ack(b)
                        cursor[dest] += len(b)
                elif op[0] == "housekeeping":
                    await q.housekeeping()
                else:
                    await q.close()
                    q = await DurableQueue.open(data_dir, list(dests), housekeeping_every=2)
                for d in dests:
                    assert await q.depth(d) == len(log) - cursor[d]
                assert await q.checkpoints() == checkpoint
        finally:
            await q.close()

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        asyncio.run(scenario(Path(d) / "data"))


async def test_first_start_that_died_before_marking_the_file_is_completed(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    conn = sqlite3.connect(data_dir / "queue.db")  # what persist-queue creates before we set application_id
    conn.execute(
        "CREATE TABLE page_log (_id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, timestamp FLOAT, "
        "key TEXT NOT NULL, first_seq INTEGER NOT NULL, n INTEGER NOT NULL, first_event_id INTEGER, "
        "last_event_id INTEGER, next_checkpoint INTEGER NOT NULL, ids TEXT NOT NULL)"
    )
    conn.commit()
    conn.close()
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.commit_page("audit", events([1]), 2) == 1
    finally:
        await q.close()
    assert read_status(data_dir).streams[0].checkpoint == 2


async def test_queue_sets_depth_and_checkpoint_gauges(tmp_path: Path) -> None:
    """queue_depth and checkpoint are set by the queue, at open, on every commit and on every ack."""
    metrics = Metrics()
    depth, checkpoint = metrics.queue_depth.labels, metrics.checkpoint.labels
    q = await DurableQueue.open(tmp_path / "q", ["a", "b"], metrics=metrics)
    try:
        assert metric_value(depth("a")) == 0 and metric_value(depth("b")) == 0
        await q.commit_page("audit", events(range(1, 11)), 11)
        assert metric_value(depth("a")) == 10 and metric_value(depth("b")) == 10
        assert metric_value(checkpoint("audit")) == 11
        batch = await q.read_batch("a", 4)
        assert batch is not None
        await q.ack(batch)
        assert metric_value(depth("a")) == 6 and metric_value(depth("b")) == 10
    finally:
        await q.close()
    reopened = Metrics()
    q = await DurableQueue.open(tmp_path / "q", ["a", "b"], metrics=reopened)
    try:
        assert metric_value(reopened.queue_depth.labels("a")) == 6
        assert metric_value(reopened.checkpoint.labels("audit")) == 11
    finally:
        await q.close()


async def test_open_cancelled_while_the_worker_opens_releases_the_lock(tmp_path: Path) -> None:
    """Cancelling open() mid-way leaves nothing open or locked: the next open of the same data_dir works."""
    data_dir = tmp_path / "q"
    task = asyncio.create_task(DurableQueue.open(data_dir, ["a"]))
    await asyncio.sleep(0)  # the worker thread is now opening the file
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    q = await DurableQueue.open(data_dir, ["a"])  # QueueLockedError if the lock had leaked
    try:
        assert await q.depth("a") == 0
    finally:
        await q.close()


async def test_reconfigure_in_place_keeps_the_lock_and_reconciles(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["a", "gone"])
    try:
        await q.commit_page("detections", timed_events(range(1, 6)), 6)
        await drain(q, "a")
        with capture_logs() as logs:
            await q.reconfigure(["a", "b"], routes={"b": ["audit"]})
        events_logged = {r["event"] for r in logs}
        assert {"queue_destination_removed", "queue_destination_added"} <= events_logged
        with pytest.raises(QueueLockedError):  # the lock was never released
            await DurableQueue.open(tmp_path, ["a"])
        await q.commit_page("detections", timed_events(range(6, 9)), 9)
        await q.commit_page("audit", timed_events(range(1, 3)), 3)
        assert [e.event_id for e in await drain(q, "a")] == [6, 7, 8, 1, 2]
        assert [e.event_id for e in await drain(q, "b")] == [1, 2]  # from now, its stream only
        assert await q.checkpoint("detections") == 9
    finally:
        await q.close()
    assert {d.destination for d in read_status(tmp_path).destinations} == {"a", "b"}
