"""Space: what the queue keeps, when it stops the source for room, and how it gives disk space back.

Backpressure: `max_events` per destination bounds how far a down destination can fall behind;
`min_free` is an absolute floor of free disk (free pages inside the file count as free, the WAL's size
and a missing part of the disk reserve as used). Under the floor, retained pages yield first, then
delivered pages are deleted and the WAL truncated; only if that is not enough does pulling pause. Nothing
is ever dropped to make room. The reasons for the defaults are in docs/architecture.md.

Invariants
----------
* the keep floor is the lowest of every cursor and running replay position (with retention, lowered to
  the first page committed within it, see `housekeeping.retention_floor`): no page at or above it is
  deleted, so nothing undelivered is ever lost to make room.
* the floor holds before a write, not after: a page is committed only if the file system keeps at least
  `min_free` bytes free once the page, its index rows, the WAL's growth and the checkpoint's growth of the
  database are written (`ensure_room`, estimated from the page's size); otherwise nothing is written and
  pulling pauses (the checkpoint did not move, the page is fetched again later).
* room to recover: the disk reserve (`reserve`) holds space for acks, housekeeping and WAL truncation
  whatever else fills the disk; while it is not whole, pulling stays paused and the queue's own
  reclaimable space is handed back to the file system until the reserve can be allocated again.
* every function here runs on the store's worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from siemconn.errors import QueueNoRoomError
from siemconn.logging import get_logger
from siemconn.queue.diskfull import DiskFull, recovery_write
from siemconn.queue.housekeeping import (
    delete_passed_pages,
    first_stored_seq,
    free_pages_bytes,
    retention_floor,
)
from siemconn.queue.opening import QueueState
from siemconn.queue.pagelog import PageLog
from siemconn.queue.reserve import DiskReserve, out_of_space
from siemconn.queue.schema import DB_FILE, MB
from siemconn.queue.transaction import rollback

__all__ = [
    "Housekeeper",
    "Limits",
    "bound_wal",
    "ensure_room",
    "free_bytes",
    "keep_floor",
    "no_room",
    "page_cost",
    "pull_verdict",
    "under_floor",
]

log = get_logger(__name__)


@dataclass(slots=True)
class Limits:
    """The caps of one open queue (a reload may change the first three) and where its disk is measured."""

    max_events: int  # undelivered (and retained) events per destination
    min_free: int  # bytes of free disk the queue leaves
    retain: float  # seconds delivered pages are kept (0: reclaimed once every destination passed them)
    data_dir: Path
    disk_free: Callable[[Path], int]  # free bytes on the file system holding a path
    reserve: DiskReserve
    wal_cap: int = 1000 * 4096  # bytes the WAL grows to before it is reused (set by bound_wal)

    wal_path: Path = field(init=False)

    def __post_init__(self) -> None:
        # built once and kept: a Path built anew at every check interns its parts again each time, which
        # churned Python's table of interned strings until it doubled (ops/heartbeat.py, issue 30)
        self.wal_path = self.data_dir / f"{DB_FILE}-wal"

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
        self._failing: str | None = None  # the error of a failing reclaim, logged once until it recovers

    def note_failure(self, error: str | None) -> bool:
        """Record whether reclaiming failed (`error`) or worked again (None); True when a failure is new
        (log it then, not at every check)."""
        new = error is not None and self._failing is None
        self._failing = error
        return new

    def floor_of(self, conn: sqlite3.Connection, state: QueueState) -> int:
        """The keep floor of `state` (the queue's, or the one a reload just loaded)."""
        lim = self._limits
        return keep_floor(conn, state.cursors, state.head, self._replays, lim.retain, lim.max_events)

    @recovery_write
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


@recovery_write
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
    return limits.disk_free(limits.data_dir) + inside - wal - limits.reserve.deficit()


def _next_page_fits(conn: sqlite3.Connection, limits: Limits, pages: PageLog) -> bool:
    """Whether a page as large as the largest so far would leave the floor (see `room_after`)."""
    return not pages.largest_page or room_after(conn, limits, pages.largest_page, 0) >= limits.min_free


_WAL_HEADER = 32
_FRAME_HEADER = 24


def page_cost(nbytes: int, nevents: int, page_size: int) -> int:
    """SQLite pages one stored API page of `nbytes` payload text takes: its overflow chain (the payloads,
    the id list, the row's other columns), the table leaf, the two index leaves and page 1."""
    row = nbytes + 12 * nevents + 256
    return -(-row // (page_size - 4)) + 4


def room_after(conn: sqlite3.Connection, limits: Limits, nbytes: int, nevents: int) -> int:
    """Free bytes the file system keeps once a page of `nbytes` (and `nevents` events) is stored.

    Counted on the file system itself, before anything is written: the WAL's growth (a fully checkpointed
    WAL is rewritten from its start, so only the part beyond its current size is new; otherwise every
    frame is appended) plus the database's growth when the frames are checkpointed (less the free pages
    inside it, which are reused first), plus any missing part of the disk reserve.
    """
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = page_cost(nbytes, nevents, page)
    frames = pages * (page + _FRAME_HEADER)
    _busy, logged, backfilled = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    wal = _wal_size(limits)
    wal_growth = max(0, _WAL_HEADER + frames - wal) if logged == backfilled else frames
    inside = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    db_growth = max(0, pages - inside) * page
    return limits.disk_free(limits.data_dir) - limits.reserve.deficit() - wal_growth - db_growth


def ensure_room(conn: sqlite3.Connection, limits: Limits, nbytes: int, nevents: int) -> None:
    """Raise QueueNoRoomError unless a page of `nbytes` (and `nevents` events) leaves `min_free` free
    on the file system (see `room_after`); nothing is written then."""
    after = room_after(conn, limits, nbytes, nevents)
    if after < limits.min_free:
        raise QueueNoRoomError(
            f"{no_room(limits, after, f'the next page ({nbytes / MB:.2f} MB of events)')}; the page was not "
            "stored and is fetched again when there is room"
        )


def _human(n: int) -> str:
    """Bytes as KB under a megabyte, else MB with one decimal."""
    return f"{max(0, n) / 1024:.0f} KB" if n < MB else f"{n / MB:.1f} MB"


def under_floor(limits: Limits, free: int) -> str:
    """Why free space `free` (as `free_bytes` counts it) pauses pulling, in words that never contradict
    themselves: a negative figure means the WAL and a missing reserve take more than the disk has free."""
    if free < 0:
        return (
            f"no free disk space for {limits.data_dir}: the queue's WAL and disk reserve need "
            f"{-free / MB:.1f} MB more than the file system has free (min_free_disk_mb={limits.min_free // MB})"
        )
    return (
        f"free disk space for {limits.data_dir} is {free / MB:.1f} MB, under min_free_disk_mb="
        f"{limits.min_free // MB}"
    )


def no_room(limits: Limits, after: int, what: str) -> str:
    """Why `what` does not fit: free space `after` it would be under the floor, or it would not fit at all
    (never "0.0 MB, under min_free_disk_mb=0")."""
    if after < 0:
        return (
            f"the disk holding {limits.data_dir} has no room for {what}: {-after / MB:.1f} MB short, with "
            f"min_free_disk_mb={limits.min_free // MB} kept free"
        )
    return (
        f"free disk space for {limits.data_dir} would be {after / MB:.1f} MB after {what}, under "
        f"min_free_disk_mb={limits.min_free // MB}"
    )


def _reclaim(conn: sqlite3.Connection, limits: Limits, housekeeper: Housekeeper, disk: DiskFull) -> int:
    """Under the disk floor: hand the queue's own reclaimable space back, return the free bytes then.

    Delivered pages not yet cleared are deleted (housekeeping) and the WAL, which keeps its size after
    a checkpoint, is truncated, so a queue whose backlog drained resumes pulling by itself on any disk
    where its own reclaimable space satisfies the floor. A disk too full for these writes releases the
    disk reserve and tries once more. A failure (a reader holding the WAL, a disk full even so) is logged
    once per condition and retried on the next check; nothing is lost either way.
    """
    before = free_bytes(conn, limits)
    deleted = 0
    for attempt in (1, 2):
        try:
            # PASSIVE first: the WAL becomes reusable without shrinking, so deleting pages writes into
            # space the WAL already holds; then TRUNCATE hands the WAL's space back to the file system
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            deleted += housekeeper.run(conn)
            _give_back(conn)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            housekeeper.note_failure(None)
            break
        except sqlite3.Error as exc:
            rollback(conn)
            disk_free = limits.disk_free(limits.data_dir)
            full = out_of_space(exc, disk_free)
            released = limits.reserve.release() if full else 0
            if full:
                disk.began("housekeeping", disk_free, released)
            if attempt == 2 or not released:
                if housekeeper.note_failure(str(exc)):
                    log.warning("queue_reclaim_failed", error=str(exc), detail="retried at every check")
                break
    free = free_bytes(conn, limits)
    # a line when something was given back, not for the small changes of every check while paused
    if deleted or free - before >= MB:
        log.info(
            "queue_space_reclaimed",
            pages_deleted=deleted,
            free_mb_before=round(before / MB, 1),
            free_mb_after=round(free / MB, 1),
            min_free_disk_mb=limits.min_free // MB,
        )
    return free


def _give_back(conn: sqlite3.Connection) -> None:
    """Under the floor: return the free pages inside the database to the file system in small steps (each
    moves at most this much through the WAL, which is then truncated), so that the reserve can be allocated
    again, and the next page's WAL frames fit, from the queue's own space."""
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    step = max(1, _GIVE_BACK_STEP // page)
    for _ in range(_GIVE_BACK_STEPS):
        if not int(conn.execute("PRAGMA freelist_count").fetchone()[0]):
            return
        conn.execute(f"PRAGMA incremental_vacuum({step})").fetchall()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


_GIVE_BACK_STEP = 256 * 1024
_GIVE_BACK_STEPS = 256


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
    disk: DiskFull,
) -> tuple[bool, str, str]:
    """(may pull, why not, the kind of "why not") after reclaiming what the floor allows: a destination
    at max_events, free disk under the floor even after reclaiming the queue's own space, or a disk
    reserve that cannot be allocated again yet (the disk filled up)."""
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
    reserve = limits.reserve
    if free < limits.min_free or not reserve.whole or not _next_page_fits(conn, limits, pages):
        free = _reclaim(conn, limits, housekeeper, disk)
    if not reserve.whole and not reserve.refill(limits.min_free):
        return (
            False,
            f"the disk holding {limits.data_dir} is full: {_human(limits.disk_free(limits.data_dir))} free, "
            f"and the disk reserve ({_human(reserve.size)}) plus min_free_disk_mb={limits.min_free // MB} do "
            "not fit yet",
            "disk",
        )
    free = free_bytes(conn, limits)
    if free < limits.min_free:
        return False, under_floor(limits, free), "disk"
    if pages.largest_page and (after := room_after(conn, limits, pages.largest_page, 0)) < limits.min_free:
        largest = f"a page as large as the largest so far ({pages.largest_page / MB:.2f} MB)"
        return False, no_room(limits, after, largest), "disk"
    disk.ended(free)
    return True, "", ""
