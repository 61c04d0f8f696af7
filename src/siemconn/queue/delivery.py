"""The sink side: reading a destination's next batch, acking it, and the delivery record.

Invariants
----------
* reading never moves a cursor; `ack` does, in read order only (an ack that would skip events is
  refused, a stale one is a no-op), and a cursor never moves past the head.
* read_batch is an index range read from the cursor, so its cost does not depend on the backlog; the
  read side never decodes payloads (a `Batch` holds `Segment`s of stored bytes).
* delivery record: every ack that delivers events also updates the destination's row in `destinations`
  (events delivered, the last one's id and event time) and adds a `deliveries` row (the batch's sequence
  range, its events, the time) in the same transaction as its cursor;
  `record_state` stores its up/down state when it changes. `siemconn status` reads both.
* a routed destination's cursor steps over the pages of streams it does not take (see `routing`); its
  pending count is kept with its cursor.
"""

from __future__ import annotations

import sqlite3
import time

from siemconn.errors import QueueError
from siemconn.events.batch import Batch
from siemconn.events.eventtime import event_timestamp_text
from siemconn.events.rejected import Rejected
from siemconn.queue.diskfull import recovery_write
from siemconn.queue.opening import QueueState
from siemconn.queue.quarantine import insert_rejected
from siemconn.queue.reader import PageReader
from siemconn.queue.routing import next_taken_page, taken_events, taken_keys
from siemconn.queue.schema import PAGE_TABLE
from siemconn.queue.space import Housekeeper
from siemconn.queue.transaction import transaction

__all__ = ["ack", "oldest_age", "quarantine", "read_next", "record_state"]

_DELIVERED_SQL = (
    "INSERT INTO destinations (destination, delivered, last_event_id, last_event_time, last_delivered_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(destination) DO UPDATE SET "
    "delivered = delivered + excluded.delivered, last_event_id = excluded.last_event_id, "
    "last_event_time = excluded.last_event_time, last_delivered_at = excluded.last_delivered_at"
)
_CURSOR_SQL = "UPDATE cursors SET seq = ? WHERE destination = ?"
_SENT_SQL = "INSERT INTO deliveries (destination, start_seq, end_seq, events, at) VALUES (?, ?, ?, ?, ?)"


def read_next(
    conn: sqlite3.Connection,
    reader: PageReader,
    state: QueueState,
    destination: str,
    max_events: int,
    start_seq: int | None,
) -> Batch | None:
    """Up to max_events undelivered events of destination from its cursor (or from start_seq, if later)."""
    cur = state.cursor(destination)
    if start_seq is not None:
        cur = max(cur, start_seq)
    if cur >= state.head:
        return None
    streams = state.routes.get(destination)
    if streams is not None:
        keys = taken_keys(state.checkpoints, streams)
        return reader.read_routed(conn, destination, cur, state.head, max_events, keys)
    return reader.read(conn, destination, cur, state.head, max_events)


@recovery_write
def ack(conn: sqlite3.Connection, state: QueueState, batch: Batch, housekeeper: Housekeeper) -> None:
    """Durably move batch.destination's cursor past the batch (one small commit); a batch acked already
    is a no-op. A moved cursor counts towards the next housekeeping."""
    cur = state.cursor(batch.destination)
    if batch.start_seq > cur:
        raise QueueError(
            f"ack of {batch.destination} events [{batch.start_seq}, {batch.end_seq}) would skip "
            f"events from {cur}; ack batches in the order they were read"
        )
    if batch.end_seq <= cur:
        return  # already acked (stale batch)
    end = min(batch.end_seq, state.head)
    dest = batch.destination
    streams = state.routes.get(dest)
    pending: int | None = None
    if streams is not None:
        if batch.start_seq == cur:
            pending = max(0, state.pending[dest] - sum(len(seg.payloads) for seg in batch.segments))
        else:  # a batch overlapping what was acked already: count from the file
            pending = taken_events(conn, end, taken_keys(state.checkpoints, streams))
        if pending == 0:
            end = state.head  # nothing of its own after the batch: step over the rest too
    delivered = sum(len(seg.payloads) for seg in batch.segments)
    if delivered:
        last = batch.segments[-1]
        now = time.time()
        with transaction(conn):
            conn.execute(_CURSOR_SQL, (end, dest))
            conn.execute(
                _DELIVERED_SQL,
                (dest, delivered, last.ids[-1], event_timestamp_text(last.payloads[-1]), now),
            )
            conn.execute(_SENT_SQL, (dest, batch.start_seq, end, delivered, now))
    else:
        conn.execute(_CURSOR_SQL, (end, dest))
    state.cursors[dest] = end
    if pending is not None:
        state.pending[dest] = pending
    housekeeper.acked(conn)


@recovery_write
def quarantine(conn: sqlite3.Connection, destination: str, stream: str, rejects: list[Rejected]) -> None:
    """Durably keep events the destination's formatter refused, before it acks the batch holding them."""
    with transaction(conn):
        insert_rejected(conn, stream, rejects, time.time(), destination)


@recovery_write
def record_state(conn: sqlite3.Connection, destination: str, state: str, reason: str, since: float) -> None:
    """Store a destination's state (up, retrying, down, ...) and since when, for `status`."""
    conn.execute(
        "INSERT INTO destinations (destination, state, state_since, reason) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(destination) DO UPDATE SET state = excluded.state, "
        "state_since = excluded.state_since, reason = excluded.reason",
        (destination, state, since, reason or None),
    )


def oldest_age(conn: sqlite3.Connection, state: QueueState, destination: str) -> float | None:
    """Seconds since the oldest undelivered event of destination was committed, or None if none."""
    cur = state.cursor(destination)
    if cur >= state.head or not state.depth(destination):
        return None
    streams = state.routes.get(destination)
    if streams is not None:
        nxt = next_taken_page(conn, cur, taken_keys(state.checkpoints, streams))
        if nxt is None:
            return None
        cur = max(cur, nxt[0])
    row = conn.execute(
        f"SELECT timestamp FROM {PAGE_TABLE} WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1", (cur,)
    ).fetchone()
    return max(0.0, time.time() - float(row[0])) if row else None
