"""Space: what the queue keeps, when it stops the source for room, and how it gives disk space back.

Backpressure: `max_events` per destination bounds how far a down destination can fall behind;
`min_free` is an absolute floor of free disk (free pages inside the file count as free, the WAL's size
as used). Under the floor, retained pages yield first, then delivered pages are deleted and the WAL
truncated; only if that is not enough does pulling pause. Nothing is ever dropped to make room. The
reasons for the defaults are in docs/architecture.md.

Invariants
----------
* the keep floor is the lowest of every cursor and running replay position (with retention, lowered to
  the first page committed within it, see `housekeeping.retention_floor`): no page at or above it is
  deleted, so nothing undelivered is ever lost to make room.
* the disk never fills to the last byte: the floor counts the WAL as used, and the WAL's growth to its
  reuse point (`Limits.wal_cap`) plus one more page must fit on the file system, so the small writes that
  ack a batch or delete delivered pages can always be made.
* every function here runs on the store's worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from siemconn.logging import get_logger
from siemconn.queue.housekeeping import (
    delete_passed_pages,
    first_stored_seq,
    free_pages_bytes,
    retention_floor,
)
from siemconn.queue.opening import QueueState
from siemconn.queue.pagelog import PageLog
from siemconn.queue.schema import DB_FILE, MB

__all__ = ["Housekeeper", "Limits", "bound_wal", "free_bytes", "keep_floor", "pull_verdict"]

log = get_logger(__name__)


@dataclass(slots=True)
class Limits:
    """The caps of one open queue (a reload may change the first three) and where its disk is measured."""

    max_events: int  # undelivered (and retained) events per destination
    min_free: int  # bytes of free disk the queue leaves
    retain: float  # seconds delivered pages are kept (0: reclaimed once every destination passed them)
    data_dir: Path
    disk_free: Callable[[Path], int]  # free bytes on the file system holding a path
    wal_cap: int = 1000 * 4096  # bytes the WAL grows to before it is reused (set by bound_wal)

    @property
    def wal_path(self) -> Path:
        return self.data_dir / f"{DB_FILE}-wal"

    def update(
        self, max_events: int | None, min_free_disk_mb: int | None, retain_seconds: float | None
    ) -> None:
        """A reload's new caps (None: unchanged)."""
        if max_events is not None:
            self.max_events = max_events
        if min_free_disk_mb is not None:
            self.min_free = min_free_disk_mb * MB
        if retain_seconds is not None:
            self.retain = max(0.0, float(retain_seconds))


class Housekeeper:
    """Deletes the pages below the keep floor: every `every` acks, on demand, and when the disk floor
    asks for room. Used on the worker thread only."""

    def __init__(
        self, limits: Limits, pages: PageLog, state: QueueState, replays: Mapping[int, int], every: int
    ) -> None:
        self._limits = limits
        self._pages = pages
        self._state = state
        self._replays = replays
        self._every = max(1, every)
        self._acks = 0

    def floor_of(self, conn: sqlite3.Connection, state: QueueState) -> int:
        """The keep floor of `state` (the queue's, or the one a reload just loaded)."""
        lim = self._limits
        return keep_floor(conn, state.cursors, state.head, self._replays, lim.retain, lim.max_events)

    def run(self, conn: sqlite3.Connection) -> int:
        """Delete the pages below the keep floor now; returns pages deleted."""
        self._acks = 0
        deleted = delete_passed_pages(conn, self.floor_of(conn, self._state))
        self._pages.forget(deleted)
        self._state.free_pages_bytes = free_pages_bytes(conn)
        return deleted

    def acked(self, conn: sqlite3.Connection) -> None:
        """One more ack moved a cursor: run housekeeping if it is due."""
        self._acks += 1
        if self._acks >= self._every:
            self.run(conn)


def keep_floor(
    conn: sqlite3.Connection,
    cursors: Mapping[str, int],
    head: int,
    replays: Mapping[int, int],
    retain_seconds: float,
    max_events: int,
) -> int:
    """The sequence number below which pages may be deleted: every cursor and running replay passed
    them, and (with retention) they were committed before the retention window."""
    floor = min([*cursors.values(), *replays.values()], default=head)
    if retain_seconds > 0:
        floor = retention_floor(conn, floor, time.time() - retain_seconds, max_events)
    return floor


