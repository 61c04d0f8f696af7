"""A real full disk: data_dir on a 10 MB tmpfs, min_free_disk_mb: 1, a syslog outage (issue 20, item 13),
and the disk filled by another process (issue 25).

The queue fills the small file system, pulling pauses (as designed); the receiver comes back and the
backlog drains. Before: pulling never resumed, because the space to reclaim was inside the queue's own
files (delivered pages not yet deleted, a WAL that keeps its size) and nothing cleared them while pulling
was paused. Now the disk check runs housekeeping and a WAL truncation while paused, and pulling resumes
by itself: every event arrives.

Needs root (mount); skipped with a loud reason where mounting is not permitted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.e2e import Connector, start_fake
from support.reliability import by_input, delivered, figure, log_events, status_depths, tally, wait_for
from support.rsyslog import RsyslogReceiver
from support.smalldisk import MB, FreeSampler, fill, small_tmpfs

from siemconn.devtools.fake_rux import FakeRux

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"
PAUSED = "queue_pull_paused"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 10 MB tmpfs mounted for this test (unmounted afterwards)."""
    with small_tmpfs(tmp_path / "disk") as mnt:
        yield mnt


def test_full_disk_pauses_pulling_and_resumes_by_itself_after_the_backlog_drains(
    tmp_path: Path, small_disk: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(seed_detections=20_000)
    rsyslog.stop()  # the outage: the queue fills the disk while the receiver is down
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        schedule=EVERY_SECOND,
        data_dir=str(small_disk / "data"),
        min_free_disk_mb=1,
        page_size=200,
        max_backoff_seconds=1,
    )
    try:
        conn.start()
        conn.wait_log(PAUSED, timeout=90)
        paused = log_events(conn, PAUSED)[0]
        assert "free disk space" in paused["reason"], paused
        used_mb = (shutil.disk_usage(small_disk).total - shutil.disk_usage(small_disk).free) / 2**20
        rsyslog.start()  # the receiver is back: the backlog drains, then pulling must resume by itself
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 240, "all 20,000 events after the disk filled")
        assert conn.alive(), conn.output()[-3000:]
        assert log_events(conn, "queue_pull_resumed")
        reclaimed = log_events(conn, "queue_space_reclaimed")
        assert reclaimed, "pulling resumed without the queue reclaiming its own space?"
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    s = tally(rsyslog, fake, "tcp")
    figure(
        "full_disk_10mb",
        {
            **s,
            "used_mb_when_paused": round(used_mb, 1),
            "pauses": len(log_events(conn, PAUSED)),
            "reclaims": len(reclaimed),
        },
    )
    assert s["missing"] == 0, s
    assert s["duplicated"] <= 500, s  # at most one batch (batch_size 500) per receiver outage


# --- issue 25: the floor holds, and a disk filled by someone else never stops delivery ---------------

DISK_FULL_ERRORS = ("database or disk is full", "disk I/O error")


def _connector(tmp_path: Path, disk: Path, fake: FakeRux, servers: list[dict[str, object]]) -> Connector:
    return Connector(
        tmp_path / "c",
        fake.url,
        servers,
        schedule="*/2 * * * * *",
        data_dir=str(disk / "data"),
        min_free_disk_mb=1,
        page_size=1000,  # an API page of 1,000 detections is about 1.2 MB: larger than the floor
        max_backoff_seconds=1,
    )


def _bursts(fake: FakeRux, n: int, size: int, pause: float, conn: Connector) -> None:
    for _ in range(n):
        fake.append("detections", size)
        time.sleep(pause)
        assert conn.alive(), conn.output()[-3000:]


def _no_disk_errors(conn: Connector) -> None:
    text = conn.output()
    for needle in ("pull_stopped_queue_error", *DISK_FULL_ERRORS):
        assert needle not in text, f"{needle!r} in the log: " + text[text.find(needle) - 500 :][:1500]


def _wait_paused(conn: Connector) -> None:
    conn.wait_log(PAUSED, timeout=120)


