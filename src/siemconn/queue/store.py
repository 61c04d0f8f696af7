"""The store: the durable queue's engine, the only shared state of siemconn and the only place progress
is recorded.

Why this exists: a connector that saves its checkpoint before its events are delivered loses events on a
kill or a syslog outage. Here a checkpoint moves only when the events of its page are durably stored, and
an event leaves the queue for a destination only after that destination acked it. Nothing is ever dropped
to make room: when full, the queue stops the source (backpressure).

Invariants
----------
* one page log row per API page; one INSERT = one durable commit (WAL, synchronous=FULL) per page.
* the checkpoint is DERIVED from what is queued: checkpoint(key) = max(next_checkpoint of the key's queued
  pages, the value folded into the side table `checkpoints`), so "events + checkpoint" are atomic by
  construction. The same holds for the dedupe high-water mark (max committed event id per key).
* each destination has a durable cursor (a sequence number) in the side table `cursors` of the same file;
  read_batch is an index range read, so its cost does not depend on the backlog. Reading never moves a
  cursor; ack() does, in read order only.
* the read side never decodes payloads: a `Batch` holds `Segment`s of stored bytes.
* all SQLite work runs on ONE worker thread; the asyncio loop never blocks on disk.
* the object is built only after the file is open and its state loaded (`DurableQueue.open`), so a
  DurableQueue is always a usable, fully initialised queue until close().

Dedupe: event ids are monotonic per key. commit_page drops events whose integer `id` is <= the key's
high-water mark (a re-fetch of an overlapping page after a crash); events without an integer id are kept.

Routing: a destination may take only some streams (`routes`); pages are still stored once and its cursor
steps over the pages of other streams (see `routing` for the invariants). Its depth counts only its own
streams' events.

Snapshot streams (health, lockdown) commit with `dedupe=False` (their entries carry ids that are not a
cursor) and may commit a `state` text with a page, in the same transaction (`stream_state(key)` reads it).

Fan-out: a destination in the config but not in the queue (newly added) starts from "now", the current
head: it does not receive the backlog that other destinations still hold (logged at open). A destination
in the queue but no longer in the config has its cursor dropped at open, with a warning naming how many
events it still had undelivered; those events are then reclaimed once the other destinations pass them.

Backpressure: `max_events` per destination bounds how far a down destination can fall behind;
`min_free_disk_mb` is an absolute floor of free disk (free pages inside the file count as free, the WAL's size
as used; under the floor, delivered pages are deleted and the WAL truncated before pulling pauses). The
reasons for the defaults are in docs/architecture.md.

Everything here raises only siemconn.errors.Queue*Error: QueueCorruptError (names the file and the fix,
never a silent reset), QueueLockedError (a second process on the same data_dir) and
QueueUnavailableError (permissions, read-only, disk full).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from siemconn.errors import QueueError
from siemconn.logging import get_logger
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.queue.batch import Batch
from siemconn.queue.datadir import default_disk_free, release_lock
from siemconn.queue.encoder import EVENT_ID_FIELD, I64_MAX, I64_MIN, encode_event, event_id
from siemconn.queue.errors import classify_sqlite_error
from siemconn.queue.housekeeping import delete_passed_pages, free_pages_bytes
from siemconn.queue.opening import QueueState, close_opened, open_file
from siemconn.queue.pagelog import PageLog
from siemconn.queue.quarantine import Rejected, insert_rejected, raw_json, rejected_from_exception
from siemconn.queue.reader import PageReader
from siemconn.queue.routing import next_taken_page, normalise_routes, stream_of, taken_events, taken_keys
from siemconn.queue.schema import DB_FILE, MB, NO_CHECKPOINT, PAGE_TABLE

__all__ = ["DurableQueue"]

log = get_logger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _CommitResult:
    """What one commit_page did with the page's events (for the log lines and the counters)."""

    kept: int
    duplicates: int
    dup_min: int | None
    dup_max: int | None
    hwm: int | None  # the high-water mark the duplicates were measured against
    quarantined: list[Rejected]


