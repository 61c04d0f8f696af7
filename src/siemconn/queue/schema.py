"""The queue file's layout: file names, tables, DDL and the schema version, shared by the store and the
read-only status view.

Invariants: one row of `page_log` per API page, contiguous on `first_seq` (a page's events are
[first_seq, first_seq + n)); a key's checkpoint and dedupe high-water mark are the maximum over its stored
pages and the value folded into `checkpoints` when pages are deleted; `meta.seq_floor` remembers the head
when every page has been deleted, so sequence numbers never go backwards.

Compatibility rule: a siemconn opens a queue file of its own schema version or of any older one, and
migrates an older file forward in place, in one transaction, at open (`MIGRATIONS`); the backlog, the
checkpoints and the cursors are kept. A file of a newer version (written by a newer siemconn) is refused
with a clear error and left unchanged: downgrading siemconn over a migrated queue is not supported.
Version 1: pages, checkpoints, cursors, polls, meta. Version 2 adds the `quarantine` table.

Added without a schema version bump (every statement is CREATE ... IF NOT EXISTS, so a file written by an
earlier siemconn is opened as is): `routes` (which streams a destination takes, NULL = every stream),
`stream_state` (per key state committed with its pages, e.g. the last-seen lockdown list) and the index
`page_log_key_first_seq` that lets a destination find the next page of the streams it takes;
`destinations` (per destination: events delivered, the last one delivered, up/down state and since when;
written with the ack's cursor commit and on state changes, read by `siemconn status`) and `replays`
(re-send requests `siemconn replay` inserts and the service works through); `deliveries` (one row per
batch a destination acknowledged: its sequence range, event count and time, written with the ack; what
`siemconn replay --sent-since` selects by; deleted with the pages it covers) and `replay_sent` (the
delivery-time window of a replay requested that way).
"""

from __future__ import annotations

import sqlite3

from siemconn.queue.quarantine import QUARANTINE_DDL, QUARANTINE_TABLE

__all__ = [
    "APPLICATION_ID",
    "DB_FILE",
    "JOURNAL_SIZE_LIMIT",
    "LOCK_FILE",
    "MB",
    "MIGRATIONS",
    "NO_CHECKPOINT",
    "OUR_TABLES",
    "PAGE_LOG_NAME",
    "PAGE_TABLE",
    "PAGE_TABLE_PREFIX",
    "SCHEMA_VERSION",
    "SIDE_TABLES",
    "SQLITE_CACHE_KIB",
    "SQLITE_PAGE_SIZE",
    "stored_head",
]

MB = 1024 * 1024
DB_FILE = "queue.db"
LOCK_FILE = "queue.lock"
PAGE_TABLE_PREFIX = "page"  # persist-queue names its table "<_TABLE_NAME>_<name>": "page" + "log"
PAGE_LOG_NAME = "log"
PAGE_TABLE = f"{PAGE_TABLE_PREFIX}_{PAGE_LOG_NAME}"
APPLICATION_ID = 0x53434E51  # "SCNQ": marks a SQLite file as a siemconn queue
SCHEMA_VERSION = 2
# next_checkpoint of a page stored by a first run whose answer gave no usable checkpoint: the key stays
# without one (its next run is again a first run). Never a real checkpoint: those are >= 0.
NO_CHECKPOINT = -(2**63)
# the WAL is truncated back to this size after a checkpoint; min_free_disk_mb's default is a multiple of it
JOURNAL_SIZE_LIMIT = 64 * MB
# SQLite page size of a new queue file (an existing file keeps the one it was created with). A stored API
# page is one row of about a megabyte, held in a chain of overflow pages: larger SQLite pages make the
# chain shorter, which makes the INSERT and the range read cheaper; the tables' small rows barely notice.
SQLITE_PAGE_SIZE = 16384
# SQLite's page cache of the queue's one connection, in KiB (`PRAGMA cache_size=-N`), set explicitly on
# every open: the process runs for months, and its memory must not depend on a library default. What the
# queue reads back is the page just written or the one after a cursor, both in the OS page cache anyway,
# so 64 cached 16 KB pages are expected to cost no CPU that matters (docs/performance.md: not yet benched).
SQLITE_CACHE_KIB = 1024

OUR_TABLES = frozenset(
    {
        PAGE_TABLE,
        "sqlite_sequence",
        "checkpoints",
        "cursors",
        "polls",
        "meta",
        "routes",
        "stream_state",
        QUARANTINE_TABLE,
        "destinations",
        "replays",
        "deliveries",
        "replay_sent",
    }
)
SIDE_TABLES = (
    "CREATE TABLE IF NOT EXISTS checkpoints (key TEXT PRIMARY KEY, checkpoint INTEGER, hwm INTEGER)",
    "CREATE TABLE IF NOT EXISTS cursors (destination TEXT PRIMARY KEY, seq INTEGER NOT NULL, added REAL)",
    "CREATE TABLE IF NOT EXISTS polls (key TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    f"CREATE UNIQUE INDEX IF NOT EXISTS page_log_first_seq ON {PAGE_TABLE} (first_seq)",
    "CREATE TABLE IF NOT EXISTS routes (destination TEXT PRIMARY KEY, streams TEXT)",
    "CREATE TABLE IF NOT EXISTS stream_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS page_log_key_first_seq ON {PAGE_TABLE} (key, first_seq, n)",
    QUARANTINE_DDL,
    "CREATE TABLE IF NOT EXISTS destinations (destination TEXT PRIMARY KEY, "
    "delivered INTEGER NOT NULL DEFAULT 0, last_event_id INTEGER, last_event_time TEXT, "
    "last_delivered_at REAL, state TEXT, state_since REAL, reason TEXT)",
    "CREATE TABLE IF NOT EXISTS replays (id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL, "
    "since REAL NOT NULL, until REAL NOT NULL, stream TEXT, requested_at REAL NOT NULL, "
    "state TEXT NOT NULL DEFAULT 'pending', start_seq INTEGER, end_seq INTEGER, position INTEGER, "
    "events INTEGER NOT NULL DEFAULT 0, detail TEXT)",
    "CREATE TABLE IF NOT EXISTS deliveries (destination TEXT NOT NULL, start_seq INTEGER NOT NULL, "
    "end_seq INTEGER NOT NULL, events INTEGER NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS deliveries_destination_at ON deliveries (destination, at)",
    "CREATE TABLE IF NOT EXISTS replay_sent (replay_id INTEGER PRIMARY KEY, sent_since REAL NOT NULL, "
    "sent_until REAL NOT NULL)",
)
# MIGRATIONS[v]: the statements that take a version-v file to version v + 1 (run in one transaction)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (QUARANTINE_DDL,),
}


def stored_head(conn: sqlite3.Connection) -> int:
    """The event sequence number after the newest stored event (the head every cursor moves towards)."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'seq_floor'").fetchone()
    head = int(row[0]) if row else 0
    row = conn.execute(f"SELECT first_seq + n FROM {PAGE_TABLE} ORDER BY first_seq DESC LIMIT 1").fetchone()
    return max(head, int(row[0])) if row else head
