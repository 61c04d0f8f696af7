"""The disk reserve: space held in data_dir so that the queue can always record acks and give space back.

Why this exists: on a completely full disk SQLite cannot write anything, and the writes that would free
space (an ack that lets housekeeping run, deleting delivered pages, a WAL checkpoint and truncation) need
some space themselves. Without room for them a full disk stops delivery for good, even with every
receiver up. Whatever filled the disk (siemconn never fills it past its floor, but logs, a core dump or
another service may), the reserve gives those writes the room they need.

How it works: `queue.reserve` is a file of `RESERVE_BYTES` (blocks really allocated) next to the queue.
When a write fails because the disk is full, the reserve is released (truncated to nothing) and the write
is retried once: the retried write and every write after it (acks, housekeeping, WAL truncation) use the
space it gave back. While the reserve is not whole, pulling stays paused (`space.pull_verdict`) and the
queue hands its own reclaimable space back to the file system; the reserve is allocated again as soon as
the file system has room for it on top of `min_free_disk_mb`, and only then does pulling resume.

Invariants
----------
* the reserve is only ever released to let recovery writes (acks, housekeeping, replay progress, the
  delivery record) or the opening of the queue succeed; a page is never committed into its space (the
  floor counts a missing reserve as used space).
* the file is private (0600, like every file in data_dir) and holds no data (its blocks are allocated
  with fallocate, or zeros where the file system has no fallocate).
* every method runs on the store's worker thread, or before the queue is opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "RESERVE_BYTES",
    "RESERVE_FILE",
    "RESERVE_MIN_BYTES",
    "DiskReserve",
    "is_disk_full",
    "out_of_space",
    "reserve_size",
]

RESERVE_FILE = "queue.reserve"
# measured need and sizing: docs/reliability.md ("A full disk"); on a file system smaller than 32 MB the
# reserve is a sixteenth of it (at least RESERVE_MIN_BYTES), so that a tiny disk still leaves room to pull
RESERVE_BYTES = 2 * 1024 * 1024
RESERVE_MIN_BYTES = 64 * 1024
_SQLITE_FULL = 13
_SQLITE_IOERR = 10
# an I/O error with less than this free is taken as "disk full": SQLite reports a -shm file it cannot
# extend as SQLITE_IOERR (the errno is not passed on), not as SQLITE_FULL
_NEARLY_FULL = 1024 * 1024
_ZEROS = bytes(64 * 1024)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an sqlite3 or OS error means "no space left on the device"."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return False


def out_of_space(exc: BaseException, free: int) -> bool:
    """Whether a failed write failed for lack of space: a "disk full" error, or an I/O error while the
    file system has (almost) nothing free (`free` bytes)."""
    if is_disk_full(exc):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == _SQLITE_IOERR and free < _NEARLY_FULL


def reserve_size(total: int) -> int:
    """The reserve for a file system of `total` bytes: RESERVE_BYTES, or a sixteenth of a small one."""
    return max(RESERVE_MIN_BYTES, min(RESERVE_BYTES, total // 16))


def _total_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).total
        except OSError:
            continue
    return 16 * RESERVE_BYTES


class DiskReserve:
    """The reserve file of one data_dir (see module doc)."""

    def __init__(self, data_dir: Path, disk_free: Callable[[Path], int], size: int | None = None) -> None:
        self.path = data_dir / RESERVE_FILE
        self.size = reserve_size(_total_bytes(data_dir)) if size is None else size
        self._data_dir = data_dir
        self.disk_free = disk_free

    def held(self) -> int:
        """Bytes the reserve holds now (allocated blocks, at most `size`)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return 0
        return min(self.size, st.st_size, st.st_blocks * 512)

    def deficit(self) -> int:
        """Bytes missing from a whole reserve (they count as used space for the disk floor)."""
        return self.size - self.held()

    @property
    def whole(self) -> bool:
        return self.held() >= self.size

    def release(self) -> int:
        """Give the reserve's space back to the file system; returns the bytes freed (0: none held)."""
        held = self.held()
        if not held:
            return 0
        try:
            os.truncate(self.path, 0)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        return held - self.held()

    def refill(self, keep_free: int) -> bool:
        """Allocate the reserve again if the file system has room for it with `keep_free` bytes left over.
        Returns whether the reserve is whole. A failure (the disk filled meanwhile) leaves it released."""
        missing = self.deficit()
        if missing <= 0:
            return True
        try:
            if self.disk_free(self._data_dir) < missing + keep_free:
                return False
        except OSError:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            _allocate(fd, self.size)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            return False
        finally:
            os.close(fd)
        return self.whole


def _allocate(fd: int, size: int) -> None:
    """Really allocate `size` bytes of fd (a sparse file would reserve nothing)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    os.ftruncate(fd, 0)
    written = 0
    while written < size:
        written += os.pwrite(fd, _ZEROS[: min(len(_ZEROS), size - written)], written)
