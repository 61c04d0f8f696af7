"""Housekeeping: delete pages every destination has passed, and hand freed space back to the disk.

Invariants: a page is deleted only when every destination's cursor is at or past its last event; its
checkpoint and dedupe high-water mark are folded into `checkpoints` in the same transaction that deletes
it, and `meta.seq_floor` keeps the head, so what is derived from stored pages never goes backwards. Work is
done in bounded transactions so the writer is never held for long. Freed SQLite pages are reused first;
incremental vacuum returns them to the file system once enough pile up.

Retention (`retain_hours`): delivered pages younger than the retention are kept for replays, so the floor
pages are deleted below is the lower of the delivery floor (the lowest cursor, or a running replay's
position) and the first page committed within the retention. Retained pages count against the same caps
as the backlog: never more than `max_events` retained events, and under the disk floor the oldest retained
pages are reclaimed first (`reclaim_retained`), before fetching pauses.
"""

from __future__ import annotations

import sqlite3

from siemconn.queue.schema import NO_CHECKPOINT, PAGE_TABLE
from siemconn.queue.transaction import transaction

__all__ = [
    "HOUSEKEEPING_PAGES",
    "delete_passed_pages",
    "first_stored_seq",
    "free_pages_bytes",
    "retention_floor",
]

HOUSEKEEPING_PAGES = 512  # pages deleted per housekeeping transaction
# in bytes, whatever the file's SQLite page size: run incremental vacuum once this much free space piles up
# inside the file, and give back this much per step
_VACUUM_THRESHOLD_BYTES = 4096 * 4096
_VACUUM_STEP_BYTES = 2048 * 4096


def first_stored_seq(conn: sqlite3.Connection) -> int | None:
    """first_seq of the oldest stored page, or None when no page is stored."""
    row = conn.execute(f"SELECT first_seq FROM {PAGE_TABLE} ORDER BY first_seq LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def retention_floor(conn: sqlite3.Connection, delivery_floor: int, cutoff: float, max_events: int) -> int:
    """The floor with retention: the first page committed at or after `cutoff` (unix time), but no lower
    than delivery_floor - max_events (retained events count against the cap), and never above
    delivery_floor (undelivered pages are never deleted)."""
    row = conn.execute(
        f"SELECT first_seq FROM {PAGE_TABLE} WHERE timestamp >= ? AND first_seq < ? ORDER BY first_seq LIMIT 1",
        (cutoff, delivery_floor),
    ).fetchone()
    keep = delivery_floor if row is None else int(row[0])
    return min(delivery_floor, max(keep, delivery_floor - max_events))


def delete_passed_pages(conn: sqlite3.Connection, floor: int, *, max_pages: int | None = None) -> int:
    """Delete the pages whose events all lie below `floor` (the lowest cursor), oldest first; at most
    `max_pages` if given. Returns pages deleted."""
    deleted = 0
    while True:
        with transaction(conn):
            rows = conn.execute(
                f"SELECT first_seq, n, key, next_checkpoint, last_event_id FROM {PAGE_TABLE} "
                "WHERE first_seq < ? ORDER BY first_seq LIMIT ?",
                (
                    floor,
                    HOUSEKEEPING_PAGES if max_pages is None else min(HOUSEKEEPING_PAGES, max_pages - deleted),
                ),
            ).fetchall()
            rows = [r for r in rows if r[0] + r[1] <= floor]
            if not rows:
                break  # leaving the block commits the (empty) step
            fold: dict[str, tuple[int | None, int | None]] = {}
            for _, _, key, page_cp, hwm in rows:
                cp = None if page_cp == NO_CHECKPOINT else page_cp
                old_cp, old_hwm = fold.get(key, (cp, hwm))
                top = hwm if old_hwm is None else (old_hwm if hwm is None else max(old_hwm, hwm))
                fold[key] = (cp if old_cp is None else (old_cp if cp is None else max(old_cp, cp)), top)
            for key, (cp, hwm) in fold.items():
                conn.execute(
                    "INSERT INTO checkpoints (key, checkpoint, hwm) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET "
                    "checkpoint = CASE WHEN excluded.checkpoint IS NULL THEN checkpoint "
                    "ELSE MAX(COALESCE(checkpoint, excluded.checkpoint), excluded.checkpoint) END, "
                    "hwm = MAX(COALESCE(hwm, excluded.hwm), COALESCE(excluded.hwm, hwm))",
                    (key, cp, hwm),
                )
            last_first, last_n = rows[-1][0], rows[-1][1]
            conn.execute(f"DELETE FROM {PAGE_TABLE} WHERE first_seq <= ?", (last_first,))
            conn.execute("DELETE FROM deliveries WHERE end_seq <= ?", (last_first + last_n,))
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('seq_floor', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                (last_first + last_n,),
            )
        deleted += len(rows)
        if len(rows) < HOUSEKEEPING_PAGES or (max_pages is not None and deleted >= max_pages):
            break
    return deleted


def free_pages_bytes(conn: sqlite3.Connection) -> int:
    """Vacuum a step if many SQLite pages are free; return the bytes still free inside the file (they are
    reused before the file grows, so they count as free disk space)."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if free_pages * page_size >= _VACUUM_THRESHOLD_BYTES:
        conn.execute(f"PRAGMA incremental_vacuum({max(1, _VACUUM_STEP_BYTES // page_size)})").fetchall()
        free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return free_pages * page_size
