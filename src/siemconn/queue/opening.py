"""Opening a queue file: every piece of I/O `DurableQueue.open` does before the object is built.

Invariants: on success the file is ours (application_id, schema version), writable (a write probe ran),
locked for this process, and the returned state matches the file (derived checkpoints and high-water
marks, one cursor per configured destination, passed pages deleted). On any failure, or a cancellation
while the worker opens, nothing stays open or locked.

Fan-out: a destination in the config but not in the queue (newly added) starts from "now", the current
head: it does not receive the backlog that other destinations still hold (logged), unless it is listed
in `start_retained`: then it starts with the pages still stored. A destination in the queue but no
longer in the config has its cursor dropped, with a warning naming how many events it still had
undelivered; those events are then reclaimed once the other destinations pass them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import dataclass, field, fields
from pathlib import Path

from siemconn.errors import QueueError
from siemconn.logging import get_logger
from siemconn.queue.datadir import is_new_database, prepare_data_dir, release_lock, take_lock
from siemconn.queue.errors import classify_sqlite_error, corrupt_error, newer_version_error
from siemconn.queue.housekeeping import delete_passed_pages, first_stored_seq, free_pages_bytes
from siemconn.queue.pagelog import PAGE_LOG_NAME, PageLog, PageSerializer
from siemconn.queue.routing import Routes, reconcile_routes, stream_of
from siemconn.queue.schema import (
    APPLICATION_ID,
    DB_FILE,
    MIGRATIONS,
    NO_CHECKPOINT,
    PAGE_TABLE,
    SCHEMA_VERSION,
    SIDE_TABLES,
    stored_head,
)
from siemconn.queue.transaction import transaction

__all__ = ["QueueState", "close_opened", "make_private", "open_file", "open_in", "prepare_state"]

_QUEUE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")

log = get_logger(__name__)


@dataclass(slots=True)
class QueueState:
    """What is read from the file at open; afterwards mutated only on the worker thread."""

    head: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    hwm: dict[str, int] = field(default_factory=dict)
    polls: dict[str, float] = field(default_factory=dict)
    free_pages_bytes: int = 0
    routes: Routes = field(default_factory=dict)  # destination -> streams it takes (None: all)
    pending: dict[str, int] = field(default_factory=dict)  # routed destinations: their undelivered events
    stream_state: dict[str, str] = field(default_factory=dict)  # key -> state committed with its pages

    def adopt(self, other: QueueState) -> None:
        """Take every field of other (the state a reload loaded), so this object stays the queue's one."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))

    def cursor(self, destination: str) -> int:
        """The destination's cursor; QueueError names the configured ones if it is not one of them."""
        try:
            return self.cursors[destination]
        except KeyError:
            raise QueueError(
                f"unknown destination {destination!r}; the queue was opened for {sorted(self.cursors)}"
            ) from None

    def depth(self, destination: str) -> int:
        """Undelivered events of destination (a routed one: of its streams only)."""
        if self.routes.get(destination) is None:
            return self.head - self.cursor(destination)
        return self.pending[destination]

    def takes(self, destination: str, key: str) -> bool:
        """Whether destination takes the stream of key."""
        streams = self.routes.get(destination)
        return streams is None or stream_of(key) in streams


def _load_state(conn: sqlite3.Connection) -> QueueState:
    state = QueueState()
    for key, cp, hwm in conn.execute("SELECT key, checkpoint, hwm FROM checkpoints"):
        if cp is not None:
            state.checkpoints[key] = int(cp)
        if hwm is not None:
            state.hwm[key] = int(hwm)
    for key, cp, hwm in conn.execute(
        f"SELECT key, MAX(NULLIF(next_checkpoint, ?)), MAX(last_event_id) FROM {PAGE_TABLE} GROUP BY key",
        (NO_CHECKPOINT,),
    ):
        if cp is not None:
            state.checkpoints[key] = max(int(cp), state.checkpoints.get(key, int(cp)))
        if hwm is not None:
            state.hwm[key] = max(int(hwm), state.hwm.get(key, int(hwm)))
    head = stored_head(conn)
    state.cursors = {d: int(s) for d, s in conn.execute("SELECT destination, seq FROM cursors")}
    state.head = max([head, *state.cursors.values()])
    state.polls = {k: float(v) for k, v in conn.execute("SELECT key, at FROM polls")}
    state.stream_state = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM stream_state")}
    return state


def _reconcile_destinations(
    conn: sqlite3.Connection,
    state: QueueState,
    destinations: list[str],
    new: bool,
    start_retained: Collection[str] = (),
) -> None:
    for dest in list(state.cursors):
        if dest not in destinations:
            pending = state.head - state.cursors[dest]
            conn.execute("DELETE FROM cursors WHERE destination = ?", (dest,))
            conn.execute("DELETE FROM destinations WHERE destination = ?", (dest,))
            del state.cursors[dest]
            log.warning(
                "queue_destination_removed",
                destination=dest,
                undelivered_events_dropped=pending,
                detail="no longer in the configuration; its cursor is dropped and it gets no more events",
            )
    oldest = first_stored_seq(conn)
    for dest in destinations:
        if dest not in state.cursors:
            retained = dest in start_retained and oldest is not None and oldest < state.head
            start = oldest if retained and oldest is not None else state.head
            conn.execute(
                "INSERT INTO cursors (destination, seq, added) VALUES (?, ?, ?)",
                (dest, start, time.time()),
            )
            state.cursors[dest] = start
            if not new:
                log.info(
                    "queue_destination_added",
                    destination=dest,
                    starts_at=start,
                    start_at="retained" if retained else "now",
                    detail=(
                        f"new destination starts with the {state.head - start} events still stored "
                        "(start_at retained)"
                        if retained
                        else "new destination starts from now; it does not receive the existing backlog"
                    ),
                )


