"""Opening a DurableQueue: its worker thread, the file (`opening.open_file`, on that thread), the disk
reserve at a start on a full disk (`diskfull.open_releasing`) and the queue's limits, assembled before the
store object is built (so a DurableQueue is always a fully opened queue).

Invariants: on any failure nothing stays open or locked (`opening.open_in`); the keep floor used at open is
the one the running queue uses (cursors, running replays, retention).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from siemconn.queue import replay
from siemconn.queue.diskfull import open_releasing
from siemconn.queue.opening import QueueState, open_file, open_in
from siemconn.queue.pagelog import PageLog
from siemconn.queue.reserve import DiskReserve
from siemconn.queue.routing import normalise_routes
from siemconn.queue.schema import MB
from siemconn.queue.space import Limits, keep_floor

__all__ = ["Opened", "open_parts"]


@dataclass(frozen=True, slots=True)
class Opened:
    """What a DurableQueue is built from."""

    executor: ThreadPoolExecutor
    pages: PageLog
    lock_fd: int
    state: QueueState
    limits: Limits
    replays: dict[int, int]  # running replay -> position (shared with the store)
    released: int  # bytes of the disk reserve released to open on a full disk


async def open_parts(
    data_dir: Path,
    destinations: list[str],
    *,
    max_events: int,
    min_free_disk_mb: int,
    disk_free: Callable[[Path], int],
    routes: Mapping[str, Collection[str] | None] | None,
    retain_seconds: float,
    start_retained: Collection[str],
) -> Opened:
    """Open the file on a new worker thread; see `DurableQueue.open` for the arguments."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siemconn-queue")
    replays: dict[int, int] = {}
    reserve = DiskReserve(data_dir, disk_free)
    released: list[int] = []

    def floor_of(conn: sqlite3.Connection, state: QueueState) -> int:
        replays.update(replay.running_positions(conn))
        return keep_floor(conn, state.cursors, state.head, replays, retain_seconds, max_events)

    def do_open() -> tuple[PageLog, int, QueueState]:
        norm = normalise_routes(destinations, routes)
        return open_releasing(
            reserve,
            released,
            lambda: open_file(
                data_dir, list(destinations), norm, start_retained=start_retained, floor_of=floor_of
            ),
        )

    pages, lock_fd, state = await open_in(executor, do_open)
    limits = Limits(
        max_events=max_events,
        min_free=min_free_disk_mb * MB,
        retain=max(0.0, float(retain_seconds)),
        data_dir=data_dir,
        disk_free=disk_free,
        reserve=reserve,
    )
    return Opened(executor, pages, lock_fd, state, limits, replays, sum(released))
