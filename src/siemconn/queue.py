"""The durable queue: the only shared state of siemconn and the only place progress is recorded.

Why this exists
---------------
The reference connector saves its checkpoint BEFORE events are delivered: a kill+restart lost 1,933 of
120,000 events and a 60 s syslog outage lost all of them. Here a checkpoint moves only when the events of
its page are durably stored, and an event leaves the queue for a destination only after that destination
acked it. Nothing is ever dropped to make room: when full, the queue stops the source (backpressure).

Design (measured, see bench/queue_bench.py)
-------------------------------------------
persist-queue 1.1's own consumers do not fit. `SQLiteAckQueue` keeps acked rows and every get() scans them
(`WHERE _id > ? AND status < acked`): measured here, get+ack of 1.1 KB items ran at 973/s with 2,000 acked
rows not yet cleared and at 113/s with 20,000 (per-event cost x8.6). It also has one status per row, so it
cannot fan out to several destinations. `SQLiteQueue.get()` is destructive (auto_commit) or keeps one
in-memory cursor (single consumer), so it cannot fan out either. So we keep persist-queue's `SQLiteQueue`
as the append-only *page log* (its table, connection handling and serializer protocol; extra columns are
added by subclassing) and do reads with our own range SQL on an index:

* one queue item per API page, not per event: `page_log` row = {key, first/last event id, n events,
  first_seq (cumulative event sequence number of the page's first event), next_checkpoint, ids,
  data = events as newline-joined `json.dumps(event)` strings (default separators, ensure_ascii: the
  reference's byte shape, exactly the payload the syslog writer sends)}. One INSERT = one durable commit
  (WAL, synchronous=FULL) per page.
* the checkpoint is DERIVED from what is queued: checkpoint(key) = max(next_checkpoint of the key's queued
  pages, the value folded into the side table `checkpoints`). So "events + checkpoint" are atomic by
  construction. The same holds for the dedupe high-water mark (max committed event id per key).
* each destination has a durable cursor (a first_seq value) in the side table `cursors` of the same file.
  read_batch is an index range read on first_seq, so its cost does not depend on the backlog.
* the read side never decodes payloads: a page's `data` is split on b"\n" into bytes, and a `Batch` holds
  its events as `Segment`s (stream, ids, payload bytes), at most one per page it touches, so the syslog
  writer formats a page slice with a few bytes operations. `Batch.events` (one `QueuedEvent` with a
  `str` payload per event) is built only when a caller asks for it.
* housekeeping, every `housekeeping_every` acks (not every ack), deletes pages that every destination has
  passed, in batches, in the same transaction that folds their checkpoints and high-water marks into the
  side table. Freed SQLite pages are reused (the file does not grow without bound) and handed back to
  the file system with incremental vacuum.
* all SQLite work runs on ONE worker thread (ThreadPoolExecutor(max_workers=1)); the asyncio loop never
  blocks on disk, and there is no per-event thread hop.

Measured with bench/queue_bench.py (2 cores, pages of 1,000 events of ~1.2 KB, batches of 500, fsync on):
commit_page 20.5 us/event at a 10,000-event backlog and 15.5 us/event at 1,000,000 (about 10 us of it is
json.dumps); read_batch+ack 11.6 vs 8.6 us/event; 1M/10k ratios 0.76 and 0.74 (flat). With 1,000,000
events queued (1.3 GB on disk) the process RSS was 52 MB, peak 58 MB, and reopening took 0.02 s.
Compressing pages (zlib level 1) was measured at ~34 us/event, more than all of the above, so pages are
stored as plain JSON text.

Dedupe: event ids are monotonic per key. commit_page drops events whose integer `id` is <= the key's
high-water mark (a re-fetch of an overlapping page after a crash); events without an integer id are kept.

Fan-out: a destination in the config but not in the queue (newly added) starts from "now", the current
head: it does not receive the backlog that other destinations still hold (logged at open). A destination
in the queue but no longer in the config has its cursor dropped at open, with a warning naming how many
events it still had undelivered; those events are then reclaimed once the other destinations pass them.

Backpressure defaults: `max_events` (5,000,000 per destination, about 6 GB at ~1.2 KB per event) bounds
how far a down destination can fall behind. `min_free_disk_mb` (256 MB) is an absolute floor, not a
percentage like the reference's 70 %: 70 % leaves 300 GB idle on a 1 TB disk and is not enough on a
small one, while what the queue itself needs to stay writable is fixed: the WAL (capped at 64 MB by
journal_size_limit), one page transaction (~1-2 MB) and room for logs and the OS. 256 MB is four times
the WAL cap. Free pages inside the database file count as free space (they are reused first).

Everything here raises only siemconn.errors.Queue*Error: QueueCorruptError (names the file and the fix,
never a silent reset), QueueLockedError (a second process on the same data_dir; an fcntl.flock on
`queue.lock` held for the process lifetime) and QueueUnavailableError (permissions, read-only, disk full).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

import orjson
from persistqueue import SQLiteQueue

from siemconn.errors import QueueError, QueueLockedError
from siemconn.logging import get_logger
from siemconn.queue_status import (
    APPLICATION_ID,
    DB_FILE,
    LOCK_FILE,
    PAGE_TABLE,
    SCHEMA_VERSION,
    DestinationStatus,
    StatusReport,
    StreamStatus,
    classify_sqlite_error,
    corrupt_error,
    read_status,
    render_status,
    stored_head,
    unavailable_error,
)

__all__ = [
    "Batch",
    "DestinationStatus",
    "DurableQueue",
    "QueuedEvent",
    "Segment",
    "StatusReport",
    "StreamStatus",
    "read_status",
    "render_status",
]

log = get_logger(__name__)

EVENT_ID_FIELD = "id"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1  # SQLite INTEGER
MB = 1024 * 1024
_HOUSEKEEPING_PAGES = 512  # pages deleted per housekeeping transaction
_VACUUM_THRESHOLD_PAGES = 4096  # run incremental vacuum once this many free SQLite pages (16 MB) pile up
_VACUUM_STEP_PAGES = 2048
_T = TypeVar("_T")


def _make_encoder() -> Callable[[Any], str]:
    """Byte-identical to json.dumps(event) (same defaults: ", " / ": " separators, ensure_ascii,
    allow_nan, sort_keys off), built once.

    json.dumps builds a new C encoder object per call and keeps circular-reference markers per container;
    this one is built once and has no markers (together ~15 % of the encode time). A parsed JSON page
    cannot contain a reference cycle; an application-built cyclic dict would hit the recursion limit
    (RecursionError) instead of json's ValueError. Interpreters without the C accelerator get
    JSONEncoder(check_circular=False).encode.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    default = json.JSONEncoder().default
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(check_circular=False).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    chunks = c_make_encoder(
        None, default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    join = "".join

    def encode(event: Any) -> str:
        return join(chunks(event, 0))

    return encode


_ENCODE: Callable[[Any], str] = _make_encoder()

_OUR_TABLES = frozenset({PAGE_TABLE, "sqlite_sequence", "checkpoints", "cursors", "polls", "meta"})
_SIDE_TABLES = (
    "CREATE TABLE IF NOT EXISTS checkpoints (key TEXT PRIMARY KEY, checkpoint INTEGER, hwm INTEGER)",
    "CREATE TABLE IF NOT EXISTS cursors (destination TEXT PRIMARY KEY, seq INTEGER NOT NULL, added REAL)",
    "CREATE TABLE IF NOT EXISTS polls (key TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS page_log_first_seq ON {PAGE_TABLE} (first_seq)",
)


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One queued event: its stream (syslog MSGID), RUX event id if any, and the JSON payload to send."""

    stream: str
    event_id: int | None
    payload: str


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive events of one page: their stream, ids and payloads (JSON, ASCII bytes, no newline).

    `ids` and `payloads` have the same length (>= 1); the payloads are the stored bytes, not decoded.
    """

    stream: str
    ids: list[int | None]
    payloads: list[bytes]


@dataclass(frozen=True, slots=True)
class Batch:
    """Events [start_seq, end_seq) read for one destination; ack() it after the destination accepted it.

    The events are held as `segments`, at most one per page touched, in order: the writer formats a
    segment as a whole. `events` builds one `QueuedEvent` (payload as `str`) per event on first use.
    """

    destination: str
    segments: list[Segment]
    start_seq: int
    end_seq: int
    _events: list[QueuedEvent] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.end_seq - self.start_seq

    @property
    def events(self) -> list[QueuedEvent]:
        """The batch as one `QueuedEvent` per event (built once, then cached)."""
        events = self._events
        if events is None:
            events = []
            for seg in self.segments:
                events.extend(
                    map(
                        QueuedEvent,
                        repeat(seg.stream, len(seg.payloads)),
                        seg.ids,
                        [p.decode("utf-8") for p in seg.payloads],
                    )
                )
            object.__setattr__(self, "_events", events)
        return events


class _PageSerializer:
    """persist-queue serializer protocol for a page: a list of JSON strings <-> newline-joined text.

    json.dumps with ensure_ascii never emits a raw newline, so the newline is a safe separator. The joined
    str is bound as is (sqlite3 hands an ASCII str's buffer to SQLite without a copy; `.encode()` would
    add a 1.2 MB copy per page); the read side selects `CAST(data AS BLOB)`, so it gets bytes for rows
    stored either way (older rows were stored as BLOBs).
    """

    @staticmethod
    def dumps(payloads: Sequence[str]) -> str:
        return "\n".join(payloads)

    @staticmethod
    def loads(data: bytes | str) -> list[str]:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray | memoryview) else data
        return text.split("\n") if text else []


