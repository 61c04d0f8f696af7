"""Upgrade and downgrade with real builds: the previous release built from its commit, the current one from
the work tree, each installed as a wheel in its own venv, run as `python -m siemconn run` on the same
data directory, against the fake tenant and real rsyslogd.

The previous release is the last commit with queue schema 1 (before the quarantine): its queue holds a
backlog for a server that is down during its run. The current build migrates the file in place and
delivers every event exactly once to each server; going back to the old build then refuses the newer
file and leaves it byte for byte as it was. The upgrade check itself is shown to fail when the new build
is given an older schema it cannot migrate (planted in a copy of the old queue), and that stays part of
the test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.builds import Builder, commit_available
from support.e2e import Connector, expected_payloads, received, start_fake, wait_until
from support.rsyslog import RsyslogReceiver

from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port

pytestmark = pytest.mark.e2e

# the last commit whose queue file is schema version 1 (the next one adds the quarantine, schema 2)
PREVIOUS_RELEASE = "3077e097b62e6adf5c8b0352231b362170bdd1f5"
EVERY = "*/2 * * * * *"


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"old": python of the previous release's venv, "new": python of the current build's venv}."""
    if not commit_available(PREVIOUS_RELEASE):
        pytest.skip(f"this clone's history lacks {PREVIOUS_RELEASE} (a shallow clone): git fetch --unshallow")
    b = Builder(tmp_path_factory.mktemp("builds"))
    return {
        "old": b.install(b.wheel(PREVIOUS_RELEASE, PREVIOUS_RELEASE), "old"),
        "new": b.install(b.wheel(None, "work-tree"), "new"),
    }


class BuildConnector(Connector):
    """A Connector whose service runs with a given build's interpreter instead of this one."""

    python: Path

    def start(self, preexec_fn: Callable[[], object] | None = None) -> BuildConnector:
        self.runs += 1
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "siemconn", "run", "--config", str(self.config_path)],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def with_build(self, python: Path) -> BuildConnector:
        self.python = python
        return self


def queue_files(data: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data.glob("queue.db*"))}


def everything_delivered(fake: FakeRux, receivers: list[RsyslogReceiver]) -> bool:
    want = set(expected_payloads(fake))
    return all(want <= set(received(rs.raw_lines())[0]) for rs in receivers)


def upgrade(conn: BuildConnector, new: Path, fake: FakeRux, receivers: list[RsyslogReceiver]) -> None:
    """The upgrade check: the new build starts on the old data directory, migrates it, and delivers every
    event the tenant has (including those added while it runs) to every server. Raises AssertionError,
    with the build's output, when it does not (for example when it exits on a schema it cannot read)."""
    conn.with_build(new).start()
    try:

        def settled() -> bool:
            return everything_delivered(fake, receivers) or not conn.alive()

        wait_until(settled, 90, "the new build delivering the backlog")
        assert conn.alive() and everything_delivered(fake, receivers), conn.output()[-3000:]
        fake.append("detections", 10)
        wait_until(settled, 60, "the new build delivering new events")
        assert conn.alive() and everything_delivered(fake, receivers), conn.output()[-3000:]
        assert conn.terminate() == 0, conn.output()[-3000:]
    finally:
        conn.kill()


def dump(data: Path, scratch: Path) -> list[str]:
    """The SQL text of the queue's every table and row, read from a copy (reading may write -shm)."""
    shutil.copytree(data, scratch)
    db = sqlite3.connect(scratch / "queue.db")
    try:
        return [*db.iterdump(), f"user_version={db.execute('PRAGMA user_version').fetchone()[0]}"]
    finally:
        db.close()


def log_events(conn: Connector, name: str) -> list[dict[str, Any]]:
    return [r for r in conn.log_records() if r.get("event") == name]


