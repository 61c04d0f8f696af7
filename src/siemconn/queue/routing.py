"""Routing: which streams a destination takes, and how its cursor steps over the pages it does not.

Every page is stored once. A destination that takes every stream (`streams` None, the default) reads
every page. A routed destination (a set of stream names) reads only the pages of its streams; its cursor
still moves along the one sequence of all pages, so the pages between its events are stepped over, never
copied.

Invariants
----------
* the stream of a page is the part of its key before the first dot (`entity_scoring.host` ->
  `entity_scoring`).
* a routed destination's `pending` count is the number of events of its streams in [cursor, head).
* pending == 0 implies cursor == head: whenever a routed destination has nothing of its own left (at open,
  when a page of another stream is committed, when an ack empties it) its cursor is moved to the head in
  the same transaction. Nothing is in flight then (an unacked batch holds events, so pending > 0), so the
  step loses nothing; and housekeeping is never held back by a destination that is merely waiting.
* changing a destination's streams takes effect from its cursor: a stream added gets that stream's events
  from the cursor on (events of it that were already stepped over are not replayed); a stream removed is
  no longer delivered, and its undelivered events are counted in the `queue_destination_streams_changed`
  warning (as removing a server drops its backlog).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping

from siemconn.logging import get_logger
from siemconn.queue.schema import PAGE_TABLE

__all__ = [
    "Routes",
    "load_routes",
    "next_taken_page",
    "normalise_routes",
    "reconcile_routes",
    "stream_of",
    "taken_events",
    "taken_keys",
]

log = get_logger(__name__)

Routes = dict[str, frozenset[str] | None]  # destination -> streams it takes (None: every stream)


def stream_of(key: str) -> str:
    """The stream of a checkpoint key: the part before the first dot."""
    return key.partition(".")[0]


def normalise_routes(
    destinations: Iterable[str], routes: Mapping[str, Collection[str] | None] | None
) -> Routes:
    """One entry per destination; a destination absent from `routes` takes every stream."""
    given = routes or {}
    out: Routes = {}
    for d in destinations:
        streams = given.get(d)
        out[d] = None if streams is None else frozenset(streams)
    return out


def taken_keys(keys: Iterable[str], streams: frozenset[str]) -> list[str]:
    """The keys (of stored pages) whose stream is in `streams`, sorted."""
    return sorted(k for k in set(keys) if stream_of(k) in streams)


def taken_events(conn: sqlite3.Connection, cursor: int, keys: Iterable[str]) -> int:
    """Events of these keys at or after `cursor` (index reads on (key, first_seq, n), no payload)."""
    total = 0
    for key in keys:
        row = conn.execute(
            f"SELECT COALESCE(SUM(n), 0) FROM {PAGE_TABLE} WHERE key = ? AND first_seq >= ?", (key, cursor)
        ).fetchone()
        total += int(row[0])
        r = conn.execute(
            f"SELECT first_seq, n FROM {PAGE_TABLE} WHERE key = ? AND first_seq < ? "
            "ORDER BY first_seq DESC LIMIT 1",
            (key, cursor),
        ).fetchone()
        if r is not None and int(r[0]) + int(r[1]) > cursor:
            total += int(r[0]) + int(r[1]) - cursor
    return total


def next_taken_page(conn: sqlite3.Connection, pos: int, keys: Iterable[str]) -> tuple[int, int, str] | None:
    """(first_seq, n, key) of the first page of these keys holding an event at or after `pos`."""
    best: tuple[int, int, str] | None = None
    for key in keys:
        r = conn.execute(
            f"SELECT first_seq, n FROM {PAGE_TABLE} WHERE key = ? AND first_seq <= ? "
            "ORDER BY first_seq DESC LIMIT 1",
            (key, pos),
        ).fetchone()
        if r is None or int(r[0]) + int(r[1]) <= pos:
            r = conn.execute(
                f"SELECT first_seq, n FROM {PAGE_TABLE} WHERE key = ? AND first_seq > ? "
                "ORDER BY first_seq LIMIT 1",
                (key, pos),
            ).fetchone()
        if r is not None and (best is None or int(r[0]) < best[0]):
            best = (int(r[0]), int(r[1]), key)
    return best


def _dump(streams: frozenset[str] | None) -> str | None:
    return None if streams is None else json.dumps(sorted(streams))


def _load(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    value = json.loads(text)
    return frozenset(str(v) for v in value)


def load_routes(conn: sqlite3.Connection) -> Routes:
    """The routes stored in the file (a destination without a row takes every stream)."""
    return {str(d): _load(s) for d, s in conn.execute("SELECT destination, streams FROM routes")}


def reconcile_routes(
    conn: sqlite3.Connection,
    routes: Routes,
    cursors: dict[str, int],
    head: int,
    keys: Iterable[str],
) -> dict[str, int]:
    """Store the configured routes, log what changed, step idle routed destinations to the head.

    Runs at open (on the worker thread, before anything is read). Mutates `cursors` for the destinations
    it steps and returns the pending count of every routed destination.
    """
    all_keys = sorted(set(keys))
    stored = load_routes(conn)
    for dest in list(stored):
        if dest not in routes:
            conn.execute("DELETE FROM routes WHERE destination = ?", (dest,))
    pending: dict[str, int] = {}
    for dest, streams in routes.items():
        before = stored.get(dest)
        cur = cursors[dest]
        if before != streams:
            kept = set(all_keys) if streams is None else set(taken_keys(all_keys, streams))
            had = set(all_keys) if before is None else set(taken_keys(all_keys, before))
            dropped = taken_events(conn, cur, sorted(had - kept))
            if dest in stored or dropped:
                log_fn = log.warning if dropped else log.info
                log_fn(
                    "queue_destination_streams_changed",
                    destination=dest,
                    before="every stream" if before is None else sorted(before),
                    after="every stream" if streams is None else sorted(streams),
                    undelivered_events_dropped=dropped,
                    detail="takes effect from this destination's position: an added stream gets its events "
                    "committed from now on, a removed stream is no longer delivered",
                )
            conn.execute(
                "INSERT INTO routes (destination, streams) VALUES (?, ?) "
                "ON CONFLICT(destination) DO UPDATE SET streams = excluded.streams",
                (dest, _dump(streams)),
            )
        if streams is None:
            continue
        n = taken_events(conn, cur, taken_keys(all_keys, streams))
        if n == 0 and cur < head:
            conn.execute("UPDATE cursors SET seq = ? WHERE destination = ?", (head, dest))
            cursors[dest] = head
        pending[dest] = n
    return pending
