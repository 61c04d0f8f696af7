"""Replays: re-sending the retained events of a time window to one destination, beside its live cursor.

`siemconn replay` inserts a request into the `replays` table; the running service picks it up on its
heartbeat (`DurableQueue.start_replay`) and delivers it with a writer of its own for that server
(`siemconn.queue.feed.ReplayFeed` is the queue contract that writer reads), so the live cursor and the other destinations
are untouched.

What "TIME" means: the event's own time, `event_timestamp` (what a SIEM user searches by); an event
without one (health, lockdown) uses the time its page was committed. The window is [since, until).

A replay by delivery time (`siemconn replay --sent-since/--sent-until`: "the SIEM lost what it received
between 10:00 and 12:00") selects instead the events the server acknowledged in that window, whatever
their event time (a backlog sent then may be days old). A destination's cursor only moves forward, so
those events are one sequence range, [the first batch acked in the window, the last one's end), found in
the `deliveries` record (`sent_range`). Such a request is stored already running with that range and an
event-time window that takes every event (`ALL_SINCE`, `ALL_UNTIL`), plus a `replay_sent` row naming the
delivery-time window (`ReplayRequest.sent`, for `status` and the log). Events a replay itself re-sent are
not in the record: a replay by delivery time re-sends what the live cursor delivered.

Invariants
----------
* a replay covers the pages stored when it started, [start_seq, end_seq): events committed later are
  delivered by the live cursor, not by the replay.
* an event is in a page committed at or after its event time (it was fetched after it happened), so
  only pages committed at or after `since - CLOCK_SKEW_SECONDS` are read; the skew allows for a tenant
  clock ahead of ours.
* a replay's `position` moves only after the server accepted a batch (the same ack rule as the cursors),
  so a restart resumes it without loss; it may resend at most one batch. Housekeeping never deletes a
  page at or above a running replay's position.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siemconn.errors import QueueError, ReplayRefusedError
from siemconn.events.batch import Batch, Segment
from siemconn.events.eventtime import replay_time
from siemconn.queue.diskfull import recovery_write
from siemconn.queue.opening import QueueState
from siemconn.queue.pagelog import load_ids, split_page
from siemconn.queue.routing import stream_of
from siemconn.queue.schema import APPLICATION_ID, PAGE_TABLE

__all__ = [
    "ALL_SINCE",
    "ALL_UNTIL",
    "CLOCK_SKEW_SECONDS",
    "REPLAY_COLUMNS",
    "ReplayRequest",
    "finish_request",
    "read_window",
    "record_progress",
    "request_of",
    "running_positions",
    "sent_range",
    "start_request",
    "submit_request",
    "unfinished_requests",
    "with_sent",
]

CLOCK_SKEW_SECONDS = 600.0
ALL_SINCE, ALL_UNTIL = 0.0, 253402300800.0  # an event-time window that takes every event (to 9999-12-31)


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """One row of `replays`: re-send to `destination` the events of `stream` (None: every stream it
    takes) whose event time is in [since, until)."""

    id: int
    destination: str
    since: float
    until: float
    stream: str | None
    state: str  # pending | running | done | failed
    start_seq: int | None = None
    end_seq: int | None = None
    position: int | None = None
    events: int = 0
    detail: str | None = None
    requested_at: float = 0.0
    sent: tuple[float, float] | None = None  # a replay by delivery time: that window (module docstring)


REPLAY_COLUMNS = (
    "id, destination, since, until, stream, state, start_seq, end_seq, position, events, detail, requested_at"
)


def request_of(row: tuple[Any, ...]) -> ReplayRequest:
    """A `replays` row (REPLAY_COLUMNS order) as a ReplayRequest."""
    return ReplayRequest(
        id=int(row[0]),
        destination=str(row[1]),
        since=float(row[2]),
        until=float(row[3]),
        stream=None if row[4] is None else str(row[4]),
        state=str(row[5]),
        start_seq=None if row[6] is None else int(row[6]),
        end_seq=None if row[7] is None else int(row[7]),
        position=None if row[8] is None else int(row[8]),
        events=int(row[9] or 0),
        detail=None if row[10] is None else str(row[10]),
        requested_at=float(row[11] or 0.0),
    )


def read_window(
    conn: sqlite3.Connection, state: QueueState, request: ReplayRequest, pos: int, max_events: int
) -> Batch | None:
    """Up to max_events events of the request's window (of the streams its destination takes) from
    sequence number `pos`, or None when the request's pages are exhausted. The batch's end is the position after the last page (slice) read, so
    a batch may hold no event (pages outside the window): acking it records the progress."""
    end = request.end_seq if request.end_seq is not None else pos
    if pos >= end:
        return None
    streams = state.routes.get(request.destination)
    segments: list[Segment] = []
    count = 0
    reached = pos
    low = request.since - CLOCK_SKEW_SECONDS
    rows = conn.execute(
        f"SELECT first_seq, n, key, timestamp, ids, CAST(data AS BLOB) FROM {PAGE_TABLE} "
        "WHERE first_seq + n > ? AND first_seq < ? ORDER BY first_seq",
        (pos, end),
    )
    try:
        for first_seq, n, key, committed, ids_text, data in rows:
            first_seq, n = int(first_seq), int(n)
            stream = stream_of(str(key))
            page_end = min(first_seq + n, end)
            wanted = (request.stream is None or stream == request.stream) and (
                streams is None or stream in streams
            )
            if not wanted or float(committed) < low:
                reached = page_end
                continue
            ids = load_ids(ids_text)
            payloads = split_page(data)
            off = max(0, reached - first_seq)
            seg_ids: list[int | None] = []
            seg_payloads: list[bytes] = []
            i = off
            while i < page_end - first_seq and count < max_events:
                p = payloads[i]
                if request.since <= replay_time(p, float(committed)) < request.until:
                    seg_ids.append(ids[i])
                    seg_payloads.append(p)
                    count += 1
                i += 1
            reached = first_seq + i
            if seg_payloads:
                segments.append(Segment(stream, seg_ids, seg_payloads))
            if count >= max_events:
                break
    finally:
        rows.close()
    if reached <= pos:
        reached = end  # no page left in [pos, end) (deleted or never there)
    return Batch(f"replay:{request.id}", segments, pos, reached)


def with_sent(conn: sqlite3.Connection, requests: list[ReplayRequest]) -> list[ReplayRequest]:
    """`requests` with their delivery-time window, for those requested by delivery time."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'replay_sent'").fetchone()
    if not requests or has is None:
        return requests
    marks = {
        int(i): (float(a), float(b))
        for i, a, b in conn.execute("SELECT replay_id, sent_since, sent_until FROM replay_sent")
    }
    return [replace(r, sent=marks[r.id]) if r.id in marks else r for r in requests]