def test_upgrade_from_the_previous_release_and_back(
    tmp_path: Path, builds: dict[str, Path], rsyslog_factory: Callable[..., RsyslogReceiver]
) -> None:
    fake = start_fake(seed_audit=15, seed_detections=120, seed_entity=30)
    live, late = rsyslog_factory(), rsyslog_factory()
    try:
        entry, late_entry = live.server_entry("live", "TCP"), late.server_entry("late", "TCP")
        closed = late_entry | {"server_port": free_port()}  # nothing listens there during the old run
        conn = BuildConnector(tmp_path / "c", fake.url, [entry, closed], schedule=EVERY, page_size=25)
        data = Path(conn.config["configuration"]["data_dir"])

        # 1. the previous release: everything reaches "live", "late" is down, its backlog stays queued
        conn.with_build(builds["old"]).start()
        try:
            wait_until(lambda: everything_delivered(fake, [live]), 90, "the old build delivering to live")
            fake.append("detections", 30)  # pulled while the old build runs
            wait_until(lambda: everything_delivered(fake, [live]), 60, "the old build's second pull")
            assert conn.terminate() == 0, conn.output()[-3000:]
        finally:
            conn.kill()
        assert not late.raw_lines()
        old_db = sqlite3.connect(data / "queue.db")
        assert old_db.execute("PRAGMA user_version").fetchone()[0] == 1
        old_db.close()
        fake.append("detections", 40)  # while no siemconn runs
        fake.append("audits", 5)
        conn.config["configuration"]["server"] = [entry, late_entry]
        conn.config_path.write_text(json.dumps(conn.config, indent=2))

        # 2. the check fails on an older schema the new build cannot migrate (planted in a copy)
        planted = BuildConnector(
            tmp_path / "planted", fake.url, [entry, late_entry], schedule=EVERY, page_size=25
        )
        planted_data = Path(planted.config["configuration"]["data_dir"])
        shutil.copytree(data, planted_data)
        db = sqlite3.connect(planted_data / "queue.db")
        db.execute("PRAGMA user_version=0")  # older than any siemconn wrote: no migration exists for it
        db.commit()
        db.close()
        before = queue_files(planted_data)
        with pytest.raises(AssertionError, match="schema version 0"):
            upgrade(planted, builds["new"], fake, [live, late])
        assert planted.proc is not None and planted.proc.returncode == 1
        assert queue_files(planted_data) == before  # refused before anything was written
        assert not late.raw_lines()

        # 3. the current build on the old data directory: migrated, and every event once to each server
        upgrade(conn, builds["new"], fake, [live, late])
        [migrated] = log_events(conn, "queue_schema_migrated")
        assert (migrated["from_version"], migrated["to_version"]) == (1, 2)
        expected = expected_payloads(fake)
        for rs in (live, late):
            counts, events = received(rs.raw_lines())
            assert set(counts) == set(expected) and max(counts.values()) == 1, rs.directory
            assert all(events[k] == expected[k] for k in expected)

        # 4. back to the previous release: it refuses the newer file and leaves its content untouched
        before, content = queue_files(data), dump(data, tmp_path / "dump-before")
        conn.with_build(builds["old"]).start()
        try:
            rc = conn.wait(timeout=60)
        finally:
            conn.kill()
        out = conn.output()
        assert rc == 1, out[-3000:]
        assert "schema version 2, this siemconn reads 1" in out, out[-3000:]
        # Every table, row and the schema version are as they were. The bytes may not be: that release
        # opens the file (persist-queue, WAL) before it checks the version; the current build refuses
        # before opening, byte for byte (step 2, and test_quarantine's refusal tests)
        assert dump(data, tmp_path / "dump-after") == content
        print(
            f"FACT upgrade: the previous release left queue.db byte-identical: {queue_files(data) == before}"
        )
        # and the current build takes it up again as it was: nothing pending, nothing re-sent
        time.sleep(0.5)
        conn.with_build(builds["new"]).start()
        try:
            conn.wait_log("siemconn_started", timeout=60)
            time.sleep(3)
            assert conn.terminate() == 0
        finally:
            conn.kill()
        for rs in (live, late):
            counts, _ = received(rs.raw_lines())
            assert max(counts.values()) == 1
    finally:
        fake.stop()
