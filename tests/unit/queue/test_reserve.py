"""The queue on a real, small, full file system (issue 25): the disk floor holds before a page is written,
and the disk reserve leaves room to ack, delete delivered pages and truncate the WAL, whatever filled the
disk, at run time and at a restart.

Each test mounts its own tmpfs (root); skipped loudly where mounting is not permitted. The service-level
scenarios (the real service, rsyslog, a filler process) are in test_disk_full.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.smalldisk import MB, fill, free, small_tmpfs

from siemconn.commands.render import render_status
from siemconn.errors import QueueDiskFullError, QueueNoRoomError
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.reserve import RESERVE_FILE, DiskReserve, reserve_size
from siemconn.queue.space import Limits, no_room, under_floor


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as mnt:
        yield mnt


def total(path: Path) -> int:
    return shutil.disk_usage(path).total


def page(first_id: int, n: int = 1000, size: int = 1150) -> list[dict[str, object]]:
    """A page of about n * size bytes, like an API page of 1,000 detections (about 1.2 MB)."""
    return [{"id": first_id + i, "detail": "x" * size} for i in range(n)]


async def commit_until_refused(q: DurableQueue, disk: Path, first: int = 1) -> int:
    """Commit 1.2 MB pages until the floor refuses one; the floor holds after every commit."""
    pages = 0
    while True:
        try:
            await q.commit_page("detections", page(first + pages * 1000), first + pages * 1000 + 999)
        except QueueNoRoomError as exc:
            assert "was not stored" in str(exc)
            return pages
        pages += 1
        assert free(disk) >= 1 * MB, f"the floor did not hold after page {pages}: {free(disk)} bytes free"


async def drain(q: DurableQueue, dest: str) -> int:
    acked = 0
    while (b := await q.read_batch(dest, 500)) is not None:
        await q.ack(b)
        acked += sum(len(s.payloads) for s in b.segments)
    return acked


async def test_the_floor_holds_before_the_page_is_written(disk: Path) -> None:
    """Before: the page that crossed the floor was written, and with its WAL frames filled the disk."""
    q = await DurableQueue.open(disk / "data", ["a"], min_free_disk_mb=1)
    try:
        assert (disk / "data" / RESERVE_FILE).stat().st_blocks * 512 >= reserve_size(total(disk))
        stored = await commit_until_refused(q, disk)
        assert stored >= 2
        assert free(disk) >= 1 * MB
        ok, reason = await q.can_pull()
        assert not ok and "min_free_disk_mb=1" in reason
        # the refused page left nothing behind: its checkpoint did not move
        assert await q.checkpoint("detections") == stored * 1000
        assert await drain(q, "a") == stored * 1000
        ok, _ = await q.can_pull()
        assert ok, "the drained queue did not give its space back"
    finally:
        await q.close()


async def test_a_disk_filled_by_another_process_still_acks_drains_and_resumes(disk: Path) -> None:
    metrics = Metrics()
    q = await DurableQueue.open(disk / "data", ["a"], min_free_disk_mb=1, metrics=metrics)
    try:
        stored = await commit_until_refused(q, disk)
        ok, reason = await q.can_pull()  # the paused queue truncates its WAL: writes need new space now
        assert not ok, reason
        filler = fill(disk)
        # every ack is recorded although the disk is full: the reserve is used for them
        assert await drain(q, "a") == stored * 1000
        assert await q.depth("a") == 0
        assert metrics.registry is not None
        assert metrics.registry.get_sample_value("siemconn_queue_disk_full") == 1
        assert (disk / "data" / RESERVE_FILE).stat().st_blocks * 512 < reserve_size(total(disk))
        assert "reserve RELEASED" in render_status(read_status(disk / "data"))
        # the queue hands its own space back and allocates the reserve again: pulling resumes although
        # the filler keeps every byte it took
        ok, reason = await q.can_pull()
        assert ok, reason
        assert metrics.registry.get_sample_value("siemconn_queue_disk_full") == 0
        assert "reserve whole (" in render_status(read_status(disk / "data"))
        assert (disk / "data" / RESERVE_FILE).stat().st_blocks * 512 >= reserve_size(total(disk))
        assert filler.exists()
        more = await commit_until_refused(q, disk, first=1_000_000)
        assert more >= 1
    finally:
        await q.close()


async def test_two_destinations_one_down_the_other_drains_on_a_full_disk(disk: Path) -> None:
    q = await DurableQueue.open(disk / "data", ["up", "down"], min_free_disk_mb=1)
    try:
        stored = await commit_until_refused(q, disk)
        fill(disk)
        assert await drain(q, "up") == stored * 1000
        assert await q.depth("down") == stored * 1000  # its backlog stays
        ok, _ = await q.can_pull()
        assert not ok  # nothing to give back while "down" still needs every page
        assert await drain(q, "down") == stored * 1000
    finally:
        await q.close()


async def test_a_restart_on_a_completely_full_disk_opens_and_drains(disk: Path) -> None:
    q = await DurableQueue.open(disk / "data", ["a"], min_free_disk_mb=1)
    stored = await commit_until_refused(q, disk)
    await q.close()
    fill(disk)
    q = await DurableQueue.open(disk / "data", ["a"], min_free_disk_mb=1)
    try:
        assert await drain(q, "a") == stored * 1000
        ok, reason = await q.can_pull()
        assert ok, reason
    finally:
        await q.close()


async def test_a_full_disk_without_a_reserve_names_the_cause_and_the_fix(disk: Path) -> None:
    q = await DurableQueue.open(disk / "data", ["a"], min_free_disk_mb=1)
    await commit_until_refused(q, disk)
    await q.close()
    os.unlink(disk / "data" / RESERVE_FILE)
    fill(disk)
    with pytest.raises(QueueDiskFullError) as err:
        await DurableQueue.open(disk / "data", ["a"], min_free_disk_mb=1)
    text = str(err.value)
    assert str(disk / "data") in text and "is full" in text and "df -h" in text and "Fix:" in text


def _full_disk_limits(data_dir: Path) -> Limits:
    """The queue's limits on a disk with nothing free, no floor and no retention."""
    return Limits(
        max_events=10,
        min_free=0,
        retain=0.0,
        data_dir=data_dir,
        disk_free=lambda _p: 0,
        reserve=DiskReserve(data_dir, lambda _p: 0),
    )


