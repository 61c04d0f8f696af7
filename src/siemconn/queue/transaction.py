"""Explicit transactions on the queue's one connection (autocommit mode, `isolation_level=None`).

Invariants: a transaction opened here is either committed or rolled back before control leaves it, on
any exception (cancellation and KeyboardInterrupt included), so the connection is never left inside a
transaction that a later statement would silently extend. A failing ROLLBACK never hides the error that
caused it: that original error is the one raised (and classified by the store).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

__all__ = ["rollback", "transaction"]


def rollback(conn: sqlite3.Connection | None) -> None:
    """Roll back the open transaction of conn, if any; a failing ROLLBACK is ignored (see module doc)."""
    if conn is not None and conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock up front: no upgrade deadlock), COMMIT on leaving, ROLLBACK on
    any exception, which is then re-raised."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
