"""Read-only view of the durable queue for `siemconn status`.

`read_status(data_dir)` opens the SQLite file with a `mode=ro` URI, so it works while the service runs
(WAL mode lets readers run beside the one writer) and never takes the data_dir lock. It reads everything
inside one read transaction, so the figures are one consistent snapshot.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from siemconn.queue.errors import classify_sqlite_error, corrupt_error
from siemconn.queue.quarantine import QUARANTINE_TABLE, QuarantinedEvent, count_quarantined, iter_quarantined
from siemconn.queue.routing import Routes, load_routes, next_taken_page, taken_events, taken_keys
from siemconn.queue.schema import APPLICATION_ID, DB_FILE, LOCK_FILE, NO_CHECKPOINT, PAGE_TABLE, stored_head

__all__ = [
    "DestinationStatus",
    "QuarantineCount",
    "StatusReport",
    "StreamStatus",
    "open_read_only",
    "read_quarantine",
    "read_status",
    "render_status",
]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One stream key: its committed checkpoint and the time of its last successful poll."""

    key: str
    checkpoint: int | None
    last_poll: float | None  # unix time of the last successful poll


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    """One destination: undelivered events and the age of the oldest one."""

    destination: str
    depth: int  # undelivered events (of the streams it takes)
    oldest_age: float | None  # seconds since the oldest undelivered event was committed
    streams: tuple[str, ...] | None = None  # the streams it takes; None: every stream