def test_the_floor_holds_under_pages_larger_than_the_floor(
    tmp_path: Path, small_disk: Path, rsyslog: RsyslogReceiver
) -> None:
    """The issue's scenario: 12,000 detections in 10 bursts of 1,200 during a receiver outage. Before: the
    page that crossed the floor was written anyway, its WAL frames filled the disk, and acks failed for
    minutes after the receiver came back."""
    fake = start_fake()
    rsyslog.stop()
    conn = _connector(tmp_path, small_disk, fake, [rsyslog.server_entry("tcp1", "TCP")])
    try:
        with FreeSampler(small_disk) as sampler:
            conn.start()
            _bursts(fake, 10, 1200, 2.0, conn)
            _wait_paused(conn)
            rsyslog.start()
            wait_for(lambda: delivered(rsyslog, fake, "tcp"), 300, "all 12,000 detections")
        assert sampler.lowest >= 1 * MB, f"the floor did not hold: {sampler.lowest} bytes free at the lowest"
        _no_disk_errors(conn)
        assert not log_events(conn, "queue_disk_full")
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    s = tally(rsyslog, fake, "tcp")
    figure("floor_holds_10mb", {**s, "lowest_free_mb": round(sampler.lowest / MB, 2)})
    assert s["missing"] == 0, s
    assert s["duplicated"] <= 500, s


def _backlog_then_fill(
    tmp_path: Path, disk: Path, fake: FakeRux, servers: list[dict[str, object]], stop: Callable[[], None]
) -> Connector:
    """A backlog on disk for the stopped receiver(s) until pulling pauses, then a filler takes every free
    byte of the file system and keeps it."""
    stop()
    conn = _connector(tmp_path, disk, fake, servers)
    conn.start()
    _wait_paused(conn)
    fill(disk)
    time.sleep(3)  # a few pull checks and writer retries on the full disk
    assert conn.alive(), conn.output()[-3000:]
    return conn


def test_a_disk_filled_by_another_process_drains_and_pulling_resumes(
    tmp_path: Path, small_disk: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(seed_detections=6000)
    conn = _backlog_then_fill(tmp_path, small_disk, fake, [rsyslog.server_entry("tcp1", "TCP")], rsyslog.stop)
    try:
        paused_at = len(log_events(conn, PAUSED))
        fake.append("detections", 3000)  # only reachable once pulling resumes on the filled disk
        rsyslog.start()
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 300, "all 9,000 detections with the disk filled")
        assert len(log_events(conn, "queue_pull_resumed")) >= 1 and paused_at >= 1
        assert (small_disk / "filler").exists()
        assert conn.alive()
        # quiet while stuck: one line when the condition starts, one when it ends, not a line per retry
        for once in ("queue_ack_failed", "queue_disk_full", "queue_reclaim_failed"):
            assert len(log_events(conn, once)) <= 1, (once, log_events(conn, once))
        loud = [r for r in conn.log_records() if r.get("level") in ("warning", "error")]
        assert len(loud) < 30, [r.get("event") for r in loud]
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    s = tally(rsyslog, fake, "tcp")
    figure("disk_filled_by_another_process", s)
    assert s["missing"] == 0, s
    assert s["duplicated"] <= 500, s


def test_a_restart_on_a_completely_full_disk_drains_everything(
    tmp_path: Path, small_disk: Path, rsyslog: RsyslogReceiver
) -> None:
    fake = start_fake(seed_detections=6000)
    conn = _backlog_then_fill(tmp_path, small_disk, fake, [rsyslog.server_entry("tcp1", "TCP")], rsyslog.stop)
    try:
        assert conn.terminate() == 0
        fill(small_disk, "filler2")  # whatever the stop gave back is taken too
        rsyslog.start()
        conn.start()
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 300, "all 6,000 detections after the restart")
        assert conn.alive()
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    s = tally(rsyslog, fake, "tcp")
    figure("restart_on_full_disk", s)
    assert s["missing"] == 0, s
    assert s["duplicated"] <= 1000, s  # one batch per fault: the fill and the restart


def test_two_servers_on_a_full_disk_the_reachable_one_drains(
    tmp_path: Path, small_disk: Path, rsyslog_factory: Callable[..., RsyslogReceiver]
) -> None:
    up, down = rsyslog_factory(), rsyslog_factory()
    fake = start_fake(seed_detections=6000)

    def stop_both() -> None:
        up.stop()
        down.stop()

    servers = [up.server_entry("up", "TCP"), down.server_entry("down", "TCP")]
    conn = _backlog_then_fill(tmp_path, small_disk, fake, servers, stop_both)
    try:
        up.start()
        wait_for(
            lambda: by_input(up, "tcp") and status_depths(conn).get("up") == 0,
            300,
            "the reachable server drained its backlog",
        )
        assert status_depths(conn).get("down", 0) > 0, "the down server's backlog must stay"
        down.start()
        wait_for(lambda: delivered(up, fake, "tcp") and delivered(down, fake, "tcp"), 300, "both servers")
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    for rs in (up, down):
        s = tally(rs, fake, "tcp")
        assert s["missing"] == 0, s
        assert s["duplicated"] <= 1000, s