def sent_range(
    conn: sqlite3.Connection, destination: str, since: float, until: float
) -> tuple[int, int, int] | None:
    """(first sequence number, end, events) of what `destination` acknowledged in [since, until), or None
    when it acknowledged nothing then (or the record has been deleted with its pages)."""
    row = conn.execute(
        "SELECT MIN(start_seq), MAX(end_seq), SUM(events) FROM deliveries "
        "WHERE destination = ? AND at >= ? AND at < ?",
        (destination, since, until),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1]), int(row[2])


def running_positions(conn: sqlite3.Connection) -> dict[int, int]:
    """Running replay -> its position (housekeeping keeps the pages at or above it)."""
    return {
        int(i): int(p)
        for i, p in conn.execute("SELECT id, position FROM replays WHERE state = 'running'")
        if p is not None
    }


def unfinished_requests(conn: sqlite3.Connection) -> list[ReplayRequest]:
    """Replay requests not finished yet (pending or running), oldest first."""
    rows = conn.execute(
        f"SELECT {REPLAY_COLUMNS} FROM replays WHERE state IN ('pending', 'running') ORDER BY id"
    )
    return with_sent(conn, [request_of(r) for r in rows])


def start_request(
    conn: sqlite3.Connection, state: QueueState, request: ReplayRequest, positions: dict[int, int]
) -> ReplayRequest:
    """Fix a pending request's page range, [oldest page committed in reach of `since`, head), mark it
    running and record its position in `positions`; a running one is returned as stored. Raises
    QueueError for a destination the queue has no cursor for."""
    if request.destination not in state.cursors:
        raise QueueError(
            f"server {request.destination!r} is not configured (servers: {', '.join(sorted(state.cursors))})"
        )
    if request.state == "running" and request.start_seq is not None and request.end_seq is not None:
        positions[request.id] = request.position or request.start_seq
        return request
    row = conn.execute(
        f"SELECT first_seq FROM {PAGE_TABLE} WHERE timestamp >= ? ORDER BY first_seq LIMIT 1",
        (request.since - CLOCK_SKEW_SECONDS,),
    ).fetchone()
    first = state.head if row is None else int(row[0])
    conn.execute(
        "UPDATE replays SET state = 'running', start_seq = ?, end_seq = ?, position = ? WHERE id = ?",
        (first, state.head, first, request.id),
    )
    positions[request.id] = first
    row = conn.execute(f"SELECT {REPLAY_COLUMNS} FROM replays WHERE id = ?", (request.id,)).fetchone()
    return with_sent(conn, [request_of(row)])[0]


@recovery_write
def record_progress(
    conn: sqlite3.Connection, positions: dict[int, int], replay_id: int, position: int, events: int
) -> None:
    """Durably move a replay's position (it never goes back) after its server accepted a batch."""
    conn.execute(
        "UPDATE replays SET position = MAX(COALESCE(position, 0), ?), events = events + ? WHERE id = ?",
        (position, events, replay_id),
    )
    positions[replay_id] = position