def bound_wal(conn: sqlite3.Connection, limits: Limits) -> None:
    """Checkpoint the WAL often enough that it stays well under the disk floor (SQLite's default lets
    it grow to 1,000 pages, 4 MB at 4 KB pages, before it is reused; on a small floor that alone would eat
    it). The bounds are bytes (those of 4 KB pages), whatever the file's page size."""
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = max(1, max(16 * 4096, min(1000 * 4096, limits.min_free // 4)) // page)
    conn.execute(f"PRAGMA wal_autocheckpoint={pages}").fetchall()
    limits.wal_cap = pages * page


def _wal_size(limits: Limits) -> int:
    try:
        return os.stat(limits.wal_path).st_size
    except OSError:
        return 0


def free_bytes(conn: sqlite3.Connection, limits: Limits) -> int:
    """Free disk space as the floor sees it: free bytes on the file system, plus free pages inside the
    database (reused before it grows), minus the WAL file's size. A checkpoint copies the WAL's pages
    into the database, which may grow by up to that much while the WAL keeps its size; counting it as
    used keeps that growth inside the floor."""
    wal = _wal_size(limits)
    free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    inside = free_pages * int(conn.execute("PRAGMA page_size").fetchone()[0])
    return limits.disk_free(limits.data_dir) + inside - wal


def _wal_fits(limits: Limits, largest_page: int) -> bool:
    """Whether the file system itself (free pages inside the database do not count: new data goes to the
    WAL first) has room for the WAL to grow to its reuse point plus one more page."""
    return limits.disk_free(limits.data_dir) >= limits.wal_cap + largest_page - _wal_size(limits)


def _reclaim(conn: sqlite3.Connection, limits: Limits, housekeeper: Housekeeper) -> int:
    """Under the disk floor: hand the queue's own reclaimable space back, return the free bytes then.

    Delivered pages not yet cleared are deleted (housekeeping) and the WAL, which keeps its size after
    a checkpoint, is truncated, so a queue whose backlog drained resumes pulling by itself on any disk
    where its own reclaimable space satisfies the floor. A failure (disk completely full, a reader
    holding the WAL) is logged and retried on the next check; nothing is lost either way.
    """
    before = free_bytes(conn, limits)
    deleted = 0
    try:
        # PASSIVE first: the WAL becomes reusable without shrinking, so deleting pages writes into
        # space the WAL already holds; then TRUNCATE hands the WAL's space back to the file system
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        deleted = housekeeper.run(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        log.warning("queue_reclaim_failed", error=str(exc), detail="retried at the next check")
    free = free_bytes(conn, limits)
    if free != before or deleted:
        log.info(
            "queue_space_reclaimed",
            pages_deleted=deleted,
            free_mb_before=round(before / MB, 1),
            free_mb_after=round(free / MB, 1),
            min_free_disk_mb=limits.min_free // MB,
        )
    return free


def _reclaim_retained(
    conn: sqlite3.Connection, limits: Limits, pages: PageLog, delivery_floor: int, free: int
) -> int:
    """Under the disk floor, retention yields first: delete the oldest retained (delivered) pages, a
    bounded step at a time, until free space is back above the floor or none is left. Returns the
    free bytes after it."""
    total = 0
    while free < limits.min_free:
        deleted = delete_passed_pages(conn, delivery_floor, max_pages=64)
        if not deleted:
            break
        total += deleted
        pages.forget(deleted)
        free = free_bytes(conn, limits)
    if total:
        oldest = first_stored_seq(conn)
        log.warning(
            "queue_retention_reclaimed",
            pages=total,
            reason=f"free disk under min_free_disk_mb={limits.min_free // MB}",
            oldest_retained_seq=oldest,
            detail="retained (already delivered) pages were deleted, oldest first, to keep the disk "
            "floor; replays cannot reach them any more",
        )
    return free


def pull_verdict(
    conn: sqlite3.Connection,
    limits: Limits,
    pages: PageLog,
    state: QueueState,
    replays: Mapping[int, int],
    housekeeper: Housekeeper,
) -> tuple[bool, str, str]:
    """(may pull, why not, the kind of "why not") after reclaiming what the floor allows: a destination
    at max_events, or free disk under the floor even after reclaiming the queue's own space."""
    for dest in sorted(state.cursors):
        depth = state.depth(dest)
        if depth >= limits.max_events:
            return (
                False,
                f"destination {dest} has {depth} undelivered events (queue_max_events={limits.max_events})",
                f"cap:{dest}",
            )
    free = free_bytes(conn, limits)
    if free < limits.min_free and limits.retain > 0:
        delivery_floor = min([*state.cursors.values(), *replays.values()], default=state.head)
        free = _reclaim_retained(conn, limits, pages, delivery_floor, free)
    if free < limits.min_free or not _wal_fits(limits, pages.largest_page):
        free = _reclaim(conn, limits, housekeeper)
    if free < limits.min_free or not _wal_fits(limits, pages.largest_page):
        # name the limit that was not met: the floor, or else the WAL's room for the next page
        short = (
            f"under min_free_disk_mb={limits.min_free // MB}"
            if free < limits.min_free and limits.min_free > 0
            else f"too little for the queue's write-ahead log to take the next page (the file system has "
            f"{limits.disk_free(limits.data_dir) / MB:.1f} MB free; the log holds {_wal_size(limits) / MB:.1f} "
            f"MB and grows to {limits.wal_cap / MB:.1f} MB plus the largest page, "
            f"{pages.largest_page / MB:.1f} MB); free space on that file system or move data_dir"
        )
        return (
            False,
            f"free disk space for {limits.data_dir} is {max(0, free) / MB:.1f} MB, {short}",
            "disk",
        )
    return True, "", ""