def test_pause_reasons_never_contradict_themselves(tmp_path: Path) -> None:
    """Before: "free disk space ... is 0.8 MB, under min_free_disk_mb=0" (issue 28), and "0.0 MB" figures
    for a queue whose WAL took more than the disk had free."""
    limits = _full_disk_limits(tmp_path)
    for text in (under_floor(limits, -3 * MB), no_room(limits, -2 * MB, "the next page (1.20 MB of events)")):
        assert "under min_free_disk_mb=0" not in text and "0.0 MB" not in text, text
        assert "MB short" in text or "MB more than" in text, text
    limits.min_free = 1 * MB
    assert "is 0.5 MB, under min_free_disk_mb=1" in under_floor(limits, MB // 2)


def test_the_reserve_is_2_mb_or_a_sixteenth_of_a_small_disk() -> None:
    """A 1 MB disk must still pull (a 2 MB reserve would never fit on it)."""
    assert reserve_size(100 * 2**30) == 2 * MB
    assert reserve_size(10 * MB) == 10 * MB // 16
    assert reserve_size(MB) == 64 * 1024


def test_the_wal_path_is_built_once(tmp_path: Path) -> None:
    """The WAL's path is read at every space check; built anew each time, its parts churned Python's
    table of interned strings until it doubled (issue 30, ops/heartbeat.py)."""
    limits = _full_disk_limits(tmp_path)
    assert limits.wal_path is limits.wal_path
    assert limits.wal_path == tmp_path / "queue.db-wal"