@recovery_write
def finish_request(
    conn: sqlite3.Connection, positions: dict[int, int], replay_id: int, state: str, detail: str
) -> None:
    """Mark a replay done or failed, with a one-line detail for `status`; its pages are no longer kept."""
    conn.execute("UPDATE replays SET state = ?, detail = ? WHERE id = ?", (state, detail, replay_id))
    positions.pop(replay_id, None)


def _utc_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def submit_request(
    db: Path,
    destination: str,
    since: float,
    until: float,
    stream: str | None,
    now: float,
    *,
    retain_hours: float,
    by_sent: bool = False,
) -> tuple[int, int]:
    """`siemconn replay`'s write: check the file can serve the window and insert one `replays` row in a
    short transaction beside the running service (WAL; SQLite serialises writers).
    `by_sent`: [since, until) is the time the server acknowledged the events (a replay by delivery time,
    inserted already running over that sequence range). (The new row's id, the events of a replay by
    delivery time or 0.) Raises ReplayRefusedError with the operator's sentence when it cannot be met."""
    try:
        conn = sqlite3.connect(str(db), timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise ReplayRefusedError(f"cannot open {db}: {exc}") from exc
    try:
        try:
            if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                raise ReplayRefusedError(f"{db} is not a siemconn queue")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "replays" not in tables:
                raise ReplayRefusedError(
                    f"{db} was written by a siemconn without replay; restart the service with this version",
                )
            if conn.execute("SELECT 1 FROM cursors WHERE destination = ?", (destination,)).fetchone() is None:
                raise ReplayRefusedError(
                    f"server {destination!r} has no position in the queue yet (added to config.json but "
                    "the service has not been reloaded or restarted since)",
                )
            oldest = conn.execute(f"SELECT MIN(timestamp) FROM {PAGE_TABLE}").fetchone()[0]
            floor = conn.execute("SELECT value FROM meta WHERE name = 'seq_floor'").fetchone()
            ever_deleted = floor is not None and int(floor[0]) > 0
            if oldest is None:
                raise ReplayRefusedError("the queue holds no events (nothing retained yet)")
            if ever_deleted and float(oldest) > since and not by_sent:
                raise ReplayRefusedError(
                    f"the window starts at {_utc_text(since)}, before the oldest retained page (committed "
                    f"{_utc_text(float(oldest))}, retain_hours={retain_hours:g}); events from before it are "
                    f"gone. Use --since {_utc_text(float(oldest))} or later",
                )
            if by_sent:
                found = _sent_window(conn, destination, since, until, tables)
                if isinstance(found, str):
                    raise ReplayRefusedError(found)
                return _insert_sent(conn, destination, stream, found, since, until, now)
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT INTO replays (destination, since, until, stream, requested_at) VALUES (?, ?, ?, ?, ?)",
                (destination, since, until, stream, now),
            )
            conn.execute("COMMIT")
            return int(cur.lastrowid or 0), 0
        except sqlite3.Error as exc:
            raise ReplayRefusedError(f"cannot write to {db}: {exc}") from exc
    finally:
        conn.close()


def _sent_window(
    conn: sqlite3.Connection, server: str, since: float, until: float, tables: set[str]
) -> tuple[int, int, int] | str:
    """The sequence range `server` acknowledged in [since, until) and its events, or why there is none."""
    if "deliveries" not in tables:
        return "this queue has no delivery record yet; restart the service with this version"
    found = sent_range(conn, server, since, until)
    if found is None:
        return (
            f"server {server!r} was sent nothing in [{_utc_text(since)}, {_utc_text(until)}) that is still retained "
            "(delivery times are recorded since this version; they are deleted with their events)"
        )
    first = conn.execute(f"SELECT MIN(first_seq) FROM {PAGE_TABLE}").fetchone()[0]
    if first is None or int(first) > found[0]:
        return (
            "some events sent in that window are no longer retained (retain_hours); use a later --sent-since"
        )
    return found


def _insert_sent(
    conn: sqlite3.Connection,
    destination: str,
    stream: str | None,
    found: tuple[int, int, int],
    since: float,
    until: float,
    now: float,
) -> tuple[int, int]:
    """Insert a replay by delivery time, already running over its sequence range; (its id, its events)."""
    start, end, events = found
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute(
        "INSERT INTO replays (destination, since, until, stream, requested_at, state, start_seq, end_seq, "
        "position) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
        (destination, ALL_SINCE, ALL_UNTIL, stream, now, start, end, start),
    )
    replay_id = int(cur.lastrowid or 0)
    conn.execute(
        "INSERT INTO replay_sent (replay_id, sent_since, sent_until) VALUES (?, ?, ?)",
        (replay_id, since, until),
    )
    conn.execute("COMMIT")
    return replay_id, events
