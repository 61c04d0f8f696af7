"""The quarantine (dead letter): events that cannot be stored or formatted, kept with their raw text.

An event lands here instead of stopping its stream (or a writer): bytes that are not UTF-8, JSON that does
not parse, an element of `events` that is not an object, an event the encoder cannot write (nested deeper
than the interpreter's recursion limit), an event a destination's formatter raised on, or an event over a
destination's size budget (kept whole here whatever that destination's oversize policy sent). Each row
keeps the raw text as received (or, for an event that parsed, its exact JSON re-encoding), the stream key,
the event id when one could be read, the reason (one of `REASONS`, a metric label), a detail and the time.

Invariants: a source-side row is inserted in the SAME transaction as the page (and checkpoint) it came
with, so the checkpoint moves past a page only when each of its events is queued, quarantined or counted
as a duplicate. A destination-side row (`destination` set) is committed before that destination's ack of
the batch holding the event. Rows are never deleted by siemconn; `siemconn quarantine export` writes them
as JSON lines for the operator.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from siemconn.events.rejected import OVERSIZE, Rejected

__all__ = [
    "QUARANTINE_DDL",
    "QUARANTINE_TABLE",
    "QuarantineTally",
    "QuarantinedEvent",
    "count_oversize",
    "count_quarantined",
    "export_row",
    "insert_rejected",
    "iter_quarantined",
]

QUARANTINE_TABLE: Final = "quarantine"
QUARANTINE_DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} ("
    "rowid INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, key TEXT NOT NULL, "
    "destination TEXT, event_id TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, raw BLOB NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """A stored quarantine row, as `siemconn quarantine export` writes it."""

    seq: int
    at: float
    key: str
    destination: str | None
    event_id: str | None
    reason: str
    detail: str
    raw: bytes


def insert_rejected(
    conn: sqlite3.Connection, key: str, rejects: list[Rejected], now: float, destination: str | None = None
) -> None:
    """Insert quarantine rows (the caller holds the transaction)."""
    conn.executemany(
        f"INSERT INTO {QUARANTINE_TABLE} (at, key, destination, event_id, reason, detail, raw) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(now, key, destination, r.event_id, r.reason, r.detail, r.raw) for r in rejects],
    )


def count_quarantined(conn: sqlite3.Connection) -> dict[tuple[str, str | None, str], int]:
    """Rows per (key, destination, reason)."""
    return {
        (str(k), d, str(r)): int(n)
        for k, d, r, n in conn.execute(
            f"SELECT key, destination, reason, COUNT(*) FROM {QUARANTINE_TABLE} "
            "GROUP BY key, destination, reason ORDER BY key, destination, reason"
        )
    }


class QuarantineTally:
    """Running counts of the quarantine per (key, destination, reason), for a process that asks often (the
    in-band heartbeat): the first `refresh` counts every row, each later one only the rows added since
    (rowids only grow: AUTOINCREMENT, and rows are never deleted), so asking costs nothing while the
    quarantine does not grow, however large it is. Call it on the queue's worker thread only."""

    __slots__ = ("_counts", "_seen")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str | None, str], int] = {}
        self._seen = 0  # the highest rowid counted

    def refresh(self, conn: sqlite3.Connection) -> dict[tuple[str, str | None, str], int]:
        """The counts including every row committed so far (a copy)."""
        for k, d, r, n, top in conn.execute(
            f"SELECT key, destination, reason, COUNT(*), MAX(rowid) FROM {QUARANTINE_TABLE} "
            "WHERE rowid > ? GROUP BY key, destination, reason",
            (self._seen,),
        ).fetchall():
            key = (str(k), d, str(r))
            self._counts[key] = self._counts.get(key, 0) + int(n)
            self._seen = max(self._seen, int(top))
        return dict(self._counts)


def count_oversize(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Oversize rows per (destination, action), the action being the detail's first word (see
    siemconn.syslog.wire.oversize_detail)."""
    return {
        (str(d), str(a)): int(n)
        for d, a, n in conn.execute(
            f"SELECT destination, substr(detail, 1, instr(detail, ':') - 1) AS action, COUNT(*) "
            f"FROM {QUARANTINE_TABLE} WHERE reason = ? AND destination IS NOT NULL "
            "GROUP BY destination, action ORDER BY destination, action",
            (OVERSIZE,),
        )
    }


def iter_quarantined(conn: sqlite3.Connection) -> Iterator[QuarantinedEvent]:
    """Every quarantine row, oldest first."""
    rows = conn.execute(
        f"SELECT rowid, at, key, destination, event_id, reason, detail, raw FROM {QUARANTINE_TABLE} "
        "ORDER BY rowid"
    )
    try:
        for seq, at, key, dest, eid, reason, detail, raw in rows:
            data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
            yield QuarantinedEvent(int(seq), float(at), str(key), dest, eid, str(reason), str(detail), data)
    finally:
        rows.close()


def export_row(q: QuarantinedEvent) -> dict[str, Any]:
    """One JSON line of `siemconn quarantine export`.

    `raw` is the event's text (bytes that are not UTF-8 shown as U+FFFD); when the raw bytes are not valid
    UTF-8, `raw_base64` holds them exactly.
    """
    from datetime import UTC, datetime

    event_id: Any = None
    if q.event_id is not None:
        try:
            event_id = json.loads(q.event_id)
        except ValueError:
            event_id = q.event_id
    row: dict[str, Any] = {
        "time": datetime.fromtimestamp(q.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "stream": q.key,
        "id": event_id,
        "reason": q.reason,
        "detail": q.detail,
        "destination": q.destination,
    }
    try:
        row["raw"] = q.raw.decode("utf-8")
    except UnicodeDecodeError:
        row["raw"] = q.raw.decode("utf-8", "replace")
        row["raw_base64"] = base64.b64encode(q.raw).decode("ascii")
    return row
