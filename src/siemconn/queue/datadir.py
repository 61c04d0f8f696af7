"""The queue's data directory: private permissions, the single-process lock, and the "is this our file"
check done before persist-queue touches the database.

Invariants: data_dir is mode 0700 (files holding events are private); at most one process holds
`queue.lock` (an fcntl.flock kept for the life of the process, with the holder's pid written in it so a
second process can name it); a file that is not a siemconn queue is refused, never reset; so is one of a
schema version this siemconn cannot read (newer, or older than any migration reaches), before anything
opens it for writing, so the refused file stays byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import stat
from pathlib import Path

from siemconn.errors import QueueLockedError
from siemconn.logging import get_logger
from siemconn.queue.errors import classify_sqlite_error, corrupt_error, newer_version_error, unavailable_error
from siemconn.queue.schema import APPLICATION_ID, DB_FILE, LOCK_FILE, MIGRATIONS, OUR_TABLES, SCHEMA_VERSION

__all__ = ["default_disk_free", "is_new_database", "prepare_data_dir", "release_lock", "take_lock"]

log = get_logger(__name__)


def default_disk_free(path: Path) -> int:
    """Free bytes on the file system holding path."""
    return shutil.disk_usage(path).free


def prepare_data_dir(data_dir: Path) -> None:
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


def take_lock(data_dir: Path) -> int:
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
        # written over the old pid first, then cut to length: freeing the block first would need a new one,
        # which a completely full disk cannot give (a restart on a full disk must get past this)
        pid = f"{os.getpid()}\n".encode("ascii")
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
    except OSError as exc:
        os.close(fd)
        raise unavailable_error(
            data_dir / DB_FILE, f"cannot write lock file {lock_path}: {exc.strerror}"
        ) from exc
    return fd


def release_lock(fd: int) -> None:
    """Unlock and close a fd from take_lock (errors ignored: the process may be exiting)."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def is_new_database(db: Path) -> bool:
    """Refuse a file that is not a siemconn queue. Returns True when the database is new (empty)."""
    if not db.exists() or db.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(str(db), timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise classify_sqlite_error(exc, db) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise classify_sqlite_error(exc, db) from exc
    finally:
        conn.close()
    if not names:
        return True
    if app_id == 0 and names <= OUR_TABLES:
        return True  # a first start that died before it marked the file: finish creating it
    if app_id != APPLICATION_ID:
        raise corrupt_error(db, f"application_id is {app_id:#x}, expected {APPLICATION_ID:#x}")
    if version > SCHEMA_VERSION:
        raise newer_version_error(db, version)
    if version < 1 or any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
        # refused here, not only in opening._migrate: persist-queue would create its tables first
        raise corrupt_error(db, f"schema version {version}, this siemconn reads 1 to {SCHEMA_VERSION}")
    return False
