"""siemconn.queue.status: the read-only view `siemconn status` reads, here with a quarantine table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support.queues import timed_events

from siemconn.commands.render import render_status
from siemconn.events.rejected import INVALID_JSON, Rejected
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.quarantine import insert_rejected


async def test_status_reads_a_quarantine_table_when_there_is_one(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["all", "det"], routes={"det": ["detections"]})
    await q.commit_page("detections", timed_events(range(1, 3)), 3)
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
