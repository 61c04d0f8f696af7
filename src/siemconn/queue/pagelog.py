"""The page log: persist-queue's SQLiteQueue with one row per API page and the columns range reads need.

persist-queue keeps the table, the connection handling and the serializer protocol; its own consumers
(get/ack) are not used: the store reads with its own range SQL on `first_seq` so that several destinations
can read the same rows at their own pace (why the stock consumers do not fit: docs/architecture.md).

Invariants: a row's `data` is the page's payloads joined with b"\\n" (a payload never holds a raw
newline); `ids` is a compact JSON list of the same length as the payloads; each INSERT is one durable
commit (WAL, synchronous=FULL); the connection's page cache is bounded at `SQLITE_CACHE_KIB`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import orjson
from persistqueue import SQLiteQueue

from siemconn.queue.schema import (
    JOURNAL_SIZE_LIMIT,
    PAGE_LOG_NAME,
    PAGE_TABLE_PREFIX,
    SQLITE_CACHE_KIB,
    SQLITE_PAGE_SIZE,
)
from siemconn.queue.transaction import transaction

__all__ = ["PAGE_LOG_NAME", "PageLog", "PageSerializer", "load_ids", "split_page"]


class PageSerializer:
    """persist-queue serializer protocol for a page: a list of JSON strings <-> newline-joined text.

    json.dumps with ensure_ascii never emits a raw newline, so the newline is a safe separator. The joined
    str is bound as is (sqlite3 hands an ASCII str's buffer to SQLite without a copy; `.encode()` would
    add a copy of the whole page); the read side selects `CAST(data AS BLOB)`, so it gets bytes for rows
    stored either way (older rows were stored as BLOBs).
    """

    @staticmethod
    def dumps(payloads: Sequence[str]) -> str:
        return "\n".join(payloads)

    @staticmethod
    def loads(data: bytes | str) -> list[str]:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray | memoryview) else data
        return text.split("\n") if text else []


def split_page(data: bytes | str) -> list[bytes]:
    """A stored page's payloads as bytes, not decoded (the read side; `PageSerializer.loads` decodes)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return raw.split(b"\n") if raw else []


def load_ids(ids_text: str) -> list[int | None]:
    """A page's stored id list: integers within 64 bits (see encoder.event_id) or null, so orjson reads
    them exactly and faster than json.loads."""
    ids: list[int | None] = orjson.loads(ids_text)
    return ids


class PageLog(SQLiteQueue):
    """persist-queue's SQLiteQueue with one row per API page and the columns the range reads need."""

    _TABLE_NAME = PAGE_TABLE_PREFIX
    largest_page: int = 0  # bytes of the largest page appended by this process (the WAL must fit one more)
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
        # both effective only on a new, empty file (before WAL mode and the first table)
        conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        # Deleted (delivered) pages are not overwritten with zeros: builds that default to secure_delete=ON
        # write every deleted byte again through the WAL, which doubles housekeeping's I/O and cannot be
        # done at all on a full disk, where deleting delivered pages is the way out. The file is private
        # (0600 in a 0700 directory) and freed pages are reused by the next pages.
        conn.execute("PRAGMA secure_delete=FAST")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        # the page cache bounded explicitly, not left to the library's default (schema.SQLITE_CACHE_KIB)
        conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        return conn

    @property
    def connection(self) -> sqlite3.Connection:
        """The one connection (persist-queue's writer connection), for the store's own SQL."""
        # persist-queue declares _putter as None before it connects; after __init__ it is the connection
        return cast(sqlite3.Connection, self._putter)

    def put(self, item: Any, block: bool = True) -> int:
        raise NotImplementedError("use put_page(): the page log stores one row per API page")

    def put_page(
        self,
        data: str,
        count: int,
        key: str,
        first_seq: int,
        ids: Sequence[int | None],
        next_checkpoint: int,
        now: float,
        also: Sequence[tuple[str, tuple[Any, ...]]] = (),
    ) -> int:
        """Append one page of `count` events, `data` being their payloads joined
        (`PageSerializer.dumps(payloads)`, or the encoder's page text, which is the same), and return its
        bytes. Outside a transaction the INSERT (with `also`) is one durable commit; inside one (the store
        BEGINs when quarantine rows go with the page) it commits with the rest.

        `also`: statements (sql, params) run in the same transaction as the INSERT (cursor steps, stream
        state), so they are durable together with the page or not at all.
        """
        known = [i for i in ids if i is not None]
        record = (
            data,
            now,
            key,
            first_seq,
            count,
            known[0] if known else None,
            max(known) if known else None,
            next_checkpoint,
            json.dumps(list(ids), separators=(",", ":")),
        )
        conn = self.connection
        if conn.in_transaction or not also:
            conn.execute(self._sql_insert, record)
            for sql, params in also:
                conn.execute(sql, params)
        else:
            with self.tran_lock, transaction(conn):
                conn.execute(self._sql_insert, record)
                for sql, params in also:
                    conn.execute(sql, params)
        self.total += 1
        self.largest_page = max(self.largest_page, len(data))
        return len(data)

    def forget(self, rows: int) -> None:
        """Count `rows` rows fewer: they were deleted (or an insert rolled back) outside persist-queue."""
        self.total = max(0, self.total - rows)