def _split_page(data: bytes | str) -> list[bytes]:
    """A stored page's payloads as bytes, not decoded (the read side; `_PageSerializer.loads` decodes)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return raw.split(b"\n") if raw else []


class _PageLog(SQLiteQueue):  # type: ignore[misc]
    """persist-queue's SQLiteQueue with one row per API page and the columns the range reads need."""

    _TABLE_NAME = "page"
    _SQL_CREATE = (
        "CREATE TABLE IF NOT EXISTS {table_name} ("
        "{key_column} INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, timestamp FLOAT, "
        "key TEXT NOT NULL, first_seq INTEGER NOT NULL, n INTEGER NOT NULL, "
        "first_event_id INTEGER, last_event_id INTEGER, next_checkpoint INTEGER NOT NULL, ids TEXT NOT NULL)"
    )
    _SQL_INSERT = (
        "INSERT INTO {table_name} (data, timestamp, key, first_seq, n, first_event_id, last_event_id, "
        "next_checkpoint, ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def _new_db_connection(self, path: str, multithreading: bool, timeout: float) -> sqlite3.Connection:
        # One connection, used only by the queue's single worker thread (so check_same_thread is off to let
        # close() run from whichever thread finalizes the object). Autocommit mode: one statement = one
        # transaction unless we BEGIN explicitly.
        conn = sqlite3.connect(
            os.path.join(path, self.db_file_name),
            timeout=timeout,
            check_same_thread=False,
            isolation_level=None,
        )
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only on a new, empty file
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA journal_size_limit={64 * MB}")
        return conn

    def put(self, item: Any, block: bool = True) -> int:
        raise NotImplementedError("use put_page(): the page log stores one row per API page")

    def put_page(
        self,
        payloads: Sequence[str],
        key: str,
        first_seq: int,
        ids: Sequence[int | None],
        next_checkpoint: int,
        now: float,
    ) -> int:
        known = [i for i in ids if i is not None]
        row_id: int = self._insert_into(
            self._serializer.dumps(payloads),
            now,
            key,
            first_seq,
            len(payloads),
            known[0] if known else None,
            max(known) if known else None,
            next_checkpoint,
            json.dumps(list(ids), separators=(",", ":")),
        )
        self.total += 1
        return row_id


def _load_ids(ids_text: str) -> list[int | None]:
    """A page's stored id list: integers within 64 bits (see `_event_id`) or null, so orjson reads them
    exactly (json.loads took ~2 % of the process's CPU here)."""
    ids: list[int | None] = orjson.loads(ids_text)
    return ids


def _default_disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _event_id(event: Mapping[str, Any]) -> int | None:
    """The event's integer id, or None: missing, not an integer, or beyond SQLite's signed 64 bits (such an
    event is kept and sent, it just takes no part in the id-based dedupe)."""
    v = event.get(EVENT_ID_FIELD)
    if isinstance(v, int) and not isinstance(v, bool) and _I64_MIN <= v <= _I64_MAX:
        return int(v)
    return None


def _prepare_data_dir(data_dir: Path) -> None:
    """Create data_dir with mode 0700; tighten it if it exists with group/other permissions."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise unavailable_error(
            data_dir / DB_FILE, f"cannot create {data_dir}: {exc.strerror or exc}"
        ) from exc
    try:
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        if mode & 0o077:
            os.chmod(data_dir, mode & 0o700)
            log.warning(
                "queue_data_dir_permissions_tightened",
                data_dir=str(data_dir),
                was=oct(mode),
                now=oct(mode & 0o700),
            )
    except OSError as exc:
        log.warning("queue_data_dir_permissions_not_changed", data_dir=str(data_dir), error=str(exc))


def _take_lock(data_dir: Path) -> int:
    """flock data_dir/queue.lock for the life of the process. Returns the fd."""
    lock_path = data_dir / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise unavailable_error(
            data_dir / DB_FILE, f"cannot create lock file {lock_path}: {exc.strerror}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise QueueLockedError(
            f"data directory {data_dir} is in use by another siemconn process (pid {holder}). "
            "Fix: stop that instance, or give this one its own data_dir"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise unavailable_error(data_dir / DB_FILE, f"cannot lock {lock_path}: {exc.strerror}") from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError as exc:
        os.close(fd)
        raise unavailable_error(
            data_dir / DB_FILE, f"cannot write lock file {lock_path}: {exc.strerror}"
        ) from exc
    return fd


def _precheck(db: Path) -> bool:
    """Refuse a file that is not a siemconn queue. Returns True when the database is new (empty)."""
    if not db.exists() or db.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(str(db), timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise classify_sqlite_error(exc, db) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise classify_sqlite_error(exc, db) from exc
    finally:
        conn.close()
    if not names:
        return True
    if app_id == 0 and names <= _OUR_TABLES:
        return True  # a first start that died before it marked the file: finish creating it
    if app_id != APPLICATION_ID:
        raise corrupt_error(db, f"application_id is {app_id:#x}, expected {APPLICATION_ID:#x}")
    return False


class DurableQueue:
    """Pages of events on disk, a derived checkpoint per key and a cursor per destination. See module doc."""

    def __init__(self) -> None:  # use `await DurableQueue.open(...)`
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siemconn-queue")
        self._pages: _PageLog | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._closed = False
        self.data_dir = Path()
        self.db_path = Path()
        self._max_events = 0
        self._min_free = 0
        self._disk_free: Callable[[Path], int] = _default_disk_free
        self._housekeeping_every = 64
        self._metrics: Any = None
        # state below is mutated only on the worker thread (reads of single ints from the loop are safe)
        self._head = 0
        self._cursors: dict[str, int] = {}
        self._checkpoints: dict[str, int] = {}
        self._hwm: dict[str, int] = {}
        self._polls: dict[str, float] = {}
        self._acks_since_housekeeping = 0
        self._free_pages_bytes = 0
        self._pull_state: tuple[bool, str] = (True, "")
        self._data_events: dict[str, asyncio.Event] = {}
        # per destination, the last page it read, split: (first_seq, stream, ids, payloads as bytes). A batch
        # smaller than a page reads the same page again; this saves splitting it again (worker thread only)
        self._decoded: dict[str, tuple[int, str, list[int | None], list[bytes]]] = {}

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
        metrics: Any = None,
    ) -> DurableQueue:
        """Open (or create) the queue in data_dir for these destinations. Raises Queue*Error."""
        self = cls()
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_FILE
        self._max_events = max_events
        self._min_free = min_free_disk_mb * MB
        self._disk_free = disk_free or _default_disk_free
        self._housekeeping_every = max(1, housekeeping_every)
        self._metrics = metrics
        self._data_events = {d: asyncio.Event() for d in destinations}
        try:
            await self._run(self._open_sync, list(destinations))
        except BaseException:
            await self._run(self._close_sync)
            self._executor.shutdown(wait=True)
            raise
        return self

    def _open_sync(self, destinations: list[str]) -> None:
        _prepare_data_dir(self.data_dir)
        self._lock_fd = _take_lock(self.data_dir)
        try:
            new = _precheck(self.db_path)
            self._pages = _PageLog(
                str(self.data_dir),
                name="log",
                serializer=_PageSerializer,
                db_file_name=DB_FILE,
                auto_commit=True,
            )
            conn = self._conn = self._pages._putter
            if new:
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for sql in _SIDE_TABLES:
                conn.execute(sql)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise corrupt_error(
                    self.db_path, f"schema version {version}, this siemconn reads {SCHEMA_VERSION}"
                )
            with contextlib.suppress(OSError):
                os.chmod(self.db_path, 0o600)
            # write probe: a read-only file or mount fails here, not at the first page
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('opened_at', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (time.time(),),
            )
            self._load_state()
            self._reconcile_destinations(destinations, new)
            self._housekeeping()
        except (sqlite3.Error, OSError) as exc:
            raise classify_sqlite_error(exc, self.db_path) from exc
        log.info(
            "queue_opened",
            database=str(self.db_path),
            pages=self._pages.total,
            head=self._head,
            depth={d: self._head - s for d, s in self._cursors.items()},
            checkpoints=dict(self._checkpoints),
        )

    def _load_state(self) -> None:
        conn = self._db()
        for key, cp, hwm in conn.execute("SELECT key, checkpoint, hwm FROM checkpoints"):
            if cp is not None:
                self._checkpoints[key] = int(cp)
            if hwm is not None:
                self._hwm[key] = int(hwm)
        for key, cp, hwm in conn.execute(
            f"SELECT key, MAX(next_checkpoint), MAX(last_event_id) FROM {PAGE_TABLE} GROUP BY key"
        ):
            if cp is not None:
                self._checkpoints[key] = max(int(cp), self._checkpoints.get(key, int(cp)))
            if hwm is not None:
                self._hwm[key] = max(int(hwm), self._hwm.get(key, int(hwm)))
        head = stored_head(conn)
        self._cursors = {d: int(s) for d, s in conn.execute("SELECT destination, seq FROM cursors")}
        self._head = max([head, *self._cursors.values()])
        self._polls = {k: float(v) for k, v in conn.execute("SELECT key, at FROM polls")}

    def _reconcile_destinations(self, destinations: list[str], new: bool) -> None:
        conn = self._db()
        for dest in list(self._cursors):
            if dest not in destinations:
                pending = self._head - self._cursors[dest]
                conn.execute("DELETE FROM cursors WHERE destination = ?", (dest,))
                del self._cursors[dest]
                log.warning(
                    "queue_destination_removed",
                    destination=dest,
                    undelivered_events_dropped=pending,
                    detail="no longer in the configuration; its cursor is dropped and it gets no more events",
                )
        for dest in destinations:
            if dest not in self._cursors:
                conn.execute(
                    "INSERT INTO cursors (destination, seq, added) VALUES (?, ?, ?)",
                    (dest, self._head, time.time()),
                )
                self._cursors[dest] = self._head
                if not new:
                    log.info(
                        "queue_destination_added",
                        destination=dest,
                        starts_at=self._head,
                        detail="new destination starts from now; it does not receive the existing backlog",
                    )

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
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)
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

    def _cursor_of(self, destination: str) -> int:
        try:
            return self._cursors[destination]
        except KeyError:
            raise QueueError(
                f"unknown destination {destination!r}; the queue was opened for {sorted(self._cursors)}"
            ) from None

    # ------------------------------------------------------------------ source side

    async def commit_page(self, key: str, events: Sequence[Mapping[str, Any]], next_checkpoint: int) -> int:
        """Store one API page and its checkpoint in one durable commit. Returns events kept after dedupe."""
        if not key:
            raise ValueError("commit_page: empty key")
        kept = await self._run(self._guard, self._commit_sync, key, events, int(next_checkpoint))
        if kept:
            for ev in self._data_events.values():
                ev.set()
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.checkpoint.labels(key).set(self._checkpoints.get(key, 0))
                for d, s in self._cursors.items():
                    self._metrics.queue_depth.labels(d).set(self._head - s)
        return kept

    def _commit_sync(self, key: str, events: Sequence[Mapping[str, Any]], next_checkpoint: int) -> int:
        if self._pages is None:
            raise QueueError(f"queue {self.db_path} is closed")
        hwm = self._hwm.get(key)
        payloads: list[str] = []
        ids: list[int | None] = []
        encode = _ENCODE
        add_payload, add_id = payloads.append, ids.append
        for event in events:
            v = event.get(EVENT_ID_FIELD)
            eid = v if type(v) is int and _I64_MIN <= v <= _I64_MAX else _event_id(event)
            if eid is not None and hwm is not None and eid <= hwm:
                continue
            add_payload(encode(event))
            add_id(eid)
        prev = self._checkpoints.get(key)
        new_cp = next_checkpoint if prev is None else max(prev, next_checkpoint)
        if not payloads:
            if prev is None or next_checkpoint > prev:
                self._db().execute(
                    "INSERT INTO checkpoints (key, checkpoint) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "checkpoint = MAX(COALESCE(checkpoint, excluded.checkpoint), excluded.checkpoint)",
                    (key, new_cp),
                )
                self._checkpoints[key] = new_cp
            return 0
        first_seq = self._head
        self._pages.put_page(payloads, key, first_seq, ids, new_cp, time.time())
        self._head = first_seq + len(payloads)
        self._checkpoints[key] = new_cp
        known = [i for i in ids if i is not None]
        if known:
            top = max(known)
            self._hwm[key] = top if hwm is None else max(hwm, top)
        return len(payloads)

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
        for dest, seq in sorted(self._cursors.items()):
            depth = self._head - seq
            if depth >= self._max_events:
                return (
                    False,
                    f"destination {dest} has {depth} undelivered events "
                    f"(queue_max_events={self._max_events})",
                    f"cap:{dest}",
                )
        free = self._disk_free(self.data_dir) + self._free_pages_bytes
        if free < self._min_free:
            return (
                False,
                f"free disk space for {self.data_dir} is {free // MB} MB, under min_free_disk_mb="
                f"{self._min_free // MB}",
                "disk",
            )
        return True, "", ""

    # ------------------------------------------------------------------ sink side

    async def read_batch(self, destination: str, max_events: int) -> Batch | None:
        """Up to max_events undelivered events for destination, in order. Does not advance; ack() does."""
        if max_events < 1:
            raise ValueError("read_batch: max_events must be >= 1")
        cur = self._cursor_of(destination)
        if cur >= self._head:
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
        if start_seq >= self._head:
            return None
        return await self._run(self._guard, self._read_sync, destination, max_events, start_seq)

    def _decode_page(
        self, destination: str, first_seq: int, key: str, ids_text: str, data: bytes
    ) -> tuple[str, list[int | None], list[bytes]]:
        stream = key.partition(".")[0]
        ids = _load_ids(ids_text)
        payloads = _split_page(data)
        self._decoded[destination] = (int(first_seq), stream, ids, payloads)
        return stream, ids, payloads

    def _read_sync(self, destination: str, max_events: int, start_seq: int | None) -> Batch | None:
        conn = self._db()
        cur = self._cursor_of(destination)
        if start_seq is not None:
            cur = max(cur, start_seq)
        if cur >= self._head:
            return None
        segments: list[Segment] = []
        count = 0
        cached = self._decoded.get(destination)
        if cached is not None and cached[0] <= cur < cached[0] + len(cached[3]):
            # the page this destination is in the middle of (a batch smaller than a page): no re-read
            first_seq, stream, ids, payloads = cached
            off = cur - first_seq
            count = min(len(payloads) - off, max_events)
            segments.append(Segment(stream, ids[off : off + count], payloads[off : off + count]))
            start = first_seq + len(payloads)  # pages are contiguous: the next one starts here
        else:
            start_row = conn.execute(
                f"SELECT first_seq FROM {PAGE_TABLE} WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1",
                (cur,),
            ).fetchone()
            start = int(start_row[0]) if start_row else cur
        if count < max_events and start < self._head:
            rows = conn.execute(
                f"SELECT first_seq, n, key, ids, CAST(data AS BLOB) FROM {PAGE_TABLE} WHERE first_seq >= ? "
                "ORDER BY first_seq",
                (start,),
            )
            try:
                for first_seq, n, key, ids_text, data in rows:
                    off = max(0, cur + count - int(first_seq))
                    if off >= n:
                        continue
                    take = min(int(n) - off, max_events - count)
                    stream, ids, payloads = self._decode_page(destination, first_seq, key, ids_text, data)
                    segments.append(Segment(stream, ids[off : off + take], payloads[off : off + take]))
                    count += take
                    if count >= max_events:
                        break
            finally:
                rows.close()
        cached = self._decoded.get(destination)
        if cached is not None and cur + count >= cached[0] + len(cached[3]):
            del self._decoded[destination]  # fully read: do not keep its payloads alive
        if not count:
            return None
        return Batch(destination, segments, cur, cur + count)

    async def ack(self, batch: Batch) -> None:
        """Durably move batch.destination's cursor past the batch (one small commit)."""
        await self._run(self._guard, self._ack_sync, batch)
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.queue_depth.labels(batch.destination).set(
                    self._head - self._cursors[batch.destination]
                )

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
        self._db().execute("UPDATE cursors SET seq = ? WHERE destination = ?", (end, batch.destination))
        self._cursors[batch.destination] = end
        self._acks_since_housekeeping += 1
        if self._acks_since_housekeeping >= self._housekeeping_every:
            self._housekeeping()

    async def wait_for_data(self, destination: str, timeout: float) -> None:
        """Return when destination has undelivered events (soon after a commit_page) or after timeout."""
        cur = self._cursor_of(destination)
        if cur < self._head or self._closed:
            return
        ev = self._data_events.setdefault(destination, asyncio.Event())
        ev.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    async def depth(self, destination: str) -> int:
        """Undelivered events for destination."""
        return self._head - self._cursor_of(destination)

    async def oldest_age(self, destination: str) -> float | None:
        """Seconds since the oldest undelivered event of destination was committed, or None if none."""
        return await self._run(self._guard, self._oldest_age_sync, destination)

    def _oldest_age_sync(self, destination: str) -> float | None:
        cur = self._cursor_of(destination)
        if cur >= self._head:
            return None
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
        deleted = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(
                    f"SELECT first_seq, n, key, next_checkpoint, last_event_id FROM {PAGE_TABLE} "
                    "WHERE first_seq < ? ORDER BY first_seq LIMIT ?",
                    (floor, _HOUSEKEEPING_PAGES),
                ).fetchall()
                rows = [r for r in rows if r[0] + r[1] <= floor]
                if not rows:
                    conn.execute("COMMIT")
                    break
                fold: dict[str, tuple[int, int | None]] = {}
                for _, _, key, cp, hwm in rows:
                    old_cp, old_hwm = fold.get(key, (cp, hwm))
                    top = hwm if old_hwm is None else (old_hwm if hwm is None else max(old_hwm, hwm))
                    fold[key] = (max(old_cp, cp), top)
                for key, (cp, hwm) in fold.items():
                    conn.execute(
                        "INSERT INTO checkpoints (key, checkpoint, hwm) VALUES (?, ?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET "
                        "checkpoint = MAX(COALESCE(checkpoint, excluded.checkpoint), excluded.checkpoint), "
                        "hwm = MAX(COALESCE(hwm, excluded.hwm), COALESCE(excluded.hwm, hwm))",
                        (key, cp, hwm),
                    )
                last_first, last_n = rows[-1][0], rows[-1][1]
                conn.execute(f"DELETE FROM {PAGE_TABLE} WHERE first_seq <= ?", (last_first,))
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('seq_floor', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                    (last_first + last_n,),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            deleted += len(rows)
            if self._pages is not None:
                self._pages.total = max(0, self._pages.total - len(rows))
            if len(rows) < _HOUSEKEEPING_PAGES:
                break
        free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free_pages >= _VACUUM_THRESHOLD_PAGES:
            conn.execute(f"PRAGMA incremental_vacuum({_VACUUM_STEP_PAGES})").fetchall()
            free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self._free_pages_bytes = free_pages * page_size
        return deleted
