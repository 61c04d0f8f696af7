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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.builds import Builder, commit_available
from support.e2e import Connector, expected_payloads, payload_of, received, start_fake, wait_until
from support.poison_api import PoisonApi, event
from support.rsyslog import RsyslogReceiver

from siemconn import __version__
from siemconn.devtools.fake_rux import FakeRux
from siemconn.devtools.harness import free_port

pytestmark = pytest.mark.e2e

# the last commit whose queue file is schema version 1 (the next one adds the quarantine, schema 2)
PREVIOUS_RELEASE = "3077e097b62e6adf5c8b0352231b362170bdd1f5"
EVERY = "*/2 * * * * *"


class Builds:
    """Each build made once per module run: its venv's python, by commit (None: the work tree)."""

    def __init__(self, work: Path) -> None:
        self.builder = Builder(work)
        self.made: dict[str | None, Path] = {}

    def python(self, commit: str | None) -> Path:
        if commit not in self.made:
            if commit is not None and not commit_available(commit):
                pytest.skip(f"this clone's history lacks {commit} (a shallow clone): git fetch --unshallow")
            wheel = self.builder.wheel(commit, commit or "work-tree")
            self.made[commit] = self.builder.install(wheel, commit or "work-tree")
        return self.made[commit]


@pytest.fixture(scope="module")
def all_builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return Builds(tmp_path_factory.mktemp("builds"))


@pytest.fixture
def builds(all_builds: Builds) -> dict[str, Path]:
    """{"old": python of the previous release's venv, "new": python of the current build's venv}."""
    return {"old": all_builds.python(PREVIOUS_RELEASE), "new": all_builds.python(None)}


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
    # each venv runs its own build: the current one is stamped with the commit it was given
    versions = {
        k: subprocess.run(
            [str(py), "-m", "siemconn", "--version"], capture_output=True, text=True
        ).stdout.strip()
        for k, py in builds.items()
    }
    assert versions == {"old": "siemconn 0.1.0", "new": f"siemconn {__version__} (commit work-tree)"}
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


# --- within schema 2: the quarantine, retained pages and replays carry over ---------------------------

# a schema-2 build with the quarantine, retain_hours and replay (the merge of the operator tools)
SCHEMA_2_RELEASE = "88e5762f9d5df8b1e66ee3b80a53f32f9fc360e6"
DEEP = 1010
BAD_UTF8 = b'{"id": 5, "detection_id": 7, "note": "caf\xe9 \xff\xfe end"}'
WINDOW = ("--since", "2024-08-13T00:00:00Z", "--until", "2024-08-14T00:00:00Z")


def _page(events: list[bytes], nxt: int, remaining: int = 0) -> bytes:
    return b'{"events": [%s], "next_checkpoint": %d, "remaining_count": %d}' % (
        b", ".join(events),
        nxt,
        remaining,
    )


def _ev(i: int) -> bytes:
    return json.dumps(event(i)).encode()


def ids(rs: RsyslogReceiver) -> Counter[Any]:
    return Counter(payload_of(line).get("id") for line in rs.raw_lines() if "{" in line)


def cli(python: Path, conn: Connector, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "siemconn", *args, "--config", str(conn.config_path)],
        cwd=conn.workdir,
        env=conn.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def replays(data: Path) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(f"file:{data / 'queue.db'}?mode=ro", uri=True)
    try:
        return [
            (str(d), str(s), int(n))
            for d, s, n in db.execute("SELECT destination, state, events FROM replays")
        ]
    finally:
        db.close()


def test_quarantine_retention_and_replays_survive_an_upgrade(
    tmp_path: Path, all_builds: Builds, rsyslog_factory: Callable[..., RsyslogReceiver]
) -> None:
    old, new = all_builds.python(SCHEMA_2_RELEASE), all_builds.python(None)
    head = json.dumps(event(2))[:-1].encode()
    deep_raw = head + b', "x": ' + b'{"a": ' * (DEEP - 1) + b"{}" + b"}" * (DEEP - 1) + b"}"
    api = PoisonApi(
        {
            "detections": {
                0: _page([_ev(1), deep_raw, _ev(3)], 4, remaining=3),
                4: _page([_ev(4), BAD_UTF8, _ev(6)], 7),
            }
        }
    ).start()
    live, late = rsyslog_factory(), rsyslog_factory()
    try:
        entry, late_entry = live.server_entry("live", "TCP"), late.server_entry("late", "TCP")
        closed = late_entry | {"server_port": free_port()}
        conn = BuildConnector(tmp_path / "c", api.url, [entry, closed], schedule=EVERY, retain_hours=24)
        data = Path(conn.config["configuration"]["data_dir"])

        # the schema-2 release: two events quarantined, the rest delivered to live and retained, a
        # replay of them to live done; late is down
        conn.with_build(old).start()
        try:
            wait_until(lambda: {1, 3, 4, 6} <= set(ids(live)), 60, "the old build delivering to live")
            r = cli(old, conn, "replay", "--server", "live", *WINDOW)
            assert r.returncode == 0, r.stdout + r.stderr
            wait_until(lambda: all(ids(live)[i] == 2 for i in (1, 3, 4, 6)), 60, "the old build's replay")
            wait_until(
                lambda: [s for _, s, _ in replays(data)] == ["done"], 30, "the replay recorded as done"
            )
            assert conn.terminate() == 0, conn.output()[-3000:]
        finally:
            conn.kill()
        assert not late.raw_lines()
        count = cli(old, conn, "quarantine", "count")
        assert count.returncode == 0, count.stderr
        old_replays = replays(data)

        # the current build on the same data directory, late now up
        api.pages["detections"][7] = _page([_ev(7), _ev(8)], 9)
        conn.config["configuration"]["server"] = [entry, late_entry]
        conn.config_path.write_text(json.dumps(conn.config, indent=2))
        conn.with_build(new).start()
        try:
            wait_until(
                lambda: {1, 3, 4, 6, 7, 8} <= set(ids(late)), 60, "the new build delivering late's backlog"
            )
            wait_until(lambda: {7, 8} <= set(ids(live)), 60, "the new build delivering new events to live")
            # the quarantine the old build wrote is read as it is
            now = cli(new, conn, "quarantine", "count")
            assert now.returncode == 0 and now.stdout == count.stdout, (count.stdout, now.stdout)
            assert "quarantined events: 2" in cli(new, conn, "status").stdout
            # the replay history is kept, and pages the old build retained can be replayed by the new one
            assert replays(data) == old_replays
            r = cli(new, conn, "replay", "--server", "late", *WINDOW)
            assert r.returncode == 0, r.stdout + r.stderr
            wait_until(
                lambda: all(ids(late)[i] == 2 for i in (1, 3, 4, 6, 7, 8)), 60, "the new build's replay"
            )
            assert conn.terminate() == 0, conn.output()[-3000:]
        finally:
            conn.kill()
        # once each to each server, plus exactly one replay each: nothing lost, nothing else repeated
        assert ids(live) == Counter({1: 2, 3: 2, 4: 2, 6: 2, 7: 1, 8: 1})
        assert ids(late) == Counter({1: 2, 3: 2, 4: 2, 6: 2, 7: 2, 8: 2})
        assert not log_events(conn, "queue_schema_migrated")  # same schema: nothing to migrate
    finally:
        api.stop()