def _reject_parsed(event: Mapping[str, Any], exc: BaseException) -> Rejected:
    """A parsed event the encoder cannot write, with its JSON text re-encoded without recursion."""
    try:
        raw = raw_json(event)
    except Exception:  # pragma: no cover - parsed JSON always re-encodes
        raw = b""
    return rejected_from_exception(raw, exc, event.get(EVENT_ID_FIELD))


def _int_id(r: Rejected) -> int | None:
    """The integer id of a quarantined event (it counts towards the dedupe high-water mark), or None."""
    if r.event_id is None or not r.event_id.lstrip("-").isdigit():
        return None
    v = int(r.event_id)
    return v if I64_MIN <= v <= I64_MAX else None


class DurableQueue:
    """Pages of events on disk, a derived checkpoint per key and a cursor per destination. See module doc.

    Create it with `await DurableQueue.open(...)`; the constructor only assembles an already opened file.
    """

    def __init__(
        self,
        *,
        executor: ThreadPoolExecutor,
        data_dir: Path,
        pages: PageLog,
        lock_fd: int,
        state: QueueState,
        max_events: int,
        min_free_disk_mb: int,
        disk_free: Callable[[Path], int],
        housekeeping_every: int,
        metrics: Metrics,
    ) -> None:
        self._executor = executor
        self.data_dir = data_dir
        self.db_path = data_dir / DB_FILE
        self._wal_path = data_dir / f"{DB_FILE}-wal"
        self._wal_cap = 1000 * 4096  # bytes the WAL grows to before it is reused (set by _bound_wal)
        self._largest_page = 0  # bytes of the largest page committed by this process
        self._pages: PageLog | None = pages
        self._conn: sqlite3.Connection | None = pages.connection
        self._lock_fd: int | None = lock_fd
        self._closed = False
        self._max_events = max_events
        self._min_free = min_free_disk_mb * MB
        self._disk_free = disk_free
        self._housekeeping_every = max(1, housekeeping_every)
        self._metrics = metrics
        # state below is mutated only on the worker thread (reads of single ints from the loop are safe)
        self._head = state.head
        self._cursors = state.cursors
        self._checkpoints = state.checkpoints
        self._hwm = state.hwm
        self._polls = state.polls
        self._free_pages_bytes = state.free_pages_bytes
        self._routes = state.routes
        self._pending = state.pending  # routed destinations only
        self._stream_state = state.stream_state
        self._acks_since_housekeeping = 0
        self._pull_state: tuple[bool, str] = (True, "")
        self._data_events: dict[str, asyncio.Event] = {d: asyncio.Event() for d in state.cursors}
        self._reader = PageReader()  # worker thread only

        for key, cp in self._checkpoints.items():
            metrics.checkpoint.labels(key).set(cp)
        for dest in self._cursors:
            self._report_depth(dest)

    def _report_depth(self, destination: str) -> None:
        """The one place the queue_depth gauge is set: whenever the head or a cursor moves."""
        self._metrics.queue_depth.labels(destination).set(self._depth_of(destination))

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        destinations: list[str],
        *,
        max_events: int = 5_000_000,
        min_free_disk_mb: int = 256,
        disk_free: Callable[[Path], int] | None = None,
        housekeeping_every: int = 64,
        metrics: Metrics = NO_METRICS,
        routes: Mapping[str, Collection[str] | None] | None = None,
    ) -> DurableQueue:
        """Open (or create) the queue in data_dir for these destinations. Raises Queue*Error.

        `routes`: destination -> the streams it takes; a destination not in it takes every stream.
        """
        data_dir = Path(data_dir)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siemconn-queue")
        opening = executor.submit(
            open_file, data_dir, list(destinations), normalise_routes(destinations, routes)
        )
        try:
            pages, lock_fd, state = await asyncio.wrap_future(opening)
        except BaseException:
            # cancelled while the worker still opens: wait for it, then close what it opened
            executor.shutdown(wait=True)
            if not opening.cancelled() and opening.exception() is None:
                close_opened(*opening.result()[:2])
            raise
        queue = cls(
            executor=executor,
            data_dir=data_dir,
            pages=pages,
            lock_fd=lock_fd,
            state=state,
            max_events=max_events,
            min_free_disk_mb=min_free_disk_mb,
            disk_free=disk_free or default_disk_free,
            housekeeping_every=housekeeping_every,
            metrics=metrics,
        )
        await queue._run(queue._guard, queue._bound_wal)
        return queue

    def _bound_wal(self) -> None:
        """Checkpoint the WAL often enough that it stays well under the disk floor (SQLite's default lets
        it grow to 1,000 pages, 4 MB, before it is reused; on a small floor that alone would eat it)."""
        page = int(self._db().execute("PRAGMA page_size").fetchone()[0])
        pages = max(16, min(1000, self._min_free // 4 // page))
        self._db().execute(f"PRAGMA wal_autocheckpoint={pages}").fetchall()
        self._wal_cap = pages * page

    async def close(self) -> None:
        """Flush housekeeping, close the database and release the data_dir lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for ev in self._data_events.values():
            ev.set()
        try:
            await self._run(self._close_sync)
        finally:
            self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        try:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._housekeeping()
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if self._pages is not None:
                self._pages.close()
        finally:
            self._pages = None
            self._conn = None
            if self._lock_fd is not None:
                release_lock(self._lock_fd)
                self._lock_fd = None

    # ------------------------------------------------------------------ helpers

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed and fn != self._close_sync:
            raise QueueError(f"queue {self.db_path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise QueueError(f"queue {self.db_path} is closed")
        return self._conn

    def _guard(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            conn = self._conn
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise classify_sqlite_error(exc, self.db_path) from exc

    def _depth_of(self, destination: str) -> int:
        """Undelivered events of destination (a routed one: of its streams only)."""
        if self._routes.get(destination) is None:
            return self._head - self._cursor_of(destination)
        return self._pending[destination]

    def _takes(self, destination: str, key: str) -> bool:
        streams = self._routes.get(destination)
        return streams is None or stream_of(key) in streams

    def _cursor_of(self, destination: str) -> int:
        try:
            return self._cursors[destination]
        except KeyError:
            raise QueueError(
                f"unknown destination {destination!r}; the queue was opened for {sorted(self._cursors)}"
            ) from None

    # ------------------------------------------------------------------ source side

    async def commit_page(
        self,
        key: str,
        events: Sequence[Mapping[str, Any]],
        next_checkpoint: int | None,
        rejects: Sequence[Rejected] = (),
        *,
        state: str | None = None,
        dedupe: bool = True,
    ) -> int:
        """Store one API page and its checkpoint in one durable commit. Returns events kept after dedupe.

        Every event ends in exactly one of three places, all in that one commit: queued, quarantined
        (`rejects`, plus any event that cannot be encoded) or counted and logged as a duplicate (an integer
        id at or below the key's high-water mark). `next_checkpoint` None (a first run whose answer gave no
        usable checkpoint) stores the events and leaves the key without a checkpoint. `state`, if given,
        replaces the key's stream state in the same transaction. `dedupe=False` keeps every event (for
        streams whose ids are not a cursor).
        """
        if not key:
            raise ValueError("commit_page: empty key")
        cp = None if next_checkpoint is None else int(next_checkpoint)
        result: _CommitResult = await self._run(
            self._guard, self._commit_sync, key, events, cp, list(rejects), state, dedupe
        )
        if result.kept:
            for d, ev in self._data_events.items():
                if self._takes(d, key):
                    ev.set()
        self._report_commit(key, result)
        if key in self._checkpoints:
            self._metrics.checkpoint.labels(key).set(self._checkpoints[key])
        for d in self._cursors:
            self._report_depth(d)
        return result.kept

    async def stream_state(self, key: str) -> str | None:
        """The state last committed with a page of key (`commit_page(..., state=...)`), or None."""
        return self._stream_state.get(key)

    def _report_commit(self, key: str, result: _CommitResult) -> None:
        if result.duplicates:
            log.info(
                "duplicate_events_dropped",
                stream=key,
                count=result.duplicates,
                first_id=result.dup_min,
                last_id=result.dup_max,
                high_water_mark=result.hwm,
                detail="ids at or below the highest id already queued for this stream are not queued again",
            )
            self._metrics.events_duplicate.labels(key).inc(result.duplicates)
        for r in result.quarantined:
            log.error(
                "event_quarantined",
                stream=key,
                event_id=r.event_id,
                reason=r.reason,
                detail=r.detail,
                raw_bytes=len(r.raw),
                hint="kept in the queue database; see it with: siemconn quarantine export",
            )
            self._metrics.events_quarantined.labels(key, r.reason).inc()

    def _commit_sync(
        self,
        key: str,
        events: Sequence[Mapping[str, Any]],
        next_checkpoint: int | None,
        rejects: list[Rejected],
        state: str | None = None,
        dedupe: bool = True,
    ) -> _CommitResult:
        if self._pages is None:
            raise QueueError(f"queue {self.db_path} is closed")
        hwm = self._hwm.get(key)
        payloads: list[str] = []
        ids: list[int | None] = []
        dup_ids: list[int] = []
        encode = encode_event
        add_payload, add_id = payloads.append, ids.append
        for event in events:
            v = event.get(EVENT_ID_FIELD)
            eid = v if type(v) is int and I64_MIN <= v <= I64_MAX else event_id(event)
            if dedupe and eid is not None and hwm is not None and eid <= hwm:
                dup_ids.append(eid)
                continue
            try:
                add_payload(encode(event))
            except Exception as exc:  # one event the encoder cannot write: quarantine it, keep the page
                rejects.append(_reject_parsed(event, exc))
                continue
            add_id(eid)
        prev = self._checkpoints.get(key)
        if next_checkpoint is None:
            new_cp = prev
        else:
            new_cp = next_checkpoint if prev is None else max(prev, next_checkpoint)
        if dedupe:
            reject_ids = [i for i in map(_int_id, rejects) if i is not None]
            known = [i for i in ids if i is not None]
            top = max(known + reject_ids) if known or reject_ids else None
        else:
            top = None
        new_hwm = hwm if top is None else (top if hwm is None else max(hwm, top))
        result = _CommitResult(
            len(payloads),
            len(dup_ids),
            min(dup_ids) if dup_ids else None,
            max(dup_ids) if dup_ids else None,
            hwm,
            rejects,
        )
        first_seq = self._head
        new_head = first_seq + len(payloads)
        # routed destinations with nothing of their own pending step over a page they do not take, in the
        # page's own transaction (routing's invariant: pending == 0 implies cursor == head)
        stepped = (
            [
                d
                for d, streams in self._routes.items()
                if streams is not None and stream_of(key) not in streams and self._pending[d] == 0
            ]
            if payloads
            else []
        )
        also: list[tuple[str, tuple[Any, ...]]] = [
            ("UPDATE cursors SET seq = ? WHERE destination = ?", (new_head, d)) for d in stepped
        ]
        if state is not None:
            also.append(
                (
                    "INSERT INTO stream_state (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, state),
                )
            )
        conn = self._db()
        cp_moved = new_cp is not None and new_cp != prev
        side = bool(rejects) or bool(also) or (not payloads and cp_moved)
        if not payloads and not side:
            return result
        now = time.time()
        inserted = False
        if side:
            conn.execute("BEGIN IMMEDIATE")
        try:
            if rejects:
                insert_rejected(conn, key, rejects, now)
            if payloads:
                stored_cp = NO_CHECKPOINT if new_cp is None else new_cp
                size = self._pages.put_page(payloads, key, first_seq, ids, stored_cp, now, also)
                inserted = True
                self._largest_page = max(self._largest_page, size)
            else:
                for sql, params in also:
                    conn.execute(sql, params)
            if side and (new_cp is not None or new_hwm is not None):
                conn.execute(
                    "INSERT INTO checkpoints (key, checkpoint, hwm) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                    "SET checkpoint = CASE WHEN excluded.checkpoint IS NULL THEN checkpoint "
                    "ELSE MAX(COALESCE(checkpoint, excluded.checkpoint), excluded.checkpoint) END, "
                    "hwm = CASE WHEN excluded.hwm IS NULL THEN hwm "
                    "ELSE MAX(COALESCE(hwm, excluded.hwm), excluded.hwm) END",
                    (key, new_cp, new_hwm),
                )
            if side:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if inserted:
                self._pages.total = max(0, self._pages.total - 1)
            raise
        if payloads:
            self._head = new_head
            for d in stepped:
                self._cursors[d] = new_head
            for d, streams in self._routes.items():
                if streams is not None and stream_of(key) in streams:
                    self._pending[d] += len(payloads)
        if state is not None:
            self._stream_state[key] = state
        if new_cp is not None:
            self._checkpoints[key] = new_cp
        if new_hwm is not None:
            self._hwm[key] = new_hwm
        return result

    async def quarantine(self, destination: str, stream: str, rejects: Sequence[Rejected]) -> None:
        """Durably keep events a destination cannot send (its formatter raised on them), before that
        destination acks the batch that holds them."""
        if not rejects:
            return
        await self._run(self._guard, self._quarantine_sync, destination, stream, list(rejects))
        for r in rejects:
            log.error(
                "event_quarantined",
                stream=stream,
                destination=destination,
                event_id=r.event_id,
                reason=r.reason,
                detail=r.detail,
                raw_bytes=len(r.raw),
                hint="not sent to this destination; kept in the queue database: siemconn quarantine export",
            )
            self._metrics.events_quarantined.labels(stream, r.reason).inc()

    def _quarantine_sync(self, destination: str, stream: str, rejects: list[Rejected]) -> None:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            insert_rejected(conn, stream, rejects, time.time(), destination)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    async def checkpoint(self, key: str) -> int | None:
        """The committed checkpoint of key (the `from` of the next fetch), or None before the first page."""
        return self._checkpoints.get(key)

    async def checkpoints(self) -> dict[str, int]:
        return dict(self._checkpoints)

    async def record_poll(self, key: str, when: float) -> None:
        """Remember (durably) the time of the last successful poll of key, for `siemconn status`."""
        await self._run(self._guard, self._record_poll_sync, key, when)

    def _record_poll_sync(self, key: str, when: float) -> None:
        self._db().execute(
            "INSERT INTO polls (key, at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET at = excluded.at",
            (key, when),
        )
        self._polls[key] = when

    def last_polls(self) -> dict[str, float]:
        return dict(self._polls)

    async def can_pull(self) -> tuple[bool, str]:
        """(False, reason) while a destination is at max_events or free disk is under the floor."""
        ok, reason, kind = await self._run(self._guard, self._can_pull_sync)
        if (ok, kind) != self._pull_state:
            if ok:
                log.info("queue_pull_resumed", detail="queue has room again; fetching resumes")
            else:
                log.warning("queue_pull_paused", reason=reason, detail="fetching paused; no event is dropped")
            self._pull_state = (ok, kind)
        return ok, reason

    def _can_pull_sync(self) -> tuple[bool, str, str]:
        for dest in sorted(self._cursors):
            depth = self._depth_of(dest)
            if depth >= self._max_events:
                return (
                    False,
                    f"destination {dest} has {depth} undelivered events "
                    f"(queue_max_events={self._max_events})",
                    f"cap:{dest}",
                )
        free = self._free_bytes()
        if free < self._min_free or not self._wal_fits():
            free = self._reclaim()
        if free < self._min_free or not self._wal_fits():
            return (
                False,
                f"free disk space for {self.data_dir} is {max(0, free) / MB:.1f} MB, under min_free_disk_mb="
                f"{self._min_free // MB}",
                "disk",
            )
        return True, "", ""

    def _free_bytes(self) -> int:
        """Free disk space as the floor sees it: free bytes on the file system, plus free pages inside the
        database (reused before it grows), minus the WAL file's size. A checkpoint copies the WAL's pages
        into the database, which may grow by up to that much while the WAL keeps its size; counting it as
        used keeps that growth inside the floor, so the disk never fills to the last byte, where not even
        the small write that acks a batch or deletes delivered pages can be made."""
        try:
            wal = os.stat(self._wal_path).st_size
        except OSError:
            wal = 0
        conn = self._db()
        free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        self._free_pages_bytes = free_pages * int(conn.execute("PRAGMA page_size").fetchone()[0])
        return self._disk_free(self.data_dir) + self._free_pages_bytes - wal

    def _wal_fits(self) -> bool:
        """Whether the file system itself (free pages inside the database do not count: new data goes to the
        WAL first) has room for the WAL to grow to its reuse point plus one more page."""
        try:
            wal = os.stat(self._wal_path).st_size
        except OSError:
            wal = 0
        return self._disk_free(self.data_dir) >= self._wal_cap + self._largest_page - wal

    def _reclaim(self) -> int:
        """Under the disk floor: hand the queue's own reclaimable space back, return the free bytes then.

        Delivered pages not yet cleared are deleted (housekeeping) and the WAL, which keeps its size after a
        checkpoint, is truncated, so a queue whose backlog drained resumes pulling by itself on any disk
        where its own reclaimable space satisfies the floor. A failure (disk completely full, a reader
        holding the WAL) is logged and retried on the next check; nothing is lost either way.
        """
        conn = self._db()
        before = self._free_bytes()
        deleted = 0
        try:
            # PASSIVE first: the WAL becomes reusable without shrinking, so deleting pages writes into
            # space the WAL already holds; then TRUNCATE hands the WAL's space back to the file system
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            deleted = self._housekeeping()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("queue_reclaim_failed", error=str(exc), detail="retried at the next check")
        free = self._free_bytes()
        if free != before or deleted:
            log.info(
                "queue_space_reclaimed",
                pages_deleted=deleted,
                free_mb_before=round(before / MB, 1),
                free_mb_after=round(free / MB, 1),
                min_free_disk_mb=self._min_free // MB,
            )
        return free

    # ------------------------------------------------------------------ sink side

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        """Up to max_events undelivered events for destination, in order. Does not advance; ack() does."""
        if max_events < 1:
            raise ValueError("read_batch: max_events must be >= 1")
        cur = self._cursor_of(destination)
        if cur >= self._head or not self._depth_of(destination):
            return None
        return await self._run(self._guard, self._read_sync, destination, max_events, None)

    async def read_batch_from(self, destination: str, start_seq: int, max_events: int) -> Batch | None:
        """Like read_batch, but starting at start_seq (>= the cursor): the batch after one not yet acked.

        Lets a writer read its next batch while the previous one is still being confirmed. Reading does
        not move anything; the batch can only be acked once every batch before it was acked.
        """
        if max_events < 1:
            raise ValueError("read_batch_from: max_events must be >= 1")
        cur = self._cursor_of(destination)
        if start_seq < cur:
            raise QueueError(f"read_batch_from {destination}: start {start_seq} is before the cursor {cur}")
        if start_seq >= self._head or not self._depth_of(destination):
            return None
        return await self._run(self._guard, self._read_sync, destination, max_events, start_seq)

    def _read_sync(self, destination: str, max_events: int, start_seq: int | None) -> Batch | None:
        cur = self._cursor_of(destination)
        if start_seq is not None:
            cur = max(cur, start_seq)
        if cur >= self._head:
            return None
        streams = self._routes.get(destination)
        if streams is not None:
            keys = taken_keys(self._checkpoints, streams)
            return self._reader.read_routed(self._db(), destination, cur, self._head, max_events, keys)
        return self._reader.read(self._db(), destination, cur, self._head, max_events)

    async def ack(self, batch: Batch) -> None:
        """Durably move batch.destination's cursor past the batch (one small commit)."""
        await self._run(self._guard, self._ack_sync, batch)
        self._report_depth(batch.destination)

    def _ack_sync(self, batch: Batch) -> None:
        cur = self._cursor_of(batch.destination)
        if batch.start_seq > cur:
            raise QueueError(
                f"ack of {batch.destination} events [{batch.start_seq}, {batch.end_seq}) would skip "
                f"events from {cur}; ack batches in the order they were read"
            )
        if batch.end_seq <= cur:
            return  # already acked (stale batch)
        end = min(batch.end_seq, self._head)
        dest = batch.destination
        streams = self._routes.get(dest)
        pending: int | None = None
        if streams is not None:
            if batch.start_seq == cur:
                pending = max(0, self._pending[dest] - sum(len(seg.payloads) for seg in batch.segments))
            else:  # a batch overlapping what was acked already: count from the file
                keys = taken_keys(self._checkpoints, streams)
                pending = taken_events(self._db(), end, keys)
            if pending == 0:
                end = self._head  # nothing of its own after the batch: step over the rest too
        self._db().execute("UPDATE cursors SET seq = ? WHERE destination = ?", (end, dest))
        self._cursors[dest] = end
        if pending is not None:
            self._pending[dest] = pending
        self._acks_since_housekeeping += 1
        if self._acks_since_housekeeping >= self._housekeeping_every:
            self._housekeeping()

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        """Return when destination has undelivered events (soon after a commit_page) or after timeout."""
        if self._depth_of(destination) > 0 or self._closed:
            return
        ev = self._data_events.setdefault(destination, asyncio.Event())
        ev.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    async def depth(self, destination: str) -> int:
        """Undelivered events for destination (a routed destination: of the streams it takes)."""
        return self._depth_of(destination)

    async def oldest_age(self, destination: str) -> float | None:
        """Seconds since the oldest undelivered event of destination was committed, or None if none."""
        return await self._run(self._guard, self._oldest_age_sync, destination)

    def _oldest_age_sync(self, destination: str) -> float | None:
        cur = self._cursor_of(destination)
        if cur >= self._head or not self._depth_of(destination):
            return None
        streams = self._routes.get(destination)
        if streams is not None:
            nxt = next_taken_page(self._db(), cur, taken_keys(self._checkpoints, streams))
            if nxt is None:
                return None
            cur = max(cur, nxt[0])
        row = (
            self._db()
            .execute(
                f"SELECT timestamp FROM {PAGE_TABLE} WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1",
                (cur,),
            )
            .fetchone()
        )
        return max(0.0, time.time() - float(row[0])) if row else None

    # ------------------------------------------------------------------ housekeeping

    async def housekeeping(self) -> int:
        """Delete pages every destination has passed now (also runs by itself every N acks). Returns pages."""
        return await self._run(self._guard, self._housekeeping)

    def _housekeeping(self) -> int:
        conn = self._db()
        self._acks_since_housekeeping = 0
        floor = min(self._cursors.values(), default=self._head)
        deleted = delete_passed_pages(conn, floor)
        if self._pages is not None:
            self._pages.total = max(0, self._pages.total - deleted)
        self._free_pages_bytes = free_pages_bytes(conn)
        return deleted