def _precreate_private(db_path: Path) -> None:
    """Create the database file 0600 before SQLite opens it: SQLite gives the -wal and -shm files it creates
    the database file's mode (it fchmods them), so the queue files are private whatever the umask."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_private(db_path: Path) -> None:
    """chmod 0600 the database and its -wal, -shm and -journal files that exist (older files, or files
    created before this rule, may be 0644)."""
    for suffix in _QUEUE_FILE_SUFFIXES:
        path = db_path.with_name(db_path.name + suffix)
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def _migrate(conn: sqlite3.Connection, db_path: Path, version: int) -> None:
    """Bring a file of an older schema version to SCHEMA_VERSION in one transaction; refuse a newer one."""
    if version > SCHEMA_VERSION:
        raise newer_version_error(db_path, version)
    if version == SCHEMA_VERSION:
        return
    if version < 1 or any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
        raise corrupt_error(db_path, f"schema version {version}, this siemconn reads 1 to {SCHEMA_VERSION}")
    with transaction(conn):
        for v in range(version, SCHEMA_VERSION):
            for sql in MIGRATIONS[v]:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    log.info("queue_schema_migrated", database=str(db_path), from_version=version, to_version=SCHEMA_VERSION)


def prepare_state(
    conn: sqlite3.Connection,
    destinations: list[str],
    routes: Routes | None,
    *,
    new: bool = False,
    start_retained: Collection[str] = (),
    floor_of: Callable[[sqlite3.Connection, QueueState], int] | None = None,
) -> tuple[QueueState, int]:
    """Load the state from the file and reconcile it with the configured destinations and routes, then
    delete the pages below the floor (`floor_of(conn, state)`, default the lowest cursor). Used at open and by
    `DurableQueue.reconfigure` (a reload), on the worker thread. Returns (state, pages deleted)."""
    state = _load_state(conn)
    _reconcile_destinations(conn, state, destinations, new, start_retained)
    state.routes = {d: (routes or {}).get(d) for d in destinations}
    state.pending = reconcile_routes(conn, state.routes, state.cursors, state.head, state.checkpoints.keys())
    floor = floor_of(conn, state) if floor_of is not None else min(state.cursors.values(), default=state.head)
    deleted = delete_passed_pages(conn, floor)
    state.free_pages_bytes = free_pages_bytes(conn)
    return state, deleted


def open_file(
    data_dir: Path,
    destinations: list[str],
    routes: Routes | None = None,
    *,
    start_retained: Collection[str] = (),
    floor_of: Callable[[sqlite3.Connection, QueueState], int] | None = None,
) -> tuple[PageLog, int, QueueState]:
    """All of open's I/O (on the worker thread): lock, check, create, load, reconcile, housekeeping.

    Returns (page log, lock fd, state); on any failure nothing stays open or locked.
    """
    db_path = data_dir / DB_FILE
    prepare_data_dir(data_dir)
    lock_fd = take_lock(data_dir)
    pages: PageLog | None = None
    try:
        try:
            new = is_new_database(db_path)
            if new:
                _precreate_private(db_path)
            pages = PageLog(
                str(data_dir),
                name=PAGE_LOG_NAME,
                serializer=PageSerializer,
                db_file_name=DB_FILE,
                auto_commit=True,
            )
            conn = pages.connection
            if new:
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            _migrate(conn, db_path, int(conn.execute("PRAGMA user_version").fetchone()[0]))
            for sql in SIDE_TABLES:
                conn.execute(sql)
            make_private(db_path)
            # write probe: a read-only file or mount fails here, not at the first page
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('opened_at', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (time.time(),),
            )
            state, deleted = prepare_state(
                conn, destinations, routes, new=new, start_retained=start_retained, floor_of=floor_of
            )
            pages.forget(deleted)
        except (sqlite3.Error, OSError) as exc:
            raise classify_sqlite_error(exc, db_path) from exc
    except BaseException:
        close_opened(pages, lock_fd)
        raise
    log.info(
        "queue_opened",
        database=str(db_path),
        pages=pages.total,
        head=state.head,
        depth={d: state.pending.get(d, state.head - s) for d, s in state.cursors.items()},
        checkpoints=dict(state.checkpoints),
    )
    return pages, lock_fd, state


async def open_in(
    executor: Executor, do_open: Callable[[], tuple[PageLog, int, QueueState]]
) -> tuple[PageLog, int, QueueState]:
    """`do_open` (open_file with its arguments) on the executor's worker; if the caller is cancelled while
    the worker still opens, the executor is shut down (waiting for the worker) and what it opened is
    closed."""
    opening = executor.submit(do_open)
    try:
        return await asyncio.wrap_future(opening)
    except BaseException:
        executor.shutdown(wait=True)
        if not opening.cancelled() and opening.exception() is None:
            close_opened(*opening.result()[:2])
        raise


def close_opened(pages: PageLog | None, lock_fd: int) -> None:
    """Undo open_file: close the page log (if it was opened) and release the data_dir lock."""
    if pages is not None:
        with contextlib.suppress(sqlite3.Error):
            pages.close()
    release_lock(lock_fd)
