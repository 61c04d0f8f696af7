"""Queue error texts and the mapping of sqlite3 / OS errors onto siemconn.errors' Queue*Error classes.

The exception classes themselves live in siemconn.errors; this module only builds them, so that every
queue error names the file and the fix, and a damaged file is never reset silently.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from siemconn.errors import QueueCorruptError, QueueUnavailableError

__all__ = ["classify_sqlite_error", "corrupt_error", "newer_version_error", "unavailable_error"]

# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF)
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_UNAVAILABLE_CODES = {3, 5, 6, 8, 10, 13, 14, 15, 22, 23}  # PERM BUSY LOCKED READONLY IOERR FULL CANTOPEN ...


def corrupt_error(path: Path, detail: str) -> QueueCorruptError:
    """The QueueCorruptError for `path`, naming the file and the fix."""
    return QueueCorruptError(
        f"queue database {path} is corrupt or not a siemconn queue ({detail}). "
        f"Fix: stop siemconn, move the file aside (mv {path} {path}.corrupt; also move {path}-wal and "
        f"{path}-shm if present) and start again. A new queue starts from the configured start time; "
        f"undelivered events in the old file can be salvaged with: sqlite3 {path}.corrupt .recover"
    )


def newer_version_error(path: Path, version: int) -> QueueCorruptError:
    """The error for a queue file of a schema version newer than this siemconn reads (left unchanged)."""
    from siemconn.queue.schema import SCHEMA_VERSION

    return QueueCorruptError(
        f"queue database {path} has schema version {version}, written by a newer siemconn; this siemconn "
        f"reads versions 1 to {SCHEMA_VERSION}. Fix: run the newer siemconn again (the file is left "
        "unchanged; a downgrade over a migrated queue is not supported)"
    )


def unavailable_error(path: Path, detail: str) -> QueueUnavailableError:
    """The QueueUnavailableError for `path`, naming the file and the fix."""
    return QueueUnavailableError(
        f"queue database {path} cannot be opened or written ({detail}). Fix: give the siemconn user "
        f"read/write access to {path.parent} (not a read-only mount), and make sure the disk is not full"
    )


def classify_sqlite_error(exc: BaseException, path: Path) -> Exception:
    """Map an sqlite3 / OS error to our exception tree (corrupt vs. unavailable)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        msg = str(exc)
        if primary in _CORRUPT_CODES or "not a database" in msg or "malformed" in msg:
            return corrupt_error(path, msg)
        return unavailable_error(path, msg)
    if isinstance(exc, OSError):
        return unavailable_error(path, f"{type(exc).__name__}: {exc.strerror or exc}")
    return unavailable_error(path, f"{type(exc).__name__}: {exc}")
