"""siemconn.queue.commit: one API page and its checkpoint in one commit; a page without a checkpoint keeps
none, an id beyond 64 bits is stored and sent exactly."""

from __future__ import annotations

import json
from pathlib import Path

from siemconn.queue import DurableQueue, read_status


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


async def test_an_id_beyond_64_bits_is_queued_and_sent_exactly(tmp_path: Path) -> None:
    """SQLite integers are 64-bit: such an id used to make every commit of the page fail (OverflowError),
    so the stream could never move on. Now the event is stored and sent unchanged; only the id-based
    dedupe skips it."""
    big = 2**64 + 1
    q = await DurableQueue.open(tmp_path / "q", ["a"])
    try:
        assert await q.commit_page("audit", [{"id": 5}, {"id": big}, {"id": None}, {"x": 1}], 10) == 4
        batch = await q.read_batch("a", 10)
        assert batch is not None
        assert [e.event_id for e in batch.events] == [5, None, None, None]
        assert json.loads(batch.events[1].payload)["id"] == big
        assert batch.events[1].payload == json.dumps({"id": big})
        assert await q.checkpoint("audit") == 10
    finally:
        await q.close()