@dataclass(frozen=True, slots=True)
class QuarantineCount:
    """Quarantined events of one stream key for one reason (destination set: that destination's
    formatter refused them; None: they could not be stored)."""

    key: str
    destination: str | None
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A consistent snapshot of one queue file, as `siemconn status` prints it."""

    data_dir: Path
    database: Path
    exists: bool
    running_pid: int | None  # pid of the live process holding the queue, if any
    streams: tuple[StreamStatus, ...]
    destinations: tuple[DestinationStatus, ...]
    generated_at: float
    quarantined: tuple[QuarantineCount, ...] = ()

    @property
    def quarantined_total(self) -> int:
        return sum(q.count for q in self.quarantined)


def _running_pid(data_dir: Path) -> int | None:
    """The pid written in the lock file, if that process is alive. Never takes the lock."""
    try:
        text = (data_dir / LOCK_FILE).read_text(encoding="ascii").strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def open_read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection to a siemconn queue file (never takes the lock; safe while running)."""
    try:
        conn = sqlite3.connect(
            f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise classify_sqlite_error(exc, db) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.Error as exc:
        conn.close()
        raise classify_sqlite_error(exc, db) from exc
    if app_id != APPLICATION_ID:
        conn.close()
        raise corrupt_error(db, f"application_id is {app_id:#x}, expected {APPLICATION_ID:#x}")
    return conn


def read_quarantine(data_dir: Path) -> Iterator[QuarantinedEvent]:
    """Every quarantined event of the queue in data_dir, oldest first (read-only, safe while running)."""
    db = Path(data_dir) / DB_FILE
    if not db.exists():
        return
    conn = open_read_only(db)
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (QUARANTINE_TABLE,)
        ).fetchone():
            return
        try:
            conn.execute("BEGIN")
            yield from iter_quarantined(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise classify_sqlite_error(exc, db) from exc
    finally:
        conn.close()


def read_status(data_dir: Path, *, now: float | None = None) -> StatusReport:
    """Per key checkpoint and last poll, per destination depth and oldest age; safe while running."""
    data_dir = Path(data_dir)
    db = data_dir / DB_FILE
    now = time.time() if now is None else now
    pid = _running_pid(data_dir)
    if not db.exists():
        return StatusReport(data_dir, db, False, pid, (), (), now)
    conn = open_read_only(db)
    try:
        try:
            conn.execute("BEGIN")
            cps: dict[str, int] = {}
            for key, cp in conn.execute(
                "SELECT key, checkpoint FROM checkpoints WHERE checkpoint IS NOT NULL"
            ):
                cps[key] = int(cp)
            for key, cp in conn.execute(
                f"SELECT key, MAX(NULLIF(next_checkpoint, ?)) FROM {PAGE_TABLE} GROUP BY key",
                (NO_CHECKPOINT,),
            ):
                if cp is not None:
                    cps[key] = max(int(cp), cps.get(key, int(cp)))
            polls = {k: float(v) for k, v in conn.execute("SELECT key, at FROM polls")}
            head = stored_head(conn)
            routes: Routes = load_routes(conn) if _has_table(conn, "routes") else {}
            keys = [str(k) for (k,) in conn.execute(f"SELECT DISTINCT key FROM {PAGE_TABLE}")]
            dests: list[DestinationStatus] = []
            for dest, seq in conn.execute(
                "SELECT destination, seq FROM cursors ORDER BY destination"
            ).fetchall():
                taken = routes.get(dest)
                pos = int(seq)
                if taken is None:
                    depth = max(0, head - pos)
                else:
                    depth = taken_events(conn, pos, taken_keys(keys, taken))
                    nxt = next_taken_page(conn, pos, taken_keys(keys, taken)) if depth else None
                    pos = max(pos, nxt[0]) if nxt else pos
                age: float | None = None
                if depth:
                    r = conn.execute(
                        f"SELECT timestamp FROM {PAGE_TABLE} WHERE first_seq <= ? "
                        "ORDER BY first_seq DESC LIMIT 1",
                        (pos,),
                    ).fetchone()
                    if r is None:  # cursor below the first page (should not happen): use the first page
                        r = conn.execute(
                            f"SELECT timestamp FROM {PAGE_TABLE} ORDER BY first_seq LIMIT 1"
                        ).fetchone()
                    age = max(0.0, now - float(r[0])) if r else None
                dests.append(
                    DestinationStatus(dest, depth, age, None if taken is None else tuple(sorted(taken)))
                )
            quarantined: list[QuarantineCount] = []
            if conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (QUARANTINE_TABLE,)
            ).fetchone():  # a version 1 file (not yet opened by this siemconn) has no quarantine
                quarantined = [
                    QuarantineCount(k, d, r, n) for (k, d, r), n in count_quarantined(conn).items()
                ]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise classify_sqlite_error(exc, db) from exc
    finally:
        conn.close()
    keys = sorted(set(cps) | set(polls))
    streams = tuple(StreamStatus(k, cps.get(k), polls.get(k)) for k in keys)
    return StatusReport(data_dir, db, True, pid, streams, tuple(dests), now, tuple(quarantined))


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "-"
    s = int(age)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def render_status(report: StatusReport, *, streams_off: Sequence[str] = ()) -> str:
    """Human-readable text of a StatusReport (plain ASCII, fixed columns); `streams_off` (from the
    configuration) are listed as off."""
    lines = [f"queue: {report.database}"]
    if report.running_pid is not None:
        lines.append(f"service: running (pid {report.running_pid})")
    else:
        lines.append("service: not running")
    if streams_off:
        lines.append(f"streams off: {', '.join(streams_off)}")
    if not report.exists:
        lines.append("no queue database yet (the service has not run with this data_dir)")
        return "\n".join(lines)
    by_key: dict[str, int] = {}
    by_dest: dict[str, int] = {}
    for q in report.quarantined:
        if q.destination is None:
            by_key[q.key] = by_key.get(q.key, 0) + q.count
        else:
            by_dest[q.destination] = by_dest.get(q.destination, 0) + q.count
    lines.append("")
    lines.append(f"{'stream':<26}{'checkpoint':>14}{'quarantined':>13}  last successful poll")
    if not report.streams:
        lines.append("  (no stream polled yet)")
    for s in report.streams:
        cp = "-" if s.checkpoint is None else str(s.checkpoint)
        off = " (off)" if s.key.partition(".")[0] in streams_off else ""
        lines.append(f"{s.key:<26}{cp:>14}{by_key.get(s.key, 0):>13}  {_fmt_time(s.last_poll)}{off}")
    lines.append("")
    lines.append(
        f"{'destination':<26}{'undelivered':>14}{'quarantined':>13}  {'oldest undelivered':<20}streams"
    )
    if not report.destinations:
        lines.append("  (no destination)")
    for d in report.destinations:
        n = by_dest.get(d.destination, 0)
        taken = "every stream" if d.streams is None else ", ".join(d.streams)
        lines.append(f"{d.destination:<26}{d.depth:>14}{n:>13}  {_fmt_age(d.oldest_age):<20}{taken}")
    if report.quarantined:
        lines.append("")
        lines.append(
            f"quarantined events: {report.quarantined_total} kept in the queue database, not sent "
            "(write them out with: siemconn quarantine export --output FILE)"
        )
        for q in report.quarantined:
            where = q.key if q.destination is None else f"{q.key} -> {q.destination}"
            lines.append(f"  {where:<38}{q.reason:<16}{q.count:>8}")
    return "\n".join(lines)
