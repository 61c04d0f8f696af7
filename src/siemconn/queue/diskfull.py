"""The disk-full condition: what the queue does when its file system has no space left.

Why this exists: whatever fills the disk (siemconn keeps its floor, but logs, a core dump or another
service may not), the writes that free space (an ack, deleting delivered pages, a WAL checkpoint) need a
little space themselves. `guard_write` gives them the disk reserve (`reserve`): a write that fails for
lack of space releases it and is tried once more. `open_releasing` does the same for opening the queue at
a start on a full disk. `DiskFull` is the condition the operator sees: one line when it starts, one when
it ends, and a gauge.

Invariants: a write is retried only after its transaction was rolled back, so it runs again from scratch;
only recovery writes (marked `recovery_write`, next to their definition) may use the reserve, never a page
commit; every function runs on the store's worker thread (or in the opening worker).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from siemconn.errors import QueueDiskFullError, QueueUnavailableError
from siemconn.logging import get_logger
from siemconn.queue.errors import classify_sqlite_error
from siemconn.queue.reserve import DiskReserve, out_of_space
from siemconn.queue.schema import MB
from siemconn.queue.transaction import rollback

__all__ = [
    "DiskFull",
    "free_on",
    "full_at_open",
    "guard_write",
    "may_use_reserve",
    "open_releasing",
    "recovery_write",
]

log = get_logger(__name__)

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., object])
_RESERVE_MARK = "_siemconn_may_use_reserve"


def recovery_write(fn: _F) -> _F:
    """Mark a queue write that must work on a full disk (an ack, the delivery record, housekeeping, replay
    progress, the WAL bound at open): `guard_write` lets it use the disk reserve. A page commit is never
    marked: pages must not eat the room kept for recovery."""
    setattr(fn, _RESERVE_MARK, True)
    return fn


def may_use_reserve(fn: object) -> bool:
    """Whether fn (a function or a bound method) was marked with `recovery_write`."""
    return bool(getattr(fn, _RESERVE_MARK, False))


class DiskFull:
    """The "disk full" condition of one queue: it starts when a write fails because the file system is
    full and ends when the disk reserve is whole again and the floor holds. One log line when it starts,
    one when it ends, and the gauge `siemconn_queue_disk_full` meanwhile: a line per failed write would
    only fill the disk further."""

    def __init__(self, data_dir: Path, gauge: Callable[[float], None]) -> None:
        self._data_dir = data_dir
        self._gauge = gauge
        self.since: float | None = None
        self.released = 0  # bytes of the reserve released during this condition

    def began(self, what: str, free: int, released: int) -> None:
        """A write (`what`) failed on a full disk; `released` bytes of the reserve were just freed."""
        self.released += released
        if self.since is not None:
            if released:
                log.info("queue_disk_reserve_released", released_mb=round(released / MB, 2), during=what)
            return
        self.since = time.time()
        self._gauge(1)
        log.error(
            "queue_disk_full",
            data_dir=str(self._data_dir),
            free_mb=round(max(0, free) / MB, 2),
            failed_write=what,
            reserve_released_mb=round(released / MB, 2),
            detail="the file system holding the queue is full. siemconn keeps recording acks and "
            "deleting delivered pages with its reserve, delivers its backlog to every reachable server, "
            "and pauses pulling until the reserve can be allocated again on top of min_free_disk_mb. "
            "Nothing is dropped. Fix: free space on that file system (df -h DATA_DIR)",
        )

    def ended(self, free: int) -> None:
        """The reserve is whole again and the floor holds (no-op when the condition is not on)."""
        if self.since is None:
            return
        log.info(
            "queue_disk_full_cleared",
            data_dir=str(self._data_dir),
            lasted_seconds=round(time.time() - self.since, 1),
            free_mb=round(max(0, free) / MB, 2),
            detail="the disk reserve is allocated again; pulling resumes",
        )
        self.since = None
        self.released = 0
        self._gauge(0)


def free_on(disk_free: Callable[[Path], int], path: Path) -> int:
    """Free bytes on the file system holding path (or its nearest existing parent); 0 if unknown."""
    for candidate in (path, *path.parents):
        try:
            return disk_free(candidate)
        except OSError:
            continue
    return 0


def guard_write(
    disk: DiskFull,
    reserve: DiskReserve,
    db_path: Path,
    conn: sqlite3.Connection | None,
    recover: bool,
    write: Callable[[], _T],
) -> _T:
    """`write()` on the queue's connection; sqlite3 and OS errors (the open transaction rolled back)
    become Queue*Error naming the file. A write that fails for lack of space starts the disk-full
    condition; with `recover` it releases the reserve and runs once more, otherwise (or if it fails
    again) QueueDiskFullError is raised."""
    released = False
    while True:
        try:
            return write()
        except (sqlite3.Error, OSError) as exc:
            rollback(conn)
            free = free_on(reserve.disk_free, db_path.parent)
            if not out_of_space(exc, free):
                raise classify_sqlite_error(exc, db_path) from exc
            freed = reserve.release() if recover and not released else 0
            disk.began(getattr(getattr(write, "func", write), "__name__", "write"), free, freed)
            if freed:
                released = True
                continue
            raise QueueDiskFullError(
                f"queue database {db_path}: the disk is full ({exc}); the write is retried (nothing is "
                "lost). Fix: free space on the file system holding it"
            ) from exc


def open_releasing(reserve: DiskReserve, released: list[int], open_file: Callable[[], _T]) -> _T:
    """Open the queue; on a (nearly) full disk the reserve is released first, or after an open that failed
    for lack of space, which is then tried once more. Appends the bytes released to `released`. Without a
    reserve to release, QueueDiskFullError says how much to free."""
    data_dir = reserve.path.parent
    if free_on(reserve.disk_free, data_dir) < reserve.size:
        released.append(reserve.release())
    for attempt in (1, 2):
        try:
            return open_file()
        except QueueUnavailableError as exc:
            if not out_of_space(exc.__cause__ or exc, free_on(reserve.disk_free, data_dir)):
                raise
            more = reserve.release() if attempt == 1 else 0
            if not more:
                raise full_at_open(reserve, exc) from exc
            released.append(more)
    raise AssertionError("unreachable")  # pragma: no cover


def full_at_open(reserve: DiskReserve, exc: Exception) -> QueueDiskFullError:
    """The error of a queue that cannot be opened because its disk is full and no reserve is left."""
    data_dir = reserve.path.parent
    free = free_on(reserve.disk_free, data_dir)
    return QueueDiskFullError(
        f"the queue in {data_dir} cannot be opened: the file system holding it is full ({free / MB:.2f} MB "
        f"free) and the disk reserve is used up ({exc}). Fix: free at least {2 * reserve.size // MB} MB on "
        f"that file system (df -h {data_dir}) and start siemconn again; every queued event is kept and "
        "delivered then"
    )
