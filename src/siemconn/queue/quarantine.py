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
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FORMAT_ERROR",
    "INVALID_JSON",
    "INVALID_UTF8",
    "NOT_AN_OBJECT",
    "OVERSIZE",
    "QUARANTINE_DDL",
    "QUARANTINE_TABLE",
    "REASONS",
    "TOO_DEEP",
    "UNENCODABLE",
    "QuarantineTally",
    "QuarantinedEvent",
    "Rejected",
    "count_oversize",
    "count_quarantined",
    "export_row",
    "id_text",
    "insert_rejected",
    "iter_quarantined",
    "raw_json",
    "reason_of",
    "rejected_from_exception",
]

QUARANTINE_TABLE: Final = "quarantine"
QUARANTINE_DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} ("
    "rowid INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, key TEXT NOT NULL, "
    "destination TEXT, event_id TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, raw BLOB NOT NULL)"
)

INVALID_UTF8: Final = "invalid_utf8"  # the event's bytes are not UTF-8
INVALID_JSON: Final = "invalid_json"  # the event's text is not JSON
NOT_AN_OBJECT: Final = "not_an_object"  # an element of `events` that is not a JSON object
TOO_DEEP: Final = "too_deep"  # nested deeper than the encoder or parser can go (RecursionError)
UNENCODABLE: Final = "unencodable"  # any other failure to encode the event at commit
FORMAT_ERROR: Final = "format_error"  # a destination's formatter raised on the stored payload
# over a destination's max_message_size: kept whole here, sent trimmed or truncated, or not sent (detail)
OVERSIZE: Final = "oversize"
REASONS: Final = (INVALID_UTF8, INVALID_JSON, NOT_AN_OBJECT, TOO_DEEP, UNENCODABLE, FORMAT_ERROR, OVERSIZE)

_DETAIL_MAX = 300


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event that is quarantined instead of queued: its raw bytes and why.

    `event_id` is the JSON text of the event's `id` when it could be read (`5`, `"abc"`), else None.
    """

    raw: bytes
    reason: str
    detail: str
    event_id: str | None = None


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


def reason_of(exc: BaseException) -> str:
    """The quarantine reason for an exception raised while encoding or parsing one event."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    if isinstance(exc, UnicodeError):
        return INVALID_UTF8
    return UNENCODABLE


def _detail(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_DETAIL_MAX]


def id_text(value: Any) -> str | None:
    """The JSON text of an event id (int or str) for the `event_id` column, or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = json.dumps(value)
    return text if len(text) <= _DETAIL_MAX else None


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.encoder.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    return json.encoder.encode_basestring_ascii(repr(value))


def raw_json(value: Any) -> bytes:
    """`json.dumps(value)` without recursion (an explicit stack), for values too deep for json.dumps.

    Used only to keep the raw text of an event that parsed but cannot be queued; the output is the JSON
    text json.dumps would give (", " and ": " separators, ASCII escapes).
    """
    out: list[str] = []
    stack: list[tuple[Iterator[Any], bool, str]] = []  # (items left, is an object, closing bracket)
    started: list[bool] = []

    def emit(item: Any) -> None:
        if isinstance(item, dict):
            out.append("{")
            stack.append((iter(item.items()), True, "}"))
            started.append(False)
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append((iter(item), False, "]"))
            started.append(False)
        else:
            out.append(_scalar(item))

    emit(value)
    while stack:
        items, is_object, closer = stack[-1]
        item: Any = next(items, _END)
        if item is _END:
            out.append(closer)
            stack.pop()
            started.pop()
            continue
        if started[-1]:
            out.append(", ")
        started[-1] = True
        if is_object:
            key, val = item
            out.append(_scalar(key if isinstance(key, str) else str(key)))
            out.append(": ")
            emit(val)
        else:
            emit(item)
    return "".join(out).encode("ascii")


_END = object()


def rejected_from_exception(raw: bytes, exc: BaseException, event_id: Any = None) -> Rejected:
    """A `Rejected` for an event whose encoding or parsing raised `exc`."""
    return Rejected(raw, reason_of(exc), _detail(exc), id_text(event_id))


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
