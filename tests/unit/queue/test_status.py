"""siemconn.queue.status: the read-only view `siemconn status` reads: while another process holds the queue,
without a queue, and with a quarantine table."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support.queues import timed_events

from siemconn.commands.render import render_status
from siemconn.errors import QueueLockedError
from siemconn.events.rejected import INVALID_JSON, Rejected
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.quarantine import insert_rejected

WORKER = Path(__file__).resolve().parents[2] / "support" / "queue_worker.py"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


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


async def test_status_while_another_process_holds_the_queue(data_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(data_dir), "--pages", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        stdout = proc.stdout

        def wait_ready() -> bool:
            for line in stdout:  # log lines come first; READY once the queue holds data
                if line.strip() == "READY":
                    return True
            return False

        assert await asyncio.wait_for(asyncio.to_thread(wait_ready), 60), "holder exited before READY"
        report = read_status(data_dir)
        assert report.exists and report.running_pid == proc.pid
        streams = {s.key: s for s in report.streams}
        assert streams["detections"].checkpoint == 26
        assert streams["detections"].last_poll == 1_700_000_000.0
        dests = {d.destination: d for d in report.destinations}
        assert dests["alpha"].depth == 0 and dests["alpha"].oldest_age is None
        assert dests["beta"].depth == 15 and dests["beta"].oldest_age is not None
        text = render_status(report)
        assert "detections" in text and "26" in text and "beta" in text and "15" in text
        assert f"pid {proc.pid}" in text
        with pytest.raises(QueueLockedError) as err:
            await DurableQueue.open(data_dir, ["alpha", "beta"])
        assert str(proc.pid) in str(err.value)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    # the holder died (SIGKILL): the lock goes with it; status says not running
    assert read_status(data_dir).running_pid is None
    q = await DurableQueue.open(data_dir, ["alpha", "beta"])
    try:
        assert await q.depth("beta") == 15
    finally:
        await q.close()


def test_status_without_a_queue(tmp_path: Path) -> None:
    report = read_status(tmp_path / "nothing")
    assert not report.exists and report.streams == ()
    assert "no queue database yet" in render_status(report)
