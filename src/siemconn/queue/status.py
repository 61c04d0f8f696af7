"""Read-only view of the durable queue for `siemconn status`.

`read_status(data_dir)` opens the SQLite file with a `mode=ro` URI, so it works while the service runs
(WAL mode lets readers run beside the one writer) and never takes the data_dir lock. It reads everything
inside one read transaction, so the figures are one consistent snapshot.

Per destination it reads the delivery record the service keeps in `destinations` (events delivered, the
last one delivered, up/down state and since when) and, when the file has a `quarantine` table (events
set aside with a reason), how many of its streams' events are quarantined. Tables a file does not have
yet are reported as unknown (None), never as zero. `report_dict` gives the same figures for `--json`; the text is
`siemconn.commands.render`'s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from siemconn.queue.errors import classify_sqlite_error, corrupt_error
from siemconn.queue.quarantine import (
    QUARANTINE_TABLE,
    QuarantinedEvent,
    count_oversize,
    count_quarantined,
    iter_quarantined,
)
from siemconn.queue.replay import REPLAY_COLUMNS, ReplayRequest, request_of, with_sent
from siemconn.queue.reserve import DiskReserve
from siemconn.queue.routing import (
    Routes,
    load_routes,
    next_taken_page,
    stream_of,
    taken_events,
    taken_keys,
)
from siemconn.queue.schema import APPLICATION_ID, DB_FILE, LOCK_FILE, NO_CHECKPOINT, PAGE_TABLE, stored_head

__all__ = [
    "DestinationStatus",
    "QuarantineCount",
    "StatusReport",
    "StreamStatus",
    "open_read_only",
    "read_quarantine",
    "read_status",
    "report_dict",
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
    delivered: int | None = None  # events accepted by the server (None: not recorded by this file)
    last_event_id: int | None = None
    last_event_time: str | None = None  # the last delivered event's event_timestamp, as the API sent it
    last_delivered_at: float | None = None
    state: str | None = None  # up | retrying | down | starting | stopped, as the service last recorded it
    state_since: float | None = None
    reason: str | None = None  # why it is not up
    quarantined: int | None = None  # events of its streams in quarantine (None: no quarantine table)
    oversize: dict[str, int] | None = None  # events over its max_message_size, per action (trimmed, ...)


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
    quarantine: dict[str, int] | None = None  # stream -> quarantined events (None: no quarantine table)
    replays: tuple[ReplayRequest, ...] = ()  # the most recent replay requests
    quarantined: tuple[QuarantineCount, ...] = ()
    disk_free: int | None = None  # free bytes on the data file system (None: unknown)
    reserve_held: int | None = None  # bytes the disk reserve holds (None: no queue yet)
    reserve_size: int | None = None  # bytes it holds when whole

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
        if not _has_table(conn, QUARANTINE_TABLE):
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
            records = _destination_records(conn)
            quarantine = _quarantine_counts(conn)
            replays = _recent_replays(conn)
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
                rec = records.get(dest)
                known = records is not _NO_TABLE
                dests.append(
                    DestinationStatus(
                        dest,
                        depth,
                        age,
                        None if taken is None else tuple(sorted(taken)),
                        delivered=(rec.delivered if rec else 0) if known else None,
                        last_event_id=rec.last_event_id if rec else None,
                        last_event_time=rec.last_event_time if rec else None,
                        last_delivered_at=rec.last_delivered_at if rec else None,
                        state=rec.state if rec else None,
                        state_since=rec.state_since if rec else None,
                        reason=rec.reason if rec else None,
                        quarantined=None
                        if quarantine is None
                        else sum(
                            n for st, n in quarantine.items() if taken is None or stream_of(st) in taken
                        ),
                    )
                )
            quarantined: list[QuarantineCount] = []
            if _has_table(
                conn, QUARANTINE_TABLE
            ):  # a version 1 file (not opened by this siemconn yet) has none
                with contextlib.suppress(sqlite3.OperationalError):  # a table of another shape: no counts
                    quarantined = [
                        QuarantineCount(k, d, r, n) for (k, d, r), n in count_quarantined(conn).items()
                    ]
                    oversize: dict[str, dict[str, int]] = {}
                    for (dest, action), n in count_oversize(conn).items():
                        oversize.setdefault(dest, {})[action] = n
                    dests = [replace(d, oversize=oversize.get(d.destination)) for d in dests]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise classify_sqlite_error(exc, db) from exc
    finally:
        conn.close()
    keys = sorted(set(cps) | set(polls))
    streams = tuple(StreamStatus(k, cps.get(k), polls.get(k)) for k in keys)
    try:
        disk_free: int | None = shutil.disk_usage(data_dir).free
    except OSError:
        disk_free = None
    reserve = DiskReserve(data_dir, lambda p: shutil.disk_usage(p).free)
    return StatusReport(
        data_dir,
        db,
        True,
        pid,
        streams,
        tuple(dests),
        now,
        quarantine,
        replays,
        tuple(quarantined),
        disk_free,
        reserve.held(),
        reserve.size,
    )


@dataclass(frozen=True, slots=True)
class _Record:
    delivered: int
    last_event_id: int | None
    last_event_time: str | None
    last_delivered_at: float | None
    state: str | None
    state_since: float | None
    reason: str | None


_NO_TABLE: dict[str, _Record] = {}


def _opt_int(v: object) -> int | None:
    return None if v is None else int(str(v))


def _opt_float(v: object) -> float | None:
    return None if v is None else float(str(v))


def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)


def _destination_records(conn: sqlite3.Connection) -> dict[str, _Record]:
    """destination -> its delivery record; `_NO_TABLE` (identity) when the file has no such table."""
    if not _has_table(conn, "destinations"):
        return _NO_TABLE
    out: dict[str, _Record] = {}
    for row in conn.execute(
        "SELECT destination, delivered, last_event_id, last_event_time, last_delivered_at, state, "
        "state_since, reason FROM destinations"
    ):
        out[str(row[0])] = _Record(
            int(row[1] or 0),
            _opt_int(row[2]),
            _opt_str(row[3]),
            _opt_float(row[4]),
            _opt_str(row[5]),
            _opt_float(row[6]),
            _opt_str(row[7]),
        )
    return out


def _quarantine_counts(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Quarantined events per stream, from the `quarantine` table if this file has one (it needs a
    `stream` column); None otherwise. A hook: the quarantine itself is written elsewhere."""
    if not _has_table(conn, "quarantine"):
        return None
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(quarantine)")}
    column = "stream" if "stream" in columns else "key" if "key" in columns else None
    if column is None:
        return None
    return {
        str(st): int(n)
        for st, n in conn.execute(f"SELECT {column}, COUNT(*) FROM quarantine GROUP BY {column}")
    }


def _recent_replays(conn: sqlite3.Connection, limit: int = 10) -> tuple[ReplayRequest, ...]:
    if not _has_table(conn, "replays"):
        return ()
    rows = conn.execute(f"SELECT {REPLAY_COLUMNS} FROM replays ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return tuple(with_sent(conn, [request_of(r) for r in reversed(rows)]))


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def report_dict(report: StatusReport) -> dict[str, object]:
    """The report as JSON-able data (paths as text), for `siemconn status --json`."""
    data = asdict(report)
    data["data_dir"] = str(report.data_dir)
    data["database"] = str(report.database)
    return data
