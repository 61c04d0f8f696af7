"""The store: the durable queue's engine, the only shared state of siemconn and the only place progress
is recorded.

Why this exists: a connector that saves its checkpoint before its events are delivered loses events on a
kill or a syslog outage. Here a checkpoint moves only when the events of its page are durably stored, and
an event leaves the queue for a destination only after that destination acked it. Nothing is ever dropped
to make room: when full, the queue stops the source (backpressure, see `space`).

Invariants
----------
* one page log row per API page; one INSERT = one durable commit (WAL, synchronous=FULL) per page.
* the checkpoint is DERIVED from what is queued: checkpoint(key) = max(next_checkpoint of the key's queued
  pages, the value folded into the side table `checkpoints`), so "events + checkpoint" are atomic by
  construction. The same holds for the dedupe high-water mark (max committed event id per key; see
  `commit` for dedupe).
* each destination has a durable cursor (a sequence number) in the side table `cursors` of the same file;
  reading never moves a cursor; ack() does, in read order only (see `delivery`).
* all SQLite work runs on ONE worker thread; the asyncio loop never blocks on disk. The in-memory state
  (`QueueState`) is mutated only there (reads of single ints from the loop are safe).
* the object is built only after the file is open and its state loaded (`DurableQueue.open`), so a
  DurableQueue is always a usable, fully initialised queue until close().

This module is the facade: the worker thread, the error mapping and the loop side (data events, metrics,
log lines). The SQL work is in `commit` (source side), `delivery` (sink side), `space` (caps, disk floor,
housekeeping) and `replay`; routing in `routing`, where added or removed destinations start in `opening`.

Everything here raises only siemconn.errors.Queue*Error: QueueCorruptError (names the file and the fix,
never a silent reset), QueueLockedError (a second process on the same data_dir) and
QueueUnavailableError (permissions, read-only, disk full).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from siemconn.errors import QueueError, QueueNoRoomError
from siemconn.events.batch import Batch
from siemconn.events.rejected import Rejected
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.queue import delivery, replay
from siemconn.queue.assemble import open_parts
from siemconn.queue.commit import commit_page, record_poll
from siemconn.queue.datadir import default_disk_free, release_lock
from siemconn.queue.diskfull import DiskFull, free_on, guard_write, may_use_reserve
from siemconn.queue.opening import QueueState, prepare_state
from siemconn.queue.pagelog import PageLog
from siemconn.queue.quarantine import QuarantineTally
from siemconn.queue.reader import PageReader
from siemconn.queue.replay import ReplayRequest
from siemconn.queue.report import report_commit, report_pull, report_quarantined
from siemconn.queue.routing import normalise_routes
from siemconn.queue.schema import DB_FILE
from siemconn.queue.space import Housekeeper, Limits, bound_wal, ensure_room, pull_verdict

__all__ = ["DurableQueue"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


class DurableQueue:
    """Pages of events on disk, a derived checkpoint per key and a cursor per destination. See module doc.

    Create it with `await DurableQueue.open(...)`; the constructor only assembles an already opened file.
    """

    def __init__(
        self,
        *,
        executor: ThreadPoolExecutor,
        pages: PageLog,
        lock_fd: int,
        state: QueueState,
        limits: Limits,
        housekeeping_every: int,
        metrics: Metrics,
        replay_positions: dict[int, int],
    ) -> None:
        self._executor = executor
        self.data_dir = limits.data_dir
        self.db_path = limits.data_dir / DB_FILE
        self._pages: PageLog | None = pages
        self._conn: sqlite3.Connection | None = pages.connection
        self._lock_fd: int | None = lock_fd
        self._closed = False
        self._limits = limits
        self._metrics = metrics
        self._replays = replay_positions  # running replay -> position
        self._state = state  # the one state object (a reload adopts into it); mutated on the worker only
        self._housekeeper = Housekeeper(limits, pages, state, replay_positions, housekeeping_every)
        self._disk = DiskFull(limits.data_dir, metrics.queue_disk_full.set)
        self._pull_state: tuple[bool, str] = (True, "")
        self._data_events: dict[str, asyncio.Event] = {d: asyncio.Event() for d in state.cursors}
        self._reader = PageReader()  # used on the worker thread only
        self._quarantine_tally = QuarantineTally()  # used on the worker thread only

        for key, cp in state.checkpoints.items():
            metrics.checkpoint.labels(key).set(cp)
        for dest in state.cursors:
            self._report_depth(dest)

    def _report_depth(self, destination: str) -> None:
        """The one place the queue_depth gauge is set: whenever the head or a cursor moves."""
        self._metrics.queue_depth.labels(destination).set(self._state.depth(destination))

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
        retain_seconds: float = 0.0,
        start_retained: Collection[str] = (),
    ) -> DurableQueue:
        """Open (or create) the queue in data_dir for these destinations. Raises Queue*Error.

        `routes`: destination -> the streams it takes; a destination not in it takes every stream.
        `retain_seconds`: keep delivered pages this long (0: reclaim them as soon as all passed them).
        `start_retained`: destinations that, when new, start with the stored pages instead of "now".
        """
        opened = await open_parts(
            Path(data_dir),
            destinations,
            max_events=max_events,
            min_free_disk_mb=min_free_disk_mb,
            disk_free=disk_free or default_disk_free,
            routes=routes,
            retain_seconds=retain_seconds,
            start_retained=start_retained,
        )
        limits = opened.limits
        queue = cls(
            executor=opened.executor,
            pages=opened.pages,
            lock_fd=opened.lock_fd,
            state=opened.state,
            limits=limits,
            housekeeping_every=housekeeping_every,
            metrics=metrics,
            replay_positions=opened.replays,
        )
        if opened.released:
            queue._disk.began(
                "opening the queue", free_on(limits.disk_free, limits.data_dir), opened.released
            )
        await queue._sql(bound_wal, limits)
        # a first start allocates the reserve; one released before is allocated again by the first
        # pull check that finds room for it (pulling waits for it)
        await queue._sql(lambda _conn: limits.reserve.refill(limits.min_free))
        return queue

    async def reconfigure(
        self,
        destinations: list[str],
        *,
        routes: Mapping[str, Collection[str] | None] | None = None,
        max_events: int | None = None,
        min_free_disk_mb: int | None = None,
        retain_seconds: float | None = None,
        start_retained: Collection[str] = (),
    ) -> None:
        """Apply a new configuration to the open queue (a reload), keeping the file and its lock: the
        destinations and routes are reconciled as at open (added ones start from now or the retained
        pages, removed ones are dropped and logged). Call it only while nothing reads, acks or commits.
        """
        self._limits.update(max_events, min_free_disk_mb, retain_seconds)
        norm = normalise_routes(destinations, routes)
        await self._sql(self._reconfigure_sync, list(destinations), norm, start_retained)
        for d in self._state.cursors:
            self._data_events.setdefault(d, asyncio.Event()).set()
            self._report_depth(d)
        for d in list(self._data_events):
            if d not in self._state.cursors:
                self._data_events.pop(d).set()

    def _reconfigure_sync(
        self,
        conn: sqlite3.Connection,
        destinations: list[str],
        routes: dict[str, frozenset[str] | None],
        start_retained: Collection[str],
    ) -> None:
        state, deleted = prepare_state(
            conn, destinations, routes, start_retained=start_retained, floor_of=self._housekeeper.floor_of
        )
        self._page_log().forget(deleted)
        self._state.adopt(state)
        self._reader.clear()

    async def close(self) -> None:
        """Flush housekeeping, close the database and release the data_dir lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for ev in self._data_events.values():
            ev.set()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        try:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._housekeeper.run(self._conn)
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

    async def _sql(
        self, fn: Callable[Concatenate[sqlite3.Connection, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """fn(connection, *args) on the worker thread; sqlite3 and OS errors (the open transaction rolled
        back) become Queue*Error naming the file. On a full disk, a write marked `recovery_write` uses
        the disk reserve; others raise QueueDiskFullError (see `diskfull.guard_write`)."""
        if self._closed:
            raise QueueError(f"queue {self.db_path} is closed")
        recover = may_use_reserve(fn)

        def guarded() -> _T:
            write = functools.partial(fn, self._db(), *args, **kwargs)
            return guard_write(self._disk, self._limits.reserve, self.db_path, self._conn, recover, write)

        return await asyncio.get_running_loop().run_in_executor(self._executor, guarded)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise QueueError(f"queue {self.db_path} is closed")
        return self._conn

    def _page_log(self) -> PageLog:
        if self._pages is None:
            raise QueueError(f"queue {self.db_path} is closed")
        return self._pages

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
        `events` are parsed objects, or `EncodedEvents` already in the stored form (queue.transcode).

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
        # the disk floor is checked before anything is written
        commit = functools.partial(commit_page, room=functools.partial(ensure_room, self._db(), self._limits))
        rows = list(rejects)
        try:
            result = await self._sql(
                commit, self._page_log(), self._state, key, events, cp, rows, state, dedupe
            )
        except QueueNoRoomError as exc:
            if self._pull_state != (False, "disk"):
                report_pull(False, str(exc))
                self._pull_state = (False, "disk")
            raise
        if result.kept:
            for d, ev in self._data_events.items():
                if self._state.takes(d, key):
                    ev.set()
        report_commit(self._metrics, key, result)
        checkpoints = self._state.checkpoints
        if key in checkpoints:
            self._metrics.checkpoint.labels(key).set(checkpoints[key])
        for d in self._state.cursors:
            self._report_depth(d)
        return result.kept

    async def stream_state(self, key: str) -> str | None:
        """The state last committed with a page of key (`commit_page(..., state=...)`), or None."""
        return self._state.stream_state.get(key)

    async def checkpoint(self, key: str) -> int | None:
        """The committed checkpoint of key (the `from` of the next fetch), or None before the first page."""
        return self._state.checkpoints.get(key)

    async def checkpoints(self) -> dict[str, int]:
        return dict(self._state.checkpoints)

    async def record_poll(self, key: str, when: float) -> None:
        """Remember (durably) the time of the last successful poll of key, for `siemconn status`."""
        await self._sql(record_poll, self._state, key, when)

    def last_polls(self) -> dict[str, float]:
        return dict(self._state.polls)

    async def can_pull(self) -> tuple[bool, str]:
        """(False, reason) while a destination is at max_events or free disk is under the floor."""
        ok, reason, kind = await self._sql(
            pull_verdict,
            self._limits,
            self._page_log(),
            self._state,
            self._replays,
            self._housekeeper,
            self._disk,
        )
        if (ok, kind) != self._pull_state:
            report_pull(ok, reason)
            self._pull_state = (ok, kind)
        return ok, reason

    # ------------------------------------------------------------------ replays

    async def pending_replays(self) -> list[ReplayRequest]:
        """Replay requests not finished yet (pending or running), oldest first."""
        return await self._sql(replay.unfinished_requests)

    async def start_replay(self, request: ReplayRequest) -> ReplayRequest:
        """Fix a pending request's page range ([oldest page committed in reach of `since`, head)) and mark
        it running; a running one is returned as stored. Raises QueueError if it cannot run (the caller
        marks it failed with the reason)."""
        return await self._sql(replay.start_request, self._state, request, self._replays)

    async def read_replay(self, request: ReplayRequest, pos: int, max_events: int) -> Batch | None:
        """The next batch of a running replay from `pos` (see `replay.read_window`)."""
        return await self._sql(replay.read_window, self._state, request, pos, max_events)

    async def replay_progress(self, replay_id: int, position: int, events: int) -> None:
        """Durably move a replay's position after its server accepted a batch."""
        await self._sql(replay.record_progress, self._replays, replay_id, position, events)

    async def finish_replay(self, replay_id: int, state: str, detail: str) -> None:
        """Mark a replay done or failed, with a one-line detail for `status`."""
        await self._sql(replay.finish_request, self._replays, replay_id, state, detail)

    # ------------------------------------------------------------------ sink side

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        """Up to max_events undelivered events for destination, in order. Does not advance; ack() does."""
        if max_events < 1:
            raise ValueError("read_batch: max_events must be >= 1")
        cur = self._state.cursor(destination)
        if cur >= self._state.head or not self._state.depth(destination):
            return None
        return await self._sql(delivery.read_next, self._reader, self._state, destination, max_events, None)

    async def read_batch_from(self, destination: str, start_seq: int, max_events: int) -> Batch | None:
        """Like read_batch, but starting at start_seq (>= the cursor): the batch after one not yet acked.

        Lets a writer read its next batch while the previous one is still being confirmed. Reading does
        not move anything; the batch can only be acked once every batch before it was acked.
        """
        if max_events < 1:
            raise ValueError("read_batch_from: max_events must be >= 1")
        cur = self._state.cursor(destination)
        if start_seq < cur:
            raise QueueError(f"read_batch_from {destination}: start {start_seq} is before the cursor {cur}")
        if start_seq >= self._state.head or not self._state.depth(destination):
            return None
        return await self._sql(
            delivery.read_next, self._reader, self._state, destination, max_events, start_seq
        )

    async def ack(self, batch: Batch) -> None:
        """Durably move batch.destination's cursor past the batch (one small commit)."""
        await self._sql(delivery.ack, self._state, batch, self._housekeeper)
        self._report_depth(batch.destination)

    async def quarantine(self, destination: str, stream: str, rejects: Sequence[Rejected]) -> None:
        """Durably keep events a destination cannot send (its formatter raised on them), before that
        destination acks the batch that holds them."""
        if not rejects:
            return
        await self._sql(delivery.quarantine, destination, stream, list(rejects))
        report_quarantined(self._metrics, stream, rejects, destination)

    async def quarantine_counts(self) -> dict[tuple[str, str | None, str], int]:
        """Quarantined events per (stream key, destination, reason), as `siemconn status` counts them;
        after the first call, only the rows added since the previous one are read."""
        return await self._sql(self._quarantine_tally.refresh)

    async def record_destination_state(
        self, destination: str, state: str, reason: str = "", since: float | None = None
    ) -> None:
        """Durably record a destination's state (up, retrying, down, ...) and since when, for `status`.
        Called on state changes only."""
        await self._sql(
            delivery.record_state, destination, state, reason, time.time() if since is None else since
        )

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        """Return when destination has undelivered events (soon after a commit_page) or after timeout."""
        if self._state.depth(destination) > 0 or self._closed:
            return
        ev = self._data_events.setdefault(destination, asyncio.Event())
        ev.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    async def depth(self, destination: str) -> int:
        """Undelivered events for destination (a routed destination: of the streams it takes)."""
        return self._state.depth(destination)

    async def oldest_age(self, destination: str) -> float | None:
        """Seconds since the oldest undelivered event of destination was committed, or None if none."""
        return await self._sql(delivery.oldest_age, self._state, destination)

    # ------------------------------------------------------------------ housekeeping

    async def housekeeping(self) -> int:
        """Delete pages every destination has passed now (also runs by itself every N acks). Returns pages."""
        return await self._sql(self._housekeeper.run)
