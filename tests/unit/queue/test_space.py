"""siemconn.queue.space: under the disk floor, retained pages are reclaimed oldest first, before pulling
pauses, and no destination's undelivered page is touched."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs
from support.queues import drain, timed_events

from siemconn.queue import DurableQueue


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
            await q.commit_page("detections", timed_events(range(p * 10 + 1, p * 10 + 11)), p * 10 + 11)
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
