"""Reliability: backpressure (queue cap, disk floor); a corrupt, read-only or locked queue database."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.e2e import Connector, serve_fake
from support.reliability import (
    assert_no_secrets,
    db_path,
    delivered,
    figure,
    log_events,
    read_only,
    status_checkpoints,
    status_depths,
    tally,
    variants,
    wait_for,
)
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"
PAUSED = "queue_pull_paused"
RESUMED = "queue_pull_resumed"


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_detections=400, seed_audit=20)


def _api_requests(fake: FakeRux) -> int:
    return fake.count_requests("/events/")


def _holds(conn: Connector, fake: FakeRux, seconds: float) -> dict[str, int | None]:
    """Over `seconds` (several cron ticks): the checkpoints do not move and no event page is requested."""
    time.sleep(1.5)  # a pull that was already past its can_pull() check finishes first
    cps, reqs = status_checkpoints(conn), _api_requests(fake)
    time.sleep(seconds)
    assert status_checkpoints(conn) == cps
    assert _api_requests(fake) == reqs, "pulling did not pause"
    assert conn.alive()
    return cps


@pytest.mark.parametrize("hold", variants(3, 30))
def test_queue_cap_pauses_pulling_and_resumes(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, hold: float
) -> None:
    """The only server down, queue_max_events small: pulling stops at the cap, the checkpoint holds, nothing
    is dropped; once the server is back the backlog drains, pulling resumes and every event arrives once."""
    cap, page = 60, 20
    rsyslog.stop()
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        schedule=EVERY_SECOND,
        queue_max_events=cap,
        page_size=page,
        max_backoff_seconds=1,
    ).start()
    try:
        conn.wait_log(PAUSED, timeout=30)
        cps = _holds(conn, fake, hold)
        depth = status_depths(conn)["tcp1"]
        # a pull checks the cap before every page; the three streams pull concurrently
        assert cap <= depth <= cap + 4 * page, depth
        head = fake.heads()["detections"]
        assert head is not None
        assert cps["detections"] is not None and cps["detections"] < head
        fake.append("detections", 50)
        rsyslog.start()
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 60, "every event after the server came back")
        assert log_events(conn, RESUMED)
        assert conn.terminate() == 0
    finally:
        conn.kill()
    s = tally(rsyslog, fake, "tcp")
    paused = log_events(conn, PAUSED)
    figure(f"queue_cap[{hold}s]", {**s, "cap": cap, "depth_at_pause": depth})
    assert "queue_max_events=60" in paused[0]["reason"]
    assert s["missing"] == 0 and s["duplicated"] == 0, s
    assert_no_secrets(conn, fake)


@pytest.mark.parametrize("hold", variants(3, 30))
def test_disk_floor_pauses_pulling_and_resumes(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, hold: float
) -> None:
    """min_free_disk_mb above the real free space (the service sees "low disk" without the disk being
    filled): no page is fetched, the checkpoint holds; restarted with a normal floor it resumes and loses
    nothing."""
    conn = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    conn.start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        assert conn.terminate() == 0
        fake.append("detections", 100)
        free_mb = shutil.disk_usage(conn.workdir).free // (1024 * 1024)
        floor = free_mb + 1_000_000
        _set(conn, min_free_disk_mb=floor)
        conn.start()
        conn.wait_log(PAUSED, timeout=30)
        cps = _holds(conn, fake, hold)
        head = fake.heads()["detections"]
        assert head is not None
        assert cps["detections"] is not None and cps["detections"] < head
        assert conn.terminate() == 0
        _set(conn, min_free_disk_mb=0)
        conn.start()
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "every event with a normal floor")
        assert conn.terminate() == 0
    finally:
        conn.kill()
    s = tally(rsyslog, fake, "tcp")
    reason = log_events(conn, PAUSED)[0]["reason"]
    figure(f"disk_floor[{hold}s]", s)
    assert "free disk space" in reason and f"min_free_disk_mb={floor}" in reason
    assert s["missing"] == 0 and s["duplicated"] == 0, s


def _set(conn: Connector, **options: object) -> None:
    conn.config["configuration"].update(options)
    conn.config_path.write_text(json.dumps(conn.config, indent=2))


# --- the queue database: corrupt, read-only, locked ---------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_queue(tmp_path: Path, fake: FakeRux, rs: RsyslogReceiver) -> Connector:
    """A connector that ran once and left a real queue with delivered events behind."""
    conn = Connector(tmp_path / "c", fake.url, [rs.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    conn.start()
    try:
        wait_for(lambda: delivered(rs, fake, "tcp"), 40, "the seeded events")
        assert conn.terminate() == 0
    finally:
        conn.kill()
    return conn


def _refused(conn: Connector, expect: str) -> dict[str, object]:
    """Start the connector: exit 1 with one clear 'queue_open_failed' error containing `expect`."""
    conn.start()
    rc = conn.wait(timeout=30)
    errors = log_events(conn, "queue_open_failed")
    assert rc == 1, conn.output()[-2000:]
    assert errors and expect in errors[-1]["error"], errors
    return errors[-1]


def _corrupt_pages(db: Path) -> None:
    """Overwrite everything after the 100-byte SQLite header with garbage (the header still says SQLite)."""
    data = bytearray(db.read_bytes())
    data[100:] = bytes((i * 7 + 13) % 256 for i in range(len(data) - 100))
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "foreign-sqlite", "damaged-pages"])
def test_corrupt_database_is_refused_never_wiped(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver, damage: str
) -> None:
    conn = _make_queue(tmp_path, fake, rsyslog)
    db = db_path(conn)
    for extra in db.parent.glob(db.name + "-*"):  # -wal / -shm of the clean run
        extra.unlink()
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 100)
    elif damage == "foreign-sqlite":
        db.unlink()
        with sqlite3.connect(db) as other:
            other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
            other.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    else:
        _corrupt_pages(db)
    before = _sha(db)
    err = _refused(conn, str(db))
    assert _sha(db) == before, "the damaged file was modified"
    assert any(
        word in str(err["error"]) for word in ("not a siemconn queue", "corrupt", "damaged", "malformed")
    )
    figure(f"corrupt_db[{damage}]", {"exit_code": conn.exit_codes[-1], "error": err["error"]})


def test_read_only_database_is_refused_unchanged(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    conn = _make_queue(tmp_path, fake, rsyslog)
    db = db_path(conn)
    before = _sha(db)
    with read_only(db) as how:
        err = _refused(conn, str(db))
    assert _sha(db) == before
    figure("read_only_db", {"how": how, "exit_code": conn.exit_codes[-1], "error": err["error"]})


def test_second_instance_on_one_data_dir_is_refused(
    tmp_path: Path, fake: FakeRux, rsyslog: RsyslogReceiver
) -> None:
    first = Connector(tmp_path / "c", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND)
    first.start()
    try:
        first.wait_log("siemconn_started", timeout=30)
        second = Connector(
            tmp_path / "c2", fake.url, [rsyslog.server_entry("tcp1", "TCP")], schedule=EVERY_SECOND
        )
        second.config = first.config  # the same data_dir, log_dir and cert_dir
        second.config_path.write_text(json.dumps(first.config))
        err = _refused(second, "another siemconn process")
        assert first.alive()
        fake.append("detections", 30)
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the first instance keeps delivering")
        assert first.terminate() == 0
    finally:
        first.kill()
    s = tally(rsyslog, fake, "tcp")
    figure("second_instance", {"exit_code": second.exit_codes[-1], "error": err["error"], **s})
    assert s["missing"] == 0 and s["duplicated"] == 0
